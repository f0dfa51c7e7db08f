#!/usr/bin/env bash
# docs_config.sh - docs/configuration.md against the binary: every setting of
# the code's table is documented and every documented one exists; the
# Commands section lists the commands `orderq --help` lists, each with the
# options its own --help lists; README's links into docs/ resolve; each
# alert of deploy/prometheus/alerts.yml has its section in docs/operations.md.
# No server needed. Prints each disagreement, exits 1 when there is any.
set -euo pipefail
ORDERQ_BIN=${ORDERQ_BIN:?ORDERQ_BIN must point at the orderq binary}
PY=/usr/bin/python3
top=$(cd "$(dirname "$0")/../.." && pwd)
DOCS=${DOCS:-$top/docs/configuration.md}
README=${README:-$top/README.md}
OPS=${OPS:-$top/docs/operations.md}
ALERTS=${ALERTS:-$top/deploy/prometheus/alerts.yml}
# The defaults, whatever the caller's environment says (a bad ORDERQ_* value
# would stop `config show` before it lists anything).
while IFS= read -r var; do unset "$var"; done < <(env | sed -n 's/^\(ORDERQ_[A-Z_]*\)=.*/\1/p' | grep -v '^ORDERQ_BIN$')

exec "$PY" - "$ORDERQ_BIN" "$DOCS" "$README" "$top" "$OPS" "$ALERTS" <<'PY'
import json, os, re, subprocess, sys

binary, docs_path, readme_path, top, ops_path, alerts_path = sys.argv[1:7]
docs_name = os.path.relpath(docs_path, top)
problems = []


def run(*args):
    r = subprocess.run([binary, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: orderq {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def section(text, heading):
    """The lines under '## heading' up to the next '## ' heading."""
    m = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not m:
        problems.append(f"{docs_name}: no '## {heading}' section")
        return ""
    return m.group(1)


def first_cells(block):
    """First cell of each table row, header and separator rows left out."""
    cells = []
    for line in block.splitlines():
        if not line.startswith("|") or re.match(r"^\|\s*-", line):
            continue
        cells.append(line.split("|")[1].strip())
    return cells[1:] if cells else cells  # cells[0] is the header


docs = open(docs_path, encoding="utf-8").read()

# 1. settings: the code's table (config show --json) against the docs' table
code_settings = set(json.loads(run("config", "show", "--json")))
doc_settings = set()
for cell in first_cells(section(docs, "Settings")):
    doc_settings.update(re.findall(r"`([a-z0-9_]+)`", cell))
for name in sorted(code_settings - doc_settings):
    problems.append(f"setting {name}: in the code's table, missing from {docs_name} (## Settings)")
for name in sorted(doc_settings - code_settings):
    problems.append(f"setting {name}: documented in {docs_name} (## Settings), not in `orderq config show --json`")

# 2. commands: `orderq --help` against '### `orderq NAME`' headings
top_help = run("--help")
listing = re.search(r"^Commands:\n(.*?)\n\n", top_help, re.M | re.S)
if not listing:
    sys.exit("FAIL: `orderq --help` has no 'Commands:' list")
code_cmds = re.findall(r"^  ([a-z][a-z0-9-]*)\s", listing.group(1), re.M)
commands = section(docs, "Commands")
doc_blocks = dict(re.findall(r"^### `orderq ([a-z][a-z0-9-]*)`\s*$(.*?)(?=^### |\Z)", commands, re.M | re.S))
for name in code_cmds:
    if name not in doc_blocks:
        problems.append(f"command {name}: in `orderq --help`, missing from {docs_name} (## Commands)")
for name in doc_blocks:
    if name not in code_cmds:
        problems.append(f"command {name}: documented in {docs_name} (## Commands), not in `orderq --help`")

# 3. each command's own options: `--flag METAVAR` as --help prints them.
# --config, --<setting> and -h/--help are on every command: left out.
GENERIC = {"--config FILE", "--<setting> VALUE", "-h, --help"}


def help_options(name):
    text = run(name, "--help")
    m = re.search(r"^Options:\n(.*?)(?:\n\n|\Z)", text, re.M | re.S)
    opts = set()
    for line in (m.group(1) if m else "").splitlines():
        hit = re.match(r"^  (-\S.*?)(?:\s{2,}|$)", line)
        if hit and hit.group(1) not in GENERIC:
            opts.add(hit.group(1))
    return opts


for name in code_cmds:
    if name not in doc_blocks:
        continue
    in_help = help_options(name)
    in_docs = {c.strip("`") for c in first_cells(doc_blocks[name]) if c.startswith("`-")}
    for opt in sorted(in_help - in_docs):
        problems.append(f"command {name}: `orderq {name} --help` has option `{opt}`, {docs_name} does not")
    for opt in sorted(in_docs - in_help):
        problems.append(f"command {name}: {docs_name} has option `{opt}`, `orderq {name} --help` does not")

# 4. README's links into docs/ name files that exist
readme = open(readme_path, encoding="utf-8").read()
base = os.path.dirname(os.path.abspath(readme_path))
for target in sorted(set(re.findall(r"\]\((docs/[^)#\s]+)", readme))):
    if not os.path.isfile(os.path.join(base, target)):
        problems.append(f"README links {target}, which does not exist")

# 5. the alert rules and the runbook: one '### Name' under '## Alerts' in
# docs/operations.md per alert, and each runbook_url's anchor a heading there
def slug(heading):
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


ops = open(ops_path, encoding="utf-8").read()
ops_name = os.path.relpath(ops_path, top)
m = re.search(r"^## Alerts\s*$(.*?)(?=^## |\Z)", ops, re.M | re.S)
runbook = set(re.findall(r"^### (\S+)\s*$", m.group(1), re.M)) if m else set()
if not runbook:
    problems.append(f"{ops_name}: no '### AlertName' under '## Alerts'")
anchors = {slug(h) for h in re.findall(r"^#+ (.*)$", ops, re.M)}
if os.path.isfile(alerts_path):
    rules = open(alerts_path, encoding="utf-8").read()
    alerts_name = os.path.relpath(alerts_path, top)
    alerts = set(re.findall(r"^\s*-?\s*alert:\s*(\S+)", rules, re.M))
    for a in sorted(alerts - runbook):
        problems.append(f"alert {a}: in {alerts_name}, no '### {a}' in {ops_name} (## Alerts)")
    for a in sorted(runbook - alerts):
        problems.append(f"alert {a}: in {ops_name} (## Alerts), not in {alerts_name}")
    for anchor in sorted(set(re.findall(r"operations\.md#([\w-]+)", rules))):
        if anchor not in anchors:
            problems.append(f"{alerts_name}: runbook_url operations.md#{anchor} names no heading of {ops_name}")
else:
    print(f"note: {os.path.relpath(alerts_path, top)} does not exist: alert names not compared")

for p in problems:
    print(f"FAIL: {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"ok: {len(code_settings)} settings, {len(code_cmds)} commands and their options, README's docs/ links, {len(runbook)} alerts")
PY

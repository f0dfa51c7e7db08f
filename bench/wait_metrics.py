"""bench/wait_metrics.py - wait until orderq's metrics reach the given counts.

One process polls /metrics over one kept-alive HTTP connection. The shell
loop it replaces started curl and awk for every count every 50 ms, 60 to
200 processes a second: as much as a third of a core, taken from the
consumer being timed and never from the reference it is compared with.

usage: wait_metrics.py --addr HOST:PORT --pid PID [--timeout S] [--every MS] COND...
  COND     NAME[label=value,...]>=N: the sum of NAME's series carrying
           those labels is at least N (all CONDs must hold at once)
  --pid    the consumer: exit 2 as soon as it is gone
prints the wall-clock time (ns since the epoch) at which every COND held;
exit 0, 1 when --timeout (default 900 s) passed first (the counts reached
are on stderr), 2 when the process is gone, 64 on a bad argument.
"""
import http.client
import re
import sys
import time

COND = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\[([^\]]*)\])?>=(\d+)$")
SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
WANT = re.compile(r'^([a-zA-Z_][a-zA-Z0-9_]*)="?([^"]*)"?$')  # label=value, quotes allowed


def usage(why):
    print(f"wait_metrics.py: {why}", file=sys.stderr)
    sys.exit(64)


def parse_args(argv):
    opts = {"--addr": None, "--pid": None, "--timeout": "900", "--every": "20"}
    conds = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(__doc__.rstrip())
            sys.exit(0)
        if a in opts:
            if i + 1 == len(argv):
                usage(f"{a}: expected a value")
            opts[a] = argv[i + 1]
            i += 2
            continue
        m = COND.match(a)
        if not m:
            usage(f"expected NAME[label=value,...]>=N, got {a!r}")
        labels = {}
        for kv in (m.group(2).split(",") if m.group(2) else []):
            pair = WANT.match(kv.strip())
            if not pair:
                usage(f"{a!r}: expected label=value, got {kv.strip()!r}")
            labels[pair.group(1)] = pair.group(2)
        conds.append((m.group(1), labels, int(m.group(3)), a))
        i += 1
    if not re.match(r"^[^:]+:\d+$", opts["--addr"] or ""):
        usage(f"--addr: expected HOST:PORT, got {opts['--addr']!r}")
    if not (opts["--pid"] or "").isdigit():
        usage("--pid: expected the consumer's process id")
    if not conds:
        usage("expected at least one COND")
    try:
        timeout, every = float(opts["--timeout"]), float(opts["--every"]) / 1000
    except ValueError:
        timeout = every = -1
    if not timeout >= 0 or not every >= 0:
        usage(f"--timeout and --every: expected numbers >= 0, got {opts['--timeout']!r}, {opts['--every']!r}")
    return opts["--addr"], int(opts["--pid"]), timeout, every, conds


def sums(text, conds):
    totals = [0.0] * len(conds)
    for line in text.splitlines():
        m = SERIES.match(line)
        if not m:
            continue
        labels = dict(LABEL.findall(m.group(2) or ""))
        for i, (name, want, _, _) in enumerate(conds):
            if m.group(1) == name and all(labels.get(k) == v for k, v in want.items()):
                totals[i] += float(m.group(3))
    return totals


def alive(pid):
    """pid runs: not gone, and not a zombie its parent (the script) has yet to reap."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main():
    addr, pid, timeout, every, conds = parse_args(sys.argv[1:])
    host, port = addr.rsplit(":", 1)
    conn = None
    deadline = time.monotonic() + timeout
    totals = [0.0] * len(conds)
    while True:
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port), timeout=5)
            conn.request("GET", "/metrics")
            totals = sums(conn.getresponse().read().decode(), conds)
        except (OSError, http.client.HTTPException):
            conn = None  # not listening yet, or the connection was closed: ask again
        if all(t >= c[2] for t, c in zip(totals, conds)):
            print(time.time_ns())
            return 0
        if not alive(pid):
            return 2
        if time.monotonic() >= deadline:
            print("wait_metrics.py: timed out at " + ", ".join(
                f"{c[3]} ({t:.0f})" for t, c in zip(totals, conds)), file=sys.stderr)
            return 1
        time.sleep(every)


if __name__ == "__main__":
    sys.exit(main())

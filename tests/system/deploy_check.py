#!/usr/bin/python3
"""deploy_check.py - cross-checks deploy/ against the orderq it deploys.

  deploy_check.py files TOP ORDERQ_BIN SERVED
      Dockerfile, compose.yml and deploy/k8s: every ORDERQ_* name is a
      setting of `orderq config show --json`, every port is the one orderq
      listens on (its http_addr), every probe and HEALTHCHECK path is one of
      SERVED (the paths a running orderq answered 200 or 503), every file
      they name exists, the runtime image installs a package for each
      library the binary links, the KEDA queues are orderq's.
  deploy_check.py drain ORDERQ_BIN
      the longest SIGTERM drain of the configuration, in seconds:
      shutdown_timeout_ms for the batches in hand, then the send under way
      (smtp_timeout_ms) and its MySQL record (connect_timeout_ms).
  deploy_check.py names TOP SCRAPE_FILE...
      every metric the dashboard and alerts.yml name is in the scrapes.

Prints one line per problem and exits 1 if there was any.
"""
import json, re, shlex, subprocess, sys, os
import yaml

problems = []


def bad(where, what):
    problems.append(f"{where}: {what}")


def run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


# ---- what orderq says about itself -------------------------------------

class Orderq:
    def __init__(self, binary):
        self.bin = binary
        cfg = json.loads(run(binary, "config", "show", "--json"))
        self.cfg = cfg
        self.settings = set(cfg)
        self.default_port = int(cfg["http_addr"]["value"].rsplit(":", 1)[1])
        self.env_names = {"ORDERQ_" + s.upper() for s in cfg} | {"ORDERQ_CONFIG"}
        topo = json.loads(run(binary, "topology", "definitions"))
        self.queues = {q["name"] for q in topo["queues"]}

    def drain_s(self):
        unit = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}
        def ms(name):
            n, u = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", self.cfg[name]["value"]).groups()
            return int(n) * unit[u or "ms"]
        total = sum(ms(n) for n in ("shutdown_timeout_ms", "smtp_timeout_ms", "connect_timeout_ms"))
        return -(-total // 1000)

    def check_env(self, where, name, value=None):
        """An ORDERQ_* name must be a setting; its value must be one orderq takes."""
        if not name.startswith("ORDERQ_"):
            return
        if name not in self.env_names:
            bad(where, f"{name} is not an orderq setting (orderq config show --json)")
            return
        if value is None or "$" in str(value) or name == "ORDERQ_CONFIG":
            return  # filled in at deploy time (compose ${...}, a Secret)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERQ_")}
        env[name] = str(value)
        r = subprocess.run([self.bin, "config", "show"], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            bad(where, f"{name}={value!r} is refused: {r.stderr.strip()}")

    def port_of(self, env):
        """The port orderq listens on given these ORDERQ_* variables."""
        addr = env.get("ORDERQ_HTTP_ADDR")
        return int(addr.rsplit(":", 1)[1]) if addr else self.default_port


# ---- Dockerfile ----------------------------------------------------------

def dockerfile_instructions(path):
    text = open(path).read()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        out.append((op.upper(), rest.strip()))
    return out


def apt_packages(run_arg):
    """Packages of every `apt-get install` in a RUN line."""
    pkgs = []
    for part in re.split(r"&&|;", run_arg):
        words = shlex.split(part)
        if "apt-get" in words and "install" in words:
            pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def dockerignored(top, src):
    pats = []
    p = os.path.join(top, ".dockerignore")
    if os.path.exists(p):
        pats = [l.strip().rstrip("/") for l in open(p) if l.strip() and not l.startswith("#")]
    src = src.rstrip("/")
    return any(src == q or src.startswith(q + "/") for q in pats)


def linked_packages(binary):
    """Debian packages of the libraries the binary names (readelf NEEDED)."""
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]", run("readelf", "-d", binary))
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", run("ldd", binary), re.M))
    pkgs = {}
    for lib in needed:
        # dpkg knows one spelling of a path (merged /usr: /lib or /usr/lib,
        # the link or its target): try each.
        real = os.path.realpath(paths[lib])
        tries = [paths[lib], real, real.replace("/usr/lib/", "/lib/", 1)]
        for t in tries:
            r = subprocess.run(["dpkg", "-S", t], capture_output=True, text=True)
            if r.returncode == 0:
                pkgs[lib] = r.stdout.split(":")[0]
                break
        else:
            bad("ORDERQ_BIN", f"no Debian package owns {lib} ({paths[lib]})")
    return pkgs


# In debian:bookworm-slim already (Priority: required), or only in a
# sanitizer build (ORDERQ_SANITIZE), never in the image's Release build.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1"}
SANITIZER_PACKAGES = {"libasan8", "libubsan1"}


def check_dockerfile(top, oq, served):
    where = "deploy/docker/Dockerfile"
    ins = dockerfile_instructions(os.path.join(top, where))
    stages = [i for i, (op, _) in enumerate(ins) if op == "FROM"]
    if len(stages) < 2:
        bad(where, "not multi-stage (a build stage and a runtime stage)")
        return
    for i in stages:
        image = ins[i][1].split()[0]
        if image != "debian:bookworm-slim":
            bad(where, f"FROM {image}, expected debian:bookworm-slim")
    final = ins[stages[-1]:]
    build = ins[stages[0]:stages[1]]
    env, user, exposed, health = {}, None, [], None
    for op, arg in ins:
        if op == "COPY" and "--from=" not in arg:
            for src in shlex.split(arg)[:-1]:
                if not os.path.exists(os.path.join(top, src)):
                    bad(where, f"COPY {src}: no such file in the repository")
                elif dockerignored(top, src):
                    bad(where, f"COPY {src}: excluded by .dockerignore")
    for op, arg in final:
        if op == "ENV":
            k, _, v = arg.partition("=")
            env[k] = v
            oq.check_env(where, k, v)
        elif op == "USER":
            user = arg
        elif op == "EXPOSE":
            exposed += [int(p.split("/")[0]) for p in arg.split()]
        elif op == "HEALTHCHECK":
            health = arg
    port = oq.port_of(env)
    if exposed != [port]:
        bad(where, f"EXPOSE {exposed}, expected [{port}] (http_addr)")
    if user is None or user.split(":")[0] in ("root", "0"):
        bad(where, f"USER {user}: the image must not run as root")
    m = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/\S*?)[\"' ]", health or "")
    if not m:
        bad(where, "no HEALTHCHECK on http://127.0.0.1:PORT/PATH")
    else:
        if int(m.group(1)) != port:
            bad(where, f"HEALTHCHECK port {m.group(1)}, but orderq listens on {port}")
        if m.group(2) != "/healthz":
            bad(where, f"HEALTHCHECK path {m.group(2)}, expected /healthz (liveness)")
        if m.group(2) not in served:
            bad(where, f"HEALTHCHECK path {m.group(2)} is not served by orderq ({sorted(served)})")
        tool = shlex.split(health.split("CMD", 1)[1].strip().strip("[]").replace(",", " "))[0]
        runtime_pkgs = [p for op, a in final if op == "RUN" for p in apt_packages(a)]
        if tool.strip('"') == "curl" and "curl" not in runtime_pkgs:
            bad(where, "HEALTHCHECK uses curl, which the runtime stage does not install")
    runtime = {p for op, a in final if op == "RUN" for p in apt_packages(a)}
    for lib, pkg in sorted(linked_packages(oq.bin).items()):
        if pkg in SANITIZER_PACKAGES or pkg in BASE_IMAGE_PACKAGES:
            continue
        if pkg not in runtime:
            bad(where, f"the binary links {lib} (Debian package {pkg}), not installed in the runtime stage")
    for pkg in runtime:
        if pkg.endswith("-dev"):
            bad(where, f"the runtime stage installs {pkg}: build packages belong in the build stage")
    # The build stage must install what CMakeLists.txt asks for.
    want = re.findall(r"orderq_require\(\w+ \S+ (\S+)\)", open(os.path.join(top, "CMakeLists.txt")).read())
    have = {p for op, a in build if op == "RUN" for p in apt_packages(a)}
    for pkg in want:
        if pkg not in have:
            bad(where, f"CMakeLists.txt needs {pkg}, not installed in the build stage")
    return port


# ---- compose.yml -----------------------------------------------------------

# Ports the images of compose.yml listen on (their documentation).
IMAGE_PORTS = {"rabbitmq": {5672, 15672, 15692}, "mariadb": {3306}, "maildev": {1025, 1080},
               "prometheus": {9090}, "grafana": {3000}}


def url_host_port(url):
    m = re.match(r"(\w+)://(?:[^@/]*@)?([^:/?]+)(?::(\d+))?", url)
    if not m:
        return None, None
    default = {"amqp": 5672, "amqps": 5671, "mysql": 3306, "smtp": 25, "smtps": 465, "http": 80}
    return m.group(2), int(m.group(3)) if m.group(3) else default.get(m.group(1))


def check_compose(top, oq, image_port):
    where = "deploy/docker/compose.yml"
    base = os.path.join(top, "deploy/docker")
    doc = yaml.safe_load(open(os.path.join(top, where)))
    services = doc["services"]
    want = {"rabbitmq", "mariadb", "maildev", "prometheus"}
    if not want <= set(services):
        bad(where, f"missing services {sorted(want - set(services))}")
    orderq_svcs = {n: s for n, s in services.items() if s.get("image", "").startswith("orderq") or "build" in s}
    consumers = [n for n, s in orderq_svcs.items() if (s.get("command") or ["consume"])[0] == "consume"]
    if len(consumers) < 2:
        bad(where, f"{len(consumers)} orderq consumers, expected two replicas")
    relays = [n for n, s in orderq_svcs.items() if (s.get("command") or [""])[0] == "relay"]
    if not relays:
        bad(where, "no relay service")
    for n in relays + consumers:  # services with the image's HEALTHCHECK on /healthz
        if (services[n].get("healthcheck") or {}).get("disable"):
            bad(f"{where}: {n}", "healthcheck disabled, but orderq serves /healthz")
    if not any((s.get("command") or [""])[0] == "migrate" for s in orderq_svcs.values()):
        bad(where, "no migrate service")
    ports_of = {n: set(IMAGE_PORTS.get(n, set())) for n in services}
    for name, svc in services.items():
        w = f"{where}: {name}"
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        for k, v in env.items():
            oq.check_env(w, k, v)
        b = svc.get("build")
        if b:
            ctx = os.path.normpath(os.path.join(base, b["context"]))
            if not os.path.exists(os.path.join(ctx, b.get("dockerfile", "Dockerfile"))):
                bad(w, f"build: no {b.get('dockerfile')} under {b['context']}")
        for vol in svc.get("volumes") or []:
            src = vol.split(":")[0]
            if src.startswith((".", "/")) and not os.path.exists(os.path.normpath(os.path.join(base, src))):
                bad(w, f"volume source {src} does not exist")
        if name in orderq_svcs:
            ports_of[name] = {oq.port_of(env)}
            if oq.port_of(env) != image_port:
                bad(w, f"http_addr port {oq.port_of(env)} is not the image's {image_port} (EXPOSE, HEALTHCHECK)")
            for k in ("ORDERQ_AMQP_URL", "ORDERQ_MYSQL_URL", "ORDERQ_SMTP_URL", "ORDERQ_AMQP_MGMT_URL"):
                if k in env:
                    host, port = url_host_port(env[k])
                    if host not in services:
                        bad(w, f"{k} names host {host}, not a service of compose.yml")
                    elif port not in IMAGE_PORTS.get(host, set()):
                        bad(w, f"{k} names {host}:{port}, a port {host} does not listen on")
        for p in svc.get("ports") or []:
            target = int(str(p).split(":")[-1].split("/")[0])
            if target not in ports_of.get(name, set()):
                bad(w, f"publishes port {target}, which {name} does not listen on")
        for dep in svc.get("depends_on") or {}:
            if dep not in services:
                bad(w, f"depends on {dep}, not a service")
    # Prometheus' targets are services on the ports they listen on.
    prom = yaml.safe_load(open(os.path.join(top, "deploy/prometheus/prometheus.yml")))
    for job in prom["scrape_configs"]:
        for sc in job.get("static_configs", []):
            for t in sc["targets"]:
                host, port = t.rsplit(":", 1)
                if host not in services:
                    bad("deploy/prometheus/prometheus.yml", f"target {t}: no service {host} in compose.yml")
                elif int(port) not in ports_of[host]:
                    bad("deploy/prometheus/prometheus.yml", f"target {t}: {host} listens on {sorted(ports_of[host])}")
    scraped = {t.rsplit(":", 1)[0] for job in prom["scrape_configs"] if job["job_name"] == "orderq"
               for sc in job.get("static_configs", []) for t in sc["targets"]}
    for n in relays + consumers:
        if n not in scraped:
            bad("deploy/prometheus/prometheus.yml", f"job orderq does not scrape {n}")
    for rf in prom.get("rule_files", []):
        if not os.path.exists(os.path.join(top, "deploy/prometheus", rf)):
            bad("deploy/prometheus/prometheus.yml", f"rule file {rf} does not exist")


# ---- Kubernetes -------------------------------------------------------------

def check_k8s(top, oq, served, drain_s):
    kdir = os.path.join(top, "deploy/k8s")
    objs = []
    for f in sorted(os.listdir(kdir)):
        if f.endswith(".yaml") and f != "kustomization.yaml":
            objs += [(f, d) for d in yaml.safe_load_all(open(os.path.join(kdir, f))) if d]
    kust = yaml.safe_load(open(os.path.join(kdir, "kustomization.yaml")))
    for r in kust["resources"]:
        if not os.path.exists(os.path.join(kdir, r)):
            bad("deploy/k8s/kustomization.yaml", f"resource {r} does not exist")
    by_kind = {}
    for f, d in objs:
        by_kind.setdefault(d["kind"], []).append((f, d))
    cms = {d["metadata"]["name"]: d.get("data", {}) for _, d in by_kind.get("ConfigMap", [])}
    secrets = {d["metadata"]["name"]: set(d.get("stringData", {})) | set(d.get("data", {}))
               for _, d in by_kind.get("Secret", [])}
    for f, d in by_kind.get("ConfigMap", []):
        for k, v in d.get("data", {}).items():
            oq.check_env(f"deploy/k8s/{f}: ConfigMap {d['metadata']['name']}", k, v)
    for f, d in by_kind.get("Secret", []):
        for k in secrets[d["metadata"]["name"]]:
            oq.check_env(f"deploy/k8s/{f}: Secret", k)
    deployments = {d["metadata"]["name"]: (f, d) for f, d in by_kind.get("Deployment", [])}
    for f, d in by_kind.get("Deployment", []) + by_kind.get("Job", []):
        name = d["metadata"]["name"]
        w = f"deploy/k8s/{f}: {d['kind']} {name}"
        pod = d["spec"]["template"]
        spec = pod["spec"]
        if d["kind"] == "Deployment":
            sel = d["spec"]["selector"]["matchLabels"]
            if any(pod["metadata"]["labels"].get(k) != v for k, v in sel.items()):
                bad(w, "selector does not match the pod's labels")
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            bad(w, "no runAsNonRoot")
        for c in spec["containers"]:
            cw = f"{w}: container {c['name']}"
            env = {}
            for ef in c.get("envFrom", []):
                if "configMapRef" in ef:
                    ref = ef["configMapRef"]["name"]
                    if ref not in cms:
                        bad(cw, f"envFrom ConfigMap {ref}, not in deploy/k8s")
                    env.update(cms.get(ref, {}))
                if "secretRef" in ef:
                    for k in secrets.get(ef["secretRef"]["name"], ()):
                        oq.check_env(cw, k)
            for e in c.get("env", []):
                oq.check_env(cw, e["name"], e.get("value"))
                env[e["name"]] = e.get("value", "")
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["key"] not in secrets.get(ref["name"], ()):
                    bad(cw, f"{e['name']} from Secret {ref['name']} key {ref['key']}, which secret.example.yaml lacks")
            sc = c.get("securityContext", {})
            if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation", True) \
                    or "ALL" not in sc.get("capabilities", {}).get("drop", []):
                bad(cw, "securityContext: expected readOnlyRootFilesystem, no privilege escalation, drop ALL")
            if "resources" not in c:
                bad(cw, "no resources")
            port = oq.port_of(env)
            named = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            if named and set(named.values()) != {port}:
                bad(cw, f"containerPort {sorted(named.values())}, but orderq listens on {port}")
            probes = {k: c[k] for k in ("livenessProbe", "readinessProbe") if k in c}
            want = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
            command = c.get("args", [""])[0]
            if command in ("consume", "relay"):  # the services: both serve http_addr
                if set(probes) != set(want):
                    bad(cw, f"{command} needs a livenessProbe and a readinessProbe")
                ann = pod["metadata"].get("annotations", {})
                if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != str(port) \
                        or ann.get("prometheus.io/path") not in served:
                        bad(w, f"prometheus.io annotations {ann}, expected scrape true, port {port}, a path orderq serves")
            if command == "consume":
                pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
                sleep = int(pre[-1]) if pre[:1] == ["sleep"] else None
                if sleep is None:
                    bad(cw, "no preStop sleep (endpoints must drop the pod before SIGTERM)")
                grace = spec.get("terminationGracePeriodSeconds", 30)
                if grace <= drain_s + (sleep or 0):
                    bad(w, f"terminationGracePeriodSeconds {grace} is not above preStop {sleep} s + drain {drain_s} s")
            for k, p in probes.items():
                hg = p.get("httpGet", {})
                if hg.get("path") != want[k] or hg.get("path") not in served:
                    bad(cw, f"{k} path {hg.get('path')}, expected {want[k]} (served: {sorted(served)})")
                pp = hg.get("port")
                if (named.get(pp) if isinstance(pp, str) else pp) != port:
                    bad(cw, f"{k} port {pp} is not orderq's {port}")
    for f, d in by_kind.get("PodDisruptionBudget", []):
        sel = d["spec"]["selector"]["matchLabels"]
        if not any(all(dd["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())
                   for _, dd in deployments.values()):
            bad(f"deploy/k8s/{f}", "PodDisruptionBudget selects no Deployment's pods")
    if not by_kind.get("PodDisruptionBudget"):
        bad("deploy/k8s", "no PodDisruptionBudget")
    auths = {d["metadata"]["name"]: d for _, d in by_kind.get("TriggerAuthentication", [])}
    for f, d in by_kind.get("TriggerAuthentication", []):
        for ref in d["spec"].get("secretTargetRef", []):
            if ref["key"] not in secrets.get(ref["name"], ()):
                bad(f"deploy/k8s/{f}", f"TriggerAuthentication: Secret {ref['name']} has no key {ref['key']}")
    sos = by_kind.get("ScaledObject", [])
    if not sos:
        bad("deploy/k8s", "no KEDA ScaledObject")
    for f, d in sos:
        w = f"deploy/k8s/{f}: ScaledObject"
        if d["apiVersion"] != "keda.sh/v1alpha1":
            bad(w, f"apiVersion {d['apiVersion']}")
        target = d["spec"]["scaleTargetRef"]["name"]
        if target not in deployments or deployments[target][1]["spec"]["template"]["spec"]["containers"][0].get("args", [""])[0] != "consume":
            bad(w, f"scales {target}, not the consumers' Deployment")
        queues = []
        for t in d["spec"]["triggers"]:
            md = t["metadata"]
            if t["type"] != "rabbitmq" or md.get("mode") != "QueueLength":
                bad(w, f"trigger {t['type']} {md.get('mode')}: expected rabbitmq QueueLength")
            if md.get("queueName") not in oq.queues:
                bad(w, f"queue {md.get('queueName')} is not one of orderq's ({sorted(oq.queues)})")
            queues.append(md.get("queueName"))
            ref = t.get("authenticationRef", {}).get("name")
            if ref not in auths or not any(r["parameter"] == "host" for r in auths[ref]["spec"].get("secretTargetRef", [])):
                bad(w, f"trigger on {md.get('queueName')}: no TriggerAuthentication {ref} giving the host")
        for q in ("orderq.order.processing", "orderq.coupon.email"):
            if q not in queues:
                bad(w, f"does not scale on {q}")
        if d["spec"].get("minReplicaCount", 0) < 1:
            bad(w, "minReplicaCount 0: the consumers also archive, sweep and relay")


# ---- metric names -------------------------------------------------------------

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
                "and", "or", "unless", "inf", "nan", "le"}
# Series Prometheus makes itself, not scraped.
BUILTIN_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def promql_names(expr):
    """Metric (or recording rule) names an expression reads."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                  # strings
    e = re.sub(r"\{[^}]*\}", "", e)                                 # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                                # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\boffset\s+\w+", "", e)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("("):
            continue  # a function
        if m.group(0).lower() in PROMQL_WORDS or re.fullmatch(r"\d.*", m.group(0)):
            continue
        names.add(m.group(0))
    return names


def scraped_names(files):
    """Series names in Prometheus text: a histogram's TYPE gives its _bucket, _sum, _count."""
    names = set()
    for f in files:
        for line in open(f):
            m = re.match(r"# TYPE (\S+) (\w+)", line)
            if m:
                n, t = m.groups()
                names |= {n + s for s in ("_bucket", "_sum", "_count")} if t in ("histogram", "summary") else {n}
                if t == "summary":
                    names.add(n)
            elif line.strip() and not line.startswith("#"):
                names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def documented_names(top):
    """orderq_* families of docs/metrics.md, with a histogram's series."""
    text = open(os.path.join(top, "docs/metrics.md")).read()
    names = set()
    section = None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip().lower()
        m = re.match(r"\| `(orderq_\w+)`", line)
        if m:
            n = m.group(1)
            names |= {n + s for s in ("_bucket", "_sum", "_count")} if section == "histograms" else {n}
    return names


def check_names(top, scrapes):
    have = scraped_names(scrapes) | BUILTIN_SERIES
    documented = documented_names(top)
    uses = []  # (where, expr)
    rules = yaml.safe_load(open(os.path.join(top, "deploy/prometheus/alerts.yml")))
    recorded = {}
    for g in rules["groups"]:
        for r in g["rules"]:
            if "record" in r:
                recorded[r["record"]] = r["expr"]
            uses.append((f"alerts.yml {r.get('alert') or r.get('record')}", r["expr"]))
    dash = json.load(open(os.path.join(top, "deploy/grafana/orderq.json")))
    for p in dash["panels"]:
        for t in p.get("targets", []):
            uses.append((f"orderq.json panel \"{p['title']}\"", t["expr"]))
    missing = {}
    for where, expr in uses:
        for n in promql_names(expr):
            if n in recorded:
                continue  # its own expression is checked as a rule
            if n.startswith("orderq_") and n not in documented:
                bad(where, f"{n} is not in docs/metrics.md")
            if n not in have:
                missing.setdefault(n, []).append(where)
    for n in sorted(missing):
        bad("missing from the live scrape", f"{n} (used by {'; '.join(sorted(set(missing[n])))})")
    used = sorted({n for _, e in uses for n in promql_names(e)})
    print(f"names used: {len(used)}; in the scrape: {len([n for n in used if n in have or n in recorded])}; "
          f"missing: {len(missing)}", file=sys.stderr)


def main():
    mode = sys.argv[1]
    if mode == "drain":
        print(Orderq(sys.argv[2]).drain_s())
    elif mode == "files":
        top, binary, served = sys.argv[2], sys.argv[3], set(sys.argv[4].split(","))
        oq = Orderq(binary)
        port = check_dockerfile(top, oq, served)
        check_compose(top, oq, port)
        check_k8s(top, oq, served, oq.drain_s())
    elif mode == "names":
        check_names(sys.argv[2], sys.argv[3:])
    else:
        raise SystemExit(f"unknown mode {mode}")
    for p in problems:
        print("FAIL:", p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

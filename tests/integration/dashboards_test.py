#!/usr/bin/env python3
"""Every query of every dashboard against a real Prometheus scraping a real kpid.

kpid runs examples/lead_to_cash.yaml (event clock, its own ports, a slower
arrival rate so that ~10 simulated days fit in the run) on its embedded
broker; kpi-loadgen feeds it; Debian's prometheus scrapes it every second.
Then every target expression of every panel, with the template variables set
to real values, must parse and return at least one series; every variable's
label_values() query must offer the value used. Finally the KPI tree's root,
read back from Prometheus, must equal the product of its children.

    dashboards_test.py --source DIR --kpid BIN --loadgen BIN --prometheus BIN
"""

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

DEADLINE_S = 80  # the whole run; ctest's timeout is above it

# What a user would pick in Grafana for this config.
VALUES = {
    "process": "lead_to_cash",
    "window": "1h",
    "dimension": "region",
    "dim_value": "emea",
    "job": "kpid",
    "datasource": "prometheus",
    "__rate_interval": "15s",
    "__interval": "15s",
    "__range": "5m",
}

TEST_RULES = """
groups:
  - name: dashboards_test
    interval: 1s
    rules:
      # Fires as soon as leads exit: the alerts table must have a row.
      - alert: DashboardsTestLeadsFlowing
        process: lead_to_cash
        stage: lead
        kpi: throughput
        window: 1h
        op: ">"
        threshold: 0
        min_events: 1
        for: 0s
        labels: {severity: info}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def wait_for(what, condition, deadline):
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, ValueError, KeyError):  # not up yet: refused, 503, no data
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def api(self, path, **params):
        url = f"{self.base}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            body = http_get(url)
        except urllib.error.HTTPError as e:  # 400 for a query that does not parse
            body = e.read().decode()
        return json.loads(body)

    def query(self, expr, at=None):
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.api("query", **params)


def kpid_config(source, tmp, http_port, grpc_port, am_port):
    with open(os.path.join(source, "examples", "lead_to_cash.yaml")) as f:
        text = f.read()
    replacements = [
        ("bootstrap_file: /tmp/kpid.bootstrap", f"bootstrap_file: {tmp}/bootstrap"),
        ("127.0.0.1:9464", f"127.0.0.1:{http_port}"),
        ("127.0.0.1:50051", f"127.0.0.1:{grpc_port}"),
        ("clock: wall", "clock: event"),
        ("arrivals_per_hour: 3600", "arrivals_per_hour: 300"),
        ('rules: ["../rules/*.yaml"]', f'rules: ["{source}/rules/*.yaml", "{tmp}/test_rules.yaml"]'),
        # Nobody listens there: notifications fail and are counted.
        ("http://127.0.0.1:9093", f"http://127.0.0.1:{am_port}"),
    ]
    for old, new in replacements:
        if old not in text:
            raise AssertionError(f"examples/lead_to_cash.yaml no longer has {old!r}")
        text = text.replace(old, new)
    return text


def offset_seconds(expr):
    """A query whose every selector looks `offset D` back is evaluated D ahead,
    so it reads what this run scraped (Prometheus has no older history)."""
    m = re.search(r"\boffset\s+(\d+)([smhdw])\b", expr)
    if not m:
        return 0
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def check_variable(prom, var, errors, where):
    q = dash.variable_query(var)
    m = re.fullmatch(r"label_values\((?:(.*),\s*)?(\$?\w+)\)", q.strip())
    if not m:
        errors.append(f"{where}: variable {var['name']}: cannot read query {q!r}")
        return
    match, label = m.group(1), dash.substitute(m.group(2), VALUES)
    params = {"match[]": dash.substitute(match, VALUES)} if match else {}
    got = prom.api(f"label/{label}/values", **params)
    values = got.get("data") or []
    want = VALUES.get(var["name"])
    if got.get("status") != "success" or not values:
        errors.append(f"{where}: variable {var['name']}: {q!r} offers nothing: {got}")
    elif want is not None and var["name"] != "datasource" and want not in values:
        errors.append(f"{where}: variable {var['name']}: {want!r} not among {values}")


def check_tree(prom, errors):
    """The root equals the product of its children, read back from Prometheus
    (one instant query, so every node comes from the same scrape)."""
    got = prom.query('kpid_kpi_tree_value{process="lead_to_cash",window="1h"}')
    nodes = {s["metric"]["node"]: (s["metric"].get("parent", ""), float(s["value"][1]))
             for s in got["data"]["result"]}
    roots = [n for n, (parent, _) in nodes.items() if parent == ""]
    if roots != ["revenue"]:
        errors.append(f"KPI tree: roots {roots}, want ['revenue'] (nodes {nodes})")
        return
    for parent in ("revenue", "funnel_conversion"):
        children = [v for (p, v) in nodes.values() if p == parent]
        want = math.prod(children)
        value = nodes[parent][1]
        print(f"KPI tree: {parent} = {value} ; product of {len(children)} children = {want}")
        if len(children) not in (3, 5) or not math.isclose(value, want, rel_tol=1e-9):
            errors.append(f"KPI tree: {parent} = {value}, product of children {children} = {want}")


def main():
    ap = argparse.ArgumentParser()
    for flag in ("source", "kpid", "loadgen", "prometheus"):
        ap.add_argument(f"--{flag}", required=True)
    args = ap.parse_args()
    deadline = time.monotonic() + DEADLINE_S
    tmp = tempfile.mkdtemp(prefix="kpid-dashboards-")
    http_port, grpc_port, prom_port, am_port = (free_port() for _ in range(4))
    with open(os.path.join(tmp, "test_rules.yaml"), "w") as f:
        f.write(TEST_RULES)
    config_path = os.path.join(tmp, "kpid.yaml")
    with open(config_path, "w") as f:
        f.write(kpid_config(args.source, tmp, http_port, grpc_port, am_port))
    with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
        f.write("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                "scrape_configs:\n"
                "  - job_name: kpid\n"
                f"    static_configs: [{{targets: ['127.0.0.1:{http_port}']}}]\n")

    procs = []

    def start(name, argv):
        log = open(os.path.join(tmp, f"{name}.log"), "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        procs.append((name, p))
        return p

    errors = []
    try:
        start("kpid", [args.kpid, "--config", config_path])
        start("prometheus", [args.prometheus, f"--config.file={tmp}/prometheus.yml",
                             f"--storage.tsdb.path={tmp}/tsdb",
                             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"])
        wait_for("Prometheus ready",
                 lambda: "Ready" in http_get(f"http://127.0.0.1:{prom_port}/-/ready"), deadline)
        wait_for("kpid /metrics",
                 lambda: "kpid_build_info" in http_get(f"http://127.0.0.1:{http_port}/metrics"),
                 deadline)
        # ~300 arrivals per simulated hour: 400k events span ~2 weeks of event
        # time, sent over ~40 s so that Prometheus sees counters move.
        start("loadgen", [args.loadgen, "--config", config_path,
                          "--bootstrap_file", f"{tmp}/bootstrap", "--events", "400000",
                          "--rate", "10000", "--seed", "5", "--start", "2026-01-01T00:00:00Z"])
        prom = Prometheus(prom_port)
        first = time.monotonic()
        wait_for("Prometheus to scrape the KPI tree's root for 1h and 7d",
                 lambda: len(prom.query('kpid_kpi_tree_value{process="lead_to_cash",node="revenue"}')
                             ["data"]["result"]) >= 2 and
                 len(prom.query("kpid_alerts")["data"]["result"]) >= 1, deadline)
        # Enough scrapes for every rate() over $__rate_interval.
        time.sleep(max(0.0, 16 - (time.monotonic() - first)))

        now = time.time()
        queries = 0
        for path in dash.dashboard_paths(args.source):
            d = dash.load(path)
            name = os.path.basename(path)
            for var in dash.variables(d):
                if var.get("type") == "query":
                    check_variable(prom, var, errors, name)
            for panel, target in dash.targets(d):
                expr = dash.substitute(target["expr"], VALUES)
                where = f"{name}: panel {panel['id']} {panel['title']!r} {target['refId']}"
                got = prom.query(expr, now + offset_seconds(expr))
                queries += 1
                if got.get("status") != "success":
                    errors.append(f"{where}: {got.get('error')}\n    {expr}")
                elif not got["data"]["result"]:
                    errors.append(f"{where}: no series\n    {expr}")
                elif not any(math.isfinite(float(r["value"][1])) for r in got["data"]["result"]):
                    # e.g. a ratio of counters that did not move: 0 / 0
                    errors.append(f"{where}: only NaN/Inf\n    {expr}")
        print(f"{queries} panel queries checked")
        check_tree(prom, errors)
    finally:
        for name, p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    for e in errors:
        print(e)
    if errors:
        print(f"{len(errors)} problems; logs in {tmp}")
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dashboards"))
import dashboards as dash  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Alert latency benchmark: kpid -> Alertmanager, against Prometheus rules on kpid's /metrics.

Measures, over --trials trials (100), how long an alert takes to reach a real
Alertmanager (Debian's prometheus-alertmanager):

  phase 1 (kpid with clock: event on its embedded broker, one partition),
  the same trials through two paths at once:
    kpid       kpid's own rules, evaluated in kpid, POSTed by its notifier;
    prometheus Debian's Prometheus scraping kpid's /metrics and evaluating
               the same rules in PromQL (scrape and evaluation interval 5s).
  Each trial has two crossing events, each the moment of a new alert:
    sla        a case sits in stage s (sla 10s); the crossing event (a COST
               event 12 s of event time later) moves the watermark past its
               deadline: backlog_over_sla(s) > 0;
    threshold  5 cases enter stage f, one completes, one falls out; the
               crossing event is the second fallout: fallout_ratio(1h) = 2/3 >
               0.5 with min_events 3.
  Every case of trial i carries the attribute trial=e<i>, a configured
  dimension, and the rules alert `by: [trial]` (Prometheus: sum by (process,
  stage, trial)), so each trial's alerts are new alert instances, in
  Alertmanager groups of their own, independent of the other trials without
  waiting for resolves (Prometheus takes up to 10 s to resolve). A trial's
  alerts are resolved (the case completes, two more cases advance) once both
  paths have delivered them.
  Latency = Alertmanager's receipt time of the alert (its `updatedAt`, set when
  its POST /api/v2/alerts handler stores the alert; read by polling GET
  /api/v2/alerts every 5 ms, so the poll interval adds no error) minus the
  wall time at which the crossing event was handed to the producer (a minimal
  synchronous Kafka producer in this script: one Produce request per event,
  acks=1, on a kept-open connection).

  phase 2 (a second kpid with clock: wall): a case enters stage w (sla 2s,
  occurredAt = now, trial=w<i>) and no further event comes; latency = receipt
  time in Alertmanager minus the deadline (occurredAt + 2 s). Trials start
  every 0.3-0.5 s (random), so up to ~6 overlap.

Also reported, to show where the time goes: the alert's startsAt (when kpid's
rule engine, or Prometheus' rule evaluation, made it active) splits each
latency into "detect" and "deliver"; a plain librdkafka consumer (`kcat -C`,
fetch.wait.max.ms=100 like kpid's) on the same broker gives the Kafka
transport's share; the webhook receiver (Alertmanager group_wait: 0s) gives
what a pager would see. Alertmanager and Prometheus are as Debian ships them.

Stdlib only; loopback only; every process it starts is stopped on exit, error,
Ctrl-C or SIGTERM (and gets SIGTERM if this script dies). By default the run
takes ~3-4 minutes and never more than --max-seconds (270).

  python3 bench/alert_latency.py                    # 100 trials per path
  python3 bench/alert_latency.py --trials 30 --json /tmp/lat.json
"""

import argparse
import ctypes
import datetime
import http.client
import http.server
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
PROMETHEUS = "/usr/bin/prometheus"
KCAT = "/usr/bin/kcat"
TOPIC = "events"
EVAL_INTERVAL = 5  # Prometheus scrape_interval and evaluation_interval, seconds
SLA_EVENT = 10     # phase 1 stage SLA, seconds of event time
SLA_WALL = 2       # phase 2 stage SLA, seconds
TRIAL_SPAN = 20    # event time each phase 1 trial takes, seconds
MAX_TRIALS = 900   # each trial is a value of the `trial` dimension


class BenchError(Exception):
    pass


def log(message):
    print(f"[alert-latency {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rfc3339(unix_seconds):
    return datetime.datetime.fromtimestamp(unix_seconds, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text):
    """RFC 3339 (Go's, up to nanoseconds) -> unix seconds."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        raise ValueError(f"bad time {text!r}")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    base = datetime.datetime.fromisoformat(m.group(1) + zone).timestamp()
    return base + (float("0." + m.group(2)) if m.group(2) else 0.0)


def tail(path, lines=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def http_get(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
        return None, ""


def wait_until(what, predicate, timeout, proc=None, log_path=None, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what}: process exited ({proc.returncode}):\n{tail(log_path)}")
        if predicate():
            return
        time.sleep(interval)
    raise BenchError(f"{what}: not within {timeout:.0f} s" +
                     (f":\n{tail(log_path)}" if log_path else ""))


def _die_with_parent():
    """preexec_fn: the child gets SIGTERM if this script dies (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Processes:
    """Every child process started, so all of them can be stopped on exit."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, log_path, stdin=subprocess.DEVNULL, stdout=None):
        log_file = open(log_path, "ab")
        # A session of its own: Ctrl-C reaches only this script, which then
        # stops the children in order.
        proc = subprocess.Popen(argv, stdin=stdin, stderr=log_file,
                                stdout=stdout if stdout is not None else log_file,
                                start_new_session=True, preexec_fn=_die_with_parent)
        log_file.close()
        proc.bench_name = name
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc, timeout=10.0):
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"{proc.bench_name} (pid {proc.pid}) ignored SIGTERM; killing it")
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop_one(self, proc):
        rc = self.stop(proc)
        if proc in self.procs:
            self.procs.remove(proc)
        return rc

    def stop_all(self):
        for proc in reversed(self.procs):
            self.stop(proc, timeout=5.0)
        self.procs.clear()


# --- Alertmanager side ----------------------------------------------------------------

def alert_key(labels):
    return (labels.get("alertname"), labels.get("trial"), labels.get("via"))


class Webhook:
    """The receiver Alertmanager notifies: first arrival time per firing alert."""

    def __init__(self):
        self.first = {}
        self.lock = threading.Lock()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                now = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {}
                with hook.lock:
                    for a in payload.get("alerts", []):
                        if a.get("status") == "firing":
                            hook.first.setdefault(alert_key(a.get("labels", {})), now)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def get(self, key):
        with self.lock:
            return self.first.get(key)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class AlertmanagerPoller:
    """GET /api/v2/alerts on a kept-alive connection; the first sighting of each alert."""

    def __init__(self, port):
        self.port = port
        self.conn = None
        self.first = {}  # key -> {"seen", "updated", "starts"}
        self.polls = 0

    def poll(self):
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            self.conn.request("GET", "/api/v2/alerts")
            response = self.conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return
        seen = time.time()
        self.polls += 1
        if response.status != 200:
            return
        for a in json.loads(body):
            key = alert_key(a.get("labels", {}))
            if key not in self.first:
                self.first[key] = {"seen": seen, "updated": parse_time(a["updatedAt"]),
                                   "starts": parse_time(a["startsAt"])}

    def close(self):
        if self.conn is not None:
            self.conn.close()


ALERTMANAGER_YML = """\
route:
  receiver: hook
  group_by: [alertname, process, stage, trial, via]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:{hook_port}/hook
        send_resolved: false
"""


def start_alertmanager(procs, tmp, hook_port):
    port = free_port()
    with open(os.path.join(tmp, "alertmanager.yml"), "w") as f:
        f.write(ALERTMANAGER_YML.format(hook_port=hook_port))
    log_path = os.path.join(tmp, "alertmanager.log")
    proc = procs.start("alertmanager", [
        ALERTMANAGER, f"--config.file={tmp}/alertmanager.yml", f"--storage.path={tmp}/am-data",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
        "--log.level=warn"], log_path)
    wait_until("alertmanager ready",
               lambda: http_get(f"http://127.0.0.1:{port}/-/ready")[0] == 200, 30, proc, log_path)
    return proc, port


# --- kpid -----------------------------------------------------------------------------

def write_kpid_config(tmp, name, clock, processes, rules, am_port, properties=()):
    http_port = free_port()
    props = "".join(f"    {json.dumps(k)}: {json.dumps(v)}\n" for k, v in properties)
    config = f"""\
kafka:
  brokers: embedded
  topic: {TOPIC}
  group_id: kpid
  partitions: 1
  bootstrap_file: {tmp}/{name}.bootstrap
{"  properties:" + chr(10) + props if props else ""}http: {{listen: "127.0.0.1:{http_port}"}}
grpc: {{listen: "127.0.0.1:{free_port()}"}}
clock: {clock}
windows: [1h]
retention: 1d
case_ttl: 30d
dedup_horizon: 1h
dimensions: {{names: [trial], max_series_per_process: {MAX_TRIALS + 10}}}
processes:
{processes}rules: ["{name}.rules.yaml"]
alertmanagers: ["http://127.0.0.1:{am_port}"]
"""
    with open(os.path.join(tmp, f"{name}.yaml"), "w") as f:
        f.write(config)
    with open(os.path.join(tmp, f"{name}.rules.yaml"), "w") as f:
        f.write(rules)
    return os.path.join(tmp, f"{name}.yaml"), http_port


EVENT_RULES = """\
groups:
  - name: latency
    interval: 1s
    rules:
      - alert: StageOverSla
        process: lat
        stage: s
        kpi: backlog_over_sla
        op: ">"
        threshold: 0
        by: [trial]
        labels: {via: kpid}
        annotations: {summary: "{{ $value }} case(s) of trial {{ $labels.trial }} past the SLA"}
      - alert: StageFalloutHigh
        process: thr
        stage: f
        by: [trial]
        kpi: fallout_ratio
        window: 1h
        op: ">"
        threshold: 0.5
        min_events: 3
        labels: {via: kpid}
        annotations: {summary: "trial {{ $labels.trial }}: fallout ratio {{ $value }} > 0.5"}
"""

WALL_RULES = """\
groups:
  - name: latency
    interval: 1s
    rules:
      - alert: StageOverSla
        process: wall
        stage: w
        by: [trial]
        kpi: backlog_over_sla
        op: ">"
        threshold: 0
        labels: {via: kpid}
"""

# The same alerts in PromQL, written as rules/prometheus/kpid.rules.yml writes
# them (sums across replicas, ratios from the sums, min_events as an `and`).
PROMETHEUS_RULES = """\
groups:
  - name: latency
    rules:
      - alert: StageOverSla
        expr: sum by (process, stage, trial) (kpid_stage_backlog_over_sla{process="lat", stage="s"}) > 0
        labels: {via: prometheus}
      - alert: StageFalloutHigh
        expr: |
          (
              sum by (process, stage, trial) (kpid_window_stage_fallout{process="thr", stage="f", window="1h"})
            /
              sum by (process, stage, trial) (kpid_window_stage_exited{process="thr", stage="f", window="1h"})
          ) > 0.5
          and
            sum by (process, stage, trial) (kpid_window_stage_exited{process="thr", stage="f", window="1h"}) >= 3
        labels: {via: prometheus}
"""

PROMETHEUS_YML = """\
global:
  scrape_interval: {interval}s
  scrape_timeout: 4s
  evaluation_interval: {interval}s
rule_files: [prometheus.rules.yml]
scrape_configs:
  - job_name: kpid
    static_configs: [{{targets: ["127.0.0.1:{kpid_port}"]}}]
alerting:
  alertmanagers:
    - static_configs: [{{targets: ["127.0.0.1:{am_port}"]}}]
"""

CONSUMED_RE = re.compile(
    r"^kpid_events_(consumed|rejected|duplicate)_total(?:\{[^}]*\})? (\S+)$", re.M)


class Kpid:
    def __init__(self, procs, binary, tmp, name, config_path, http_port):
        self.name = name
        self.http_port = http_port
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.bootstrap = os.path.join(tmp, f"{name}.bootstrap")
        self.proc = procs.start(name, [binary, "--config", config_path], self.log_path)
        self.brokers = None

    def wait_ready(self):
        wait_until(f"{self.name} ready",
                   lambda: http_get(f"http://127.0.0.1:{self.http_port}/readyz")[0] == 200,
                   60, self.proc, self.log_path)
        with open(self.bootstrap) as f:
            self.brokers = f.read().strip()

    def counts(self):
        status, text = http_get(f"http://127.0.0.1:{self.http_port}/metrics")
        if status != 200:
            return None
        totals = {"consumed": 0.0, "rejected": 0.0, "duplicate": 0.0}
        for name, value in CONSUMED_RE.findall(text):
            totals[name] += float(value)
        return totals

    def wait_handled(self, n, timeout=10.0):
        """Until kpid has handled (accepted, rejected or deduplicated) n events."""
        def handled():
            c = self.counts()
            return c is not None and sum(c.values()) >= n
        wait_until(f"{self.name} handles {n} events", handled, timeout, self.proc, self.log_path,
                   interval=0.02)


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC32C_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(n):
    n = (n << 1) ^ (n >> 63)  # zigzag
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def kstring(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class Producer:
    """A minimal synchronous Kafka producer (Produce v3, one-record batches, acks=1).

    Why not a long-running `kcat -P` fed through a pipe: with Debian's kcat
    1.7.1 (librdkafka 2.0.2) on the embedded broker, lines it had read were
    sent only when it exited (linger.ms=0, batch.num.messages=1 and -p 0 made
    no difference), and a kcat per event would time its own start-up. This
    sends each event in its own request on a kept-open connection and waits
    for the broker's ack: "handed over" is the moment before the request is
    written, and the event is on the broker when send() returns.
    """

    def __init__(self, brokers, topic=TOPIC):
        self.topic = topic
        self.sent = 0
        self.last_offset = None  # of the last event sent
        self.correlation = 0
        host, port = brokers.split(",")[0].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        leader = self._leader()
        if leader != (host, int(port)):
            self.sock.close()
            self.sock = socket.create_connection(leader, timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _request(self, api_key, version, body):
        self.correlation += 1
        header = struct.pack(">hhi", api_key, version, self.correlation) + kstring("alert-latency")
        message = header + body
        self.sock.sendall(struct.pack(">i", len(message)) + message)
        size = struct.unpack(">i", self._read(4))[0]
        response = self._read(size)
        if struct.unpack(">i", response[:4])[0] != self.correlation:
            raise BenchError("kafka: response out of order")
        return response[4:]

    def _read(self, n):
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise BenchError("kafka: broker closed the connection")
            data += chunk
        return bytes(data)

    def _leader(self):
        """Metadata v1: the leader of partition 0 of the topic."""
        r = self._request(3, 1, struct.pack(">i", 1) + kstring(self.topic))
        pos = 0

        def take(fmt):
            nonlocal pos
            values = struct.unpack_from(fmt, r, pos)
            pos += struct.calcsize(fmt)
            return values if len(values) > 1 else values[0]

        def string():
            nonlocal pos
            n = take(">h")
            value = r[pos:pos + max(n, 0)].decode()
            pos += max(n, 0)
            return value

        brokers = {}
        for _ in range(take(">i")):
            node = take(">i")
            host = string()
            port = take(">i")
            string()  # rack
            brokers[node] = (host, port)
        take(">i")  # controller
        for _ in range(take(">i")):
            err = take(">h")
            name = string()
            take(">b")
            for _ in range(take(">i")):
                perr, partition, leader = take(">hii")
                pos += 4 * take(">i")  # replicas
                pos += 4 * take(">i")  # isr
                if name == self.topic and partition == 0 and not err and not perr:
                    return brokers[leader]
        raise BenchError(f"kafka: no leader for {self.topic} [0]")

    def send(self, event):
        """Produces one event (key = case id, JSON value); returns the wall time it was handed over."""
        key = event["caseId"].encode()
        value = json.dumps(event, separators=(",", ":")).encode()
        now_ms = int(time.time() * 1000)
        record = (b"\0" + varint(0) + varint(0) + varint(len(key)) + key +
                  varint(len(value)) + value + varint(0))
        record = varint(len(record)) + record
        # attributes .. records: what the CRC covers.
        tail_part = (struct.pack(">hiqqqhii", 0, 0, now_ms, now_ms, -1, -1, -1, 1) + record)
        batch = (struct.pack(">bI", 2, crc32c(tail_part)) + tail_part)
        batch = struct.pack(">i", -1) + batch  # partitionLeaderEpoch
        batch = struct.pack(">qi", 0, len(batch)) + batch
        body = (struct.pack(">hhii", -1, 1, 10000, 1) + kstring(self.topic) +
                struct.pack(">ii", 1, 0) + struct.pack(">i", len(batch)) + batch)
        handed = time.time()
        r = self._request(0, 3, body)
        # [topic [partition error_code base_offset log_append_time]] throttle
        pos = 4
        n = struct.unpack_from(">h", r, pos)[0]
        pos += 2 + n + 4
        _, err, self.last_offset = struct.unpack_from(">ihq", r, pos)
        if err:
            raise BenchError(f"kafka: produce failed with error {err}")
        self.sent += 1
        return handed

    def close(self):
        self.sock.close()


class TransportProbe:
    """A plain librdkafka consumer (kcat -C) on the same broker: when each offset shows up."""

    def __init__(self, procs, tmp, brokers, fetch_wait_ms):
        self.first = {}
        self.lock = threading.Lock()
        self.proc = procs.start(
            "kcat-consumer", [KCAT, "-C", "-b", brokers, "-t", TOPIC, "-o", "end", "-u", "-q",
                              "-f", "%o\n", "-X", f"fetch.wait.max.ms={fetch_wait_ms}"],
            os.path.join(tmp, "kcat-consumer.log"), stdout=subprocess.PIPE)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            now = time.time()
            with self.lock:
                self.first.setdefault(line.decode(errors="replace").strip(), now)

    def get(self, key):
        with self.lock:
            return self.first.get(key)


def event(process, case_id, kind, at, stage=None, **extra):
    e = {"eventId": f"{case_id}-{kind}-{at:.6f}", "process": process, "caseId": case_id,
         "kind": kind, "occurredAt": rfc3339(at)}
    if stage is not None:
        e["stage"] = stage
    e.update(extra)
    return e


# --- phases ---------------------------------------------------------------------------

class Bench:
    def __init__(self, args, procs, tmp):
        self.args = args
        self.procs = procs
        self.tmp = tmp
        self.started = time.monotonic()
        self.rng = random.Random(args.seed)

    def elapsed(self):
        return time.monotonic() - self.started

    def sleep_polling(self, seconds, on_tick):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            on_tick()
            time.sleep(min(self.args.poll_interval, max(0.0, end - time.monotonic())))

    def phase_event(self, kpid, producer, probe, prom_proc, poller, webhook):
        """Phase 1: per trial an SLA crossing and a threshold crossing, kpid and Prometheus."""
        args = self.args
        t0 = math.floor(time.time() / 3600) * 3600 - 2 * 86400  # event time, in the past
        now_event = t0
        producer.send(event("ticks", "warmup", "COST", t0, amount=0.0))
        kpid.wait_handled(producer.sent, 30)
        trials = []
        pending_resolve = []  # trials whose alerts are resolved once both paths delivered them
        budget = args.max_seconds - args.reserve_wall

        def tick():
            poller.poll()
            for t in list(pending_resolve):
                done = all(poller.first.get(k) for k in t["prom_keys"])
                if done or time.monotonic() > t["prom_deadline"]:
                    # Resolve at the current event time: nothing crosses, nothing moves.
                    producer.send(event("lat", f"c{t['i']}", "CASE_COMPLETED", now_event,
                                        amount=1.0))
                    for k in (4, 5):
                        producer.send(event("thr", f"x{t['i']}-{k}", "CASE_COMPLETED", now_event,
                                            amount=1.0))
                    pending_resolve.remove(t)

        def wait_for(key, timeout=10.0):
            """Until Alertmanager has the alert (a trial without it counts as lost)."""
            deadline = time.monotonic() + timeout
            while poller.first.get(key) is None and time.monotonic() < deadline:
                if kpid.proc.poll() is not None:
                    raise BenchError(f"kpid exited:\n{tail(kpid.log_path)}")
                time.sleep(args.poll_interval)
                tick()

        for i in range(args.trials):
            if self.elapsed() > budget:
                log(f"phase 1: time budget reached after {i} trials")
                break
            if prom_proc.poll() is not None:
                raise BenchError("prometheus exited")
            base = t0 + TRIAL_SPAN * (i + 1)
            tag = f"e{i:03d}"
            dims = {"trial": tag}
            producer.send(event("lat", f"c{i}", "STAGE_ENTERED", base, "s", attributes=dims))
            for k in range(1, 6):
                producer.send(event("thr", f"x{i}-{k}", "STAGE_ENTERED", base + 1, "f",
                                    attributes=dims))
            producer.send(event("thr", f"x{i}-1", "CASE_COMPLETED", base + 2, amount=1.0))
            producer.send(event("thr", f"x{i}-2", "CASE_FALLOUT", base + 3, reason="lost"))
            now_event = base + 3
            kpid.wait_handled(producer.sent)
            self.sleep_polling(self.rng.uniform(0.1, 0.5), tick)

            # SLA crossing: a COST event past c<i>'s deadline (base + SLA_EVENT).
            now_event = base + SLA_EVENT + 2
            cross_sla = f"tick{i}"
            handed_sla = producer.send(event("ticks", cross_sla, "COST", now_event, amount=0.0))
            offset_sla = producer.last_offset
            wait_for(("StageOverSla", tag, "kpid"))
            self.sleep_polling(self.rng.uniform(0.1, 0.4), tick)

            # Threshold crossing: the second fallout of five cases: 2/3 > 0.5 with 3 exits.
            now_event = base + SLA_EVENT + 3
            cross_thr = f"x{i}-3"
            handed_thr = producer.send(event("thr", cross_thr, "CASE_FALLOUT", now_event,
                                             reason="lost"))
            offset_thr = producer.last_offset
            wait_for(("StageFalloutHigh", tag, "kpid"))
            trial = {"i": i,
                     "sla": {"key": tag, "handed": handed_sla, "probe_key": str(offset_sla)},
                     "threshold": {"key": tag, "handed": handed_thr,
                                   "probe_key": str(offset_thr)},
                     "prom_keys": [("StageOverSla", tag, "prometheus"),
                                   ("StageFalloutHigh", tag, "prometheus")],
                     "prom_deadline": time.monotonic() + 4 * EVAL_INTERVAL + 5}
            trials.append(trial)
            pending_resolve.append(trial)
            if (i + 1) % 20 == 0:
                log(f"phase 1: {i + 1} trials, {self.elapsed():.0f} s")
            self.sleep_polling(self.rng.uniform(0.1, 0.5), tick)

        # The last trials' Prometheus alerts.
        while pending_resolve:
            tick()
            time.sleep(0.02)
        prom_phase = prometheus_phase(self.args.prom_port)

        results = {}
        for kind, alertname in (("sla", "StageOverSla"), ("threshold", "StageFalloutHigh")):
            for via in ("kpid", "prometheus"):
                rows = []
                for t in trials:
                    m = t[kind]
                    got = poller.first.get((alertname, m["key"], via))
                    row = {"trial": t["i"], "handed": m["handed"]}
                    if got:
                        row.update(latency=got["updated"] - m["handed"],
                                   detect=got["starts"] - m["handed"],
                                   deliver=got["updated"] - got["starts"],
                                   poll_lag=got["seen"] - got["updated"])
                        hook = webhook.get((alertname, m["key"], via))
                        if hook is not None:
                            row["webhook"] = hook - m["handed"]
                        seen = probe.get(m["probe_key"]) if probe else None
                        if seen is not None:
                            row["transport"] = seen - m["handed"]
                    rows.append(row)
                results[f"{kind}/{via}"] = rows
        return results, prom_phase

    def phase_wall(self, kpid, producer, poller, webhook):
        """Phase 2: clock wall; from a case's SLA deadline (no further event) to Alertmanager."""
        args = self.args
        producer.send(event("wall", "warmup", "COST", time.time(), amount=0.0))
        kpid.wait_handled(producer.sent, 30)
        outstanding, rows = [], []
        next_launch = time.monotonic()
        launched = 0
        end_launch = args.max_seconds - 10
        while launched < args.trials or outstanding:
            now = time.monotonic()
            if launched < args.trials and now >= next_launch and self.elapsed() < end_launch:
                tag = f"w{launched:03d}"
                at = time.time()
                producer.send(event("wall", f"w{launched}", "STAGE_ENTERED", at, "w",
                                    attributes={"trial": tag}))
                outstanding.append({"trial": launched, "tag": tag, "entered": at,
                                    "deadline": at + SLA_WALL, "give_up": now + SLA_WALL + 10})
                launched += 1
                next_launch = now + self.rng.uniform(0.3, 0.5)
            elif launched < args.trials and self.elapsed() >= end_launch and not outstanding:
                log(f"phase 2: time budget reached after {launched} trials")
                break
            poller.poll()
            for o in list(outstanding):
                got = poller.first.get(("StageOverSla", o["tag"], "kpid"))
                if got is None and time.monotonic() < o["give_up"]:
                    continue
                # Resolve 0.3 s after the alert arrived, so Alertmanager has
                # notified the webhook of the firing alert first.
                if got is not None and time.time() < got["seen"] + 0.3:
                    continue
                row = {"trial": o["trial"], "tag": o["tag"], "deadline": o["deadline"]}
                if got is not None:
                    frac = o["deadline"] - math.floor(o["deadline"])
                    row.update(latency=got["updated"] - o["deadline"],
                               detect=got["starts"] - o["deadline"],
                               deliver=got["updated"] - got["starts"],
                               poll_lag=got["seen"] - got["updated"],
                               to_next_second=(1.0 - frac) if frac > 0 else 0.0)
                    # What the one-second wheel slot does not explain: the
                    # 100 ms tick, the 10 ms change poll, evaluation.
                    row["after_second"] = row["detect"] - row["to_next_second"]
                    producer.send(event("wall", f"w{o['trial']}", "CASE_COMPLETED", time.time(),
                                        amount=1.0))
                rows.append(row)
                outstanding.remove(o)
            if kpid.proc.poll() is not None:
                raise BenchError(f"kpid (wall) exited:\n{tail(kpid.log_path)}")
            time.sleep(args.poll_interval)
        time.sleep(0.5)
        for row in rows:
            hook = webhook.get(("StageOverSla", row["tag"], "kpid"))
            if hook is not None and "latency" in row:
                row["webhook"] = hook - row["deadline"]
        rows.sort(key=lambda r: r["trial"])
        return rows


def prometheus_phase(port):
    """Prometheus' scrape and rule-evaluation phases: when in the 5 s cycle each happens."""
    out = {}
    status, text = http_get(f"http://127.0.0.1:{port}/api/v1/targets")
    targets = json.loads(text)["data"]["activeTargets"] if status == 200 else []
    if targets:
        out["last_scrape"] = parse_time(targets[0]["lastScrape"])
        out["scrape_duration"] = targets[0]["lastScrapeDuration"]
    status, text = http_get(f"http://127.0.0.1:{port}/api/v1/rules")
    groups = json.loads(text)["data"]["groups"] if status == 200 else []
    if groups:
        group = groups[0]
        out["last_evaluation"] = parse_time(group["lastEvaluation"])
        out["evaluation_time"] = group["evaluationTime"]
    if "last_scrape" in out and "last_evaluation" in out:
        # How long after a scrape starts the next evaluation runs (fixed for a run).
        out["scrape_to_eval"] = (out["last_evaluation"] - out["last_scrape"]) % EVAL_INTERVAL
    return out


def start_prometheus(procs, tmp, kpid_port, am_port):
    port = free_port()
    with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
        f.write(PROMETHEUS_YML.format(interval=EVAL_INTERVAL, kpid_port=kpid_port,
                                      am_port=am_port))
    with open(os.path.join(tmp, "prometheus.rules.yml"), "w") as f:
        f.write(PROMETHEUS_RULES)
    log_path = os.path.join(tmp, "prometheus.log")
    proc = procs.start("prometheus", [
        PROMETHEUS, f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={tmp}/prom-data",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], log_path)
    wait_until("prometheus ready",
               lambda: http_get(f"http://127.0.0.1:{port}/-/ready")[0] == 200, 60, proc, log_path)

    def scraped_and_evaluated():
        phase = prometheus_phase(port)
        return phase.get("last_scrape", 0) > 0 and phase.get("last_evaluation", 0) > 0

    # Year-0001 times mean "never": wait for a first scrape and evaluation.
    wait_until("prometheus first scrape and evaluation", scraped_and_evaluated,
               3 * EVAL_INTERVAL + 5, proc, log_path, interval=0.2)
    return proc, port


# --- report ---------------------------------------------------------------------------

def pct(values, p):
    """Nearest-rank percentile (p in 0..100): with 100 values p99 is the 2nd largest."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def summarize(rows, field="latency"):
    values = [r[field] for r in rows if field in r]
    if not values:
        return None
    return {"n": len(values), "p50": pct(values, 50), "p99": pct(values, 99),
            "min": min(values), "max": max(values), "mean": statistics.fmean(values)}


def fmt_ms(seconds):
    return f"{seconds * 1000:,.0f}" if abs(seconds) >= 0.0995 else f"{seconds * 1000:.1f}"


def report(args, results, wall_rows, prom_phase, elapsed, info):
    print(f"alert latency: {args.trials} trials per path requested, {os.cpu_count()} cpus, "
          f"{elapsed:.0f} s; Alertmanager receipt time (updatedAt) minus the crossing "
          f"event's hand-over to the producer (or the deadline)")
    print(f"  {info}")
    header = f"{'path':<46} {'n':>4} {'lost':>4} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}"
    print(header)
    summary = {}
    rows_out = [
        ("kpid  sla: event -> Alertmanager", "sla/kpid"),
        ("kpid  threshold: event -> Alertmanager", "threshold/kpid"),
        ("prom  sla: event -> Alertmanager", "sla/prometheus"),
        ("prom  threshold: event -> Alertmanager", "threshold/prometheus"),
    ]
    for label, name in rows_out:
        s = summarize(results[name])
        summary[name] = s
        lost = sum(1 for r in results[name] if "latency" not in r)
        if s:
            print(f"{label:<46} {s['n']:>4} {lost:>4} {fmt_ms(s['p50']):>9} "
                  f"{fmt_ms(s['p99']):>9} {fmt_ms(s['max']):>9}")
    s = summarize(wall_rows)
    summary["deadline/kpid"] = s
    lost = sum(1 for r in wall_rows if "latency" not in r)
    if s:
        print(f"{'kpid  sla: deadline -> Alertmanager (wall)':<46} {s['n']:>4} {lost:>4} "
              f"{fmt_ms(s['p50']):>9} {fmt_ms(s['p99']):>9} {fmt_ms(s['max']):>9}")

    ratios = {}
    for kind in ("sla", "threshold"):
        k, p = summary.get(f"{kind}/kpid"), summary.get(f"{kind}/prometheus")
        if k and p:
            ratios[kind] = {"p50": k["p50"] / p["p50"], "p99": k["p99"] / p["p99"]}
            print(f"ratio kpid/prometheus, {kind}: p50 {ratios[kind]['p50']:.3f}, "
                  f"p99 {ratios[kind]['p99']:.3f} (prometheus is "
                  f"{p['p50'] / k['p50']:.0f}x / {p['p99'] / k['p99']:.0f}x slower)")

    print("where the time goes (p50 / p99 ms):")
    parts = [
        ("transport", "kcat consumer sees the crossing event (Kafka floor)"),
        ("detect", "event/deadline -> alert active (startsAt)"),
        ("deliver", "startsAt -> Alertmanager receipt (notifier, POST)"),
        ("webhook", "event/deadline -> webhook receiver (group_wait 0s)"),
        ("poll_lag", "receipt -> seen by the 5 ms API poll"),
        ("to_next_second", "deadline -> next whole second"),
        ("after_second", "next whole second after deadline -> alert active"),
    ]
    breakdown = {}
    for name, rows in list(results.items()) + [("deadline/kpid", wall_rows)]:
        for field, what in parts:
            s = summarize(rows, field)
            if s:
                breakdown.setdefault(name, {})[field] = s
                print(f"  {name:<21} {what:<54} {fmt_ms(s['p50']):>7} / {fmt_ms(s['p99']):>7}")
    if "scrape_to_eval" in prom_phase:
        print(f"prometheus: evaluation runs {prom_phase['scrape_to_eval']:.2f} s after each "
              f"scrape starts in this run (fixed per run, set by hashes of the target and the "
              f"group); scrape took {prom_phase['scrape_duration'] * 1000:.0f} ms, evaluation "
              f"{prom_phase['evaluation_time'] * 1000:.1f} ms")
    goal = {name: (s["p99"] <= 1.0) for name, s in summary.items()
            if s and name.endswith("/kpid")}
    print("goal p99 <= 1 s (kpid): " + ", ".join(
        f"{name.split('/')[0]} {'met' if ok else 'NOT met'}" for name, ok in goal.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"trials": args.trials, "seed": args.seed, "summary": summary,
                       "ratios": ratios, "breakdown": breakdown, "prometheus_phase": prom_phase,
                       "phase1": results, "phase2": wall_rows, "info": info}, f, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="trials per path (100)")
    parser.add_argument("--build-dir", default=os.path.join(REPO, "build"),
                        help="CMake build directory with daemon/kpid (default: <repo>/build)")
    parser.add_argument("--poll-interval", type=float, default=0.005, metavar="SECONDS",
                        help="how often to poll Alertmanager's GET /api/v2/alerts (0.005)")
    parser.add_argument("--max-seconds", type=float, default=270,
                        help="stop starting trials so the whole run ends by then (270)")
    parser.add_argument("--reserve-wall", type=float, default=75, metavar="SECONDS",
                        help="of --max-seconds, kept for phase 2 (75)")
    parser.add_argument("--no-probe", action="store_true",
                        help="no kcat consumer measuring the Kafka transport")
    parser.add_argument("--probe-fetch-wait", type=int, default=100, metavar="MS",
                        help="fetch.wait.max.ms of that consumer (100, as kpid's default)")
    parser.add_argument("--kafka-property", action="append", default=[], metavar="KEY=VALUE",
                        type=lambda kv: tuple(kv.split("=", 1)),
                        help="kafka.properties entry for both kpids (repeatable), for "
                             "experiments, e.g. fetch.wait.max.ms=10")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random trial gaps (1)")
    parser.add_argument("--json", metavar="PATH", help="also write every trial as JSON here")
    parser.add_argument("--keep-tmp", action="store_true", help="keep configs and logs")
    args = parser.parse_args()
    if not 1 <= args.trials <= MAX_TRIALS:
        parser.error(f"--trials must be in 1..{MAX_TRIALS}")
    build = os.path.abspath(args.build_dir)
    kpid_binary = os.path.join(build, "daemon", "kpid")
    for path in (kpid_binary, ALERTMANAGER, PROMETHEUS, KCAT):
        if not os.access(path, os.X_OK):
            parser.error(f"{path} is missing (ninja -C {build} kpid; scripts/deps installs "
                         f"prometheus, prometheus-alertmanager and kcat)")

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    procs = Processes()
    tmp = tempfile.mkdtemp(prefix="kpid-alert-latency-")
    webhook = poller = None
    failed = True
    try:
        bench = Bench(args, procs, tmp)
        # A copy, so a rebuild in the shared tree cannot swap the binary mid-run.
        kpid_copy = os.path.join(tmp, "kpid")
        shutil.copy2(kpid_binary, kpid_copy)
        webhook = Webhook()
        am_proc, am_port = start_alertmanager(procs, tmp, webhook.port)
        poller = AlertmanagerPoller(am_port)
        log(f"alertmanager on 127.0.0.1:{am_port}; logs in {tmp}")

        event_processes = (f"  - id: lat\n    stages: [{{id: s, sla: {SLA_EVENT}s}}]\n"
                           f"  - id: thr\n    stages: [{{id: f, sla: 1d}}]\n"
                           f"  - id: ticks\n    stages: [{{id: t, sla: 1d}}]\n")
        wall_processes = f"  - id: wall\n    stages: [{{id: w, sla: {SLA_WALL}s}}]\n"
        config, port = write_kpid_config(tmp, "kpid-event", "event", event_processes,
                                         EVENT_RULES, am_port, args.kafka_property)
        kpid_event = Kpid(procs, kpid_copy, tmp, "kpid-event", config, port)
        config, port = write_kpid_config(tmp, "kpid-wall", "wall", wall_processes, WALL_RULES,
                                         am_port, args.kafka_property)
        kpid_wall = Kpid(procs, kpid_copy, tmp, "kpid-wall", config, port)
        kpid_event.wait_ready()
        kpid_wall.wait_ready()
        prom_proc, args.prom_port = start_prometheus(procs, tmp, kpid_event.http_port, am_port)
        log(f"kpid (event clock) broker {kpid_event.brokers}, kpid (wall clock) broker "
            f"{kpid_wall.brokers}, prometheus on 127.0.0.1:{args.prom_port}")

        producer = Producer(kpid_event.brokers)
        probe = (None if args.no_probe else
                 TransportProbe(procs, tmp, kpid_event.brokers, args.probe_fetch_wait))
        if probe:
            time.sleep(1.0)  # let it reach the end of the topic before the first trial
        results, prom_phase = bench.phase_event(kpid_event, producer, probe, prom_proc, poller,
                                                webhook)
        log(f"phase 1 done at {bench.elapsed():.0f} s; stopping prometheus")
        procs.stop_one(prom_proc)
        if probe:
            procs.stop_one(probe.proc)
        counts = kpid_event.counts() or {}
        producer.close()
        procs.stop_one(kpid_event.proc)

        wall_producer = Producer(kpid_wall.brokers)
        wall_rows = bench.phase_wall(kpid_wall, wall_producer, poller, webhook)
        wall_counts = kpid_wall.counts() or {}
        info = (f"kpid events: phase 1 {counts.get('consumed', 0):.0f} consumed, "
                f"{counts.get('rejected', 0):.0f} rejected; phase 2 "
                f"{wall_counts.get('consumed', 0):.0f} consumed, "
                f"{wall_counts.get('rejected', 0):.0f} rejected; {poller.polls} API polls")
        if counts.get("rejected") or wall_counts.get("rejected"):
            log("warning: kpid rejected events; see the logs")
        report(args, results, wall_rows, prom_phase, bench.elapsed(), info)
        failed = False
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except BenchError as e:
        log(f"error: {e}")
        return 1
    finally:
        procs.stop_all()
        if poller:
            poller.close()
        if webhook:
            webhook.close()
        if args.keep_tmp or failed:
            log(f"configs and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

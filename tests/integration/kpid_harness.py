"""What the process-level Python tests share (crash_test.py, scale_test.py):
the scenario config, a standalone broker fed by kpi-loadgen, child processes
with their logs, /metrics parsing, the list of run-local series that differ
between two correct runs, and the printed diff of two sets of series.

Stdlib only; loopback only. Imported from the tests' own folder (Python puts
a script's folder first on sys.path).
"""

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

TERM_EXIT_S = 10  # a SIGTERM'd kpid must have exited 0 within this
DIFF_LINES_PER_FAMILY = 4  # printed; the whole diff goes to a file
TOPIC = "crash-events"

# Three processes, two dimensions, SLAs close to (or under) the stages'
# medians so that breaches happen, and fallout, rework, completions, cost and
# feedback. case_ttl is short enough that long stays expire. Windows from 5m
# to 7d: the default stream (150k events) spans about two days of event
# time. {kafka_extra} and {extra} are more keys (a test's variant), each
# line starting with a newline.
CONFIG = """
kafka:
  brokers: "{brokers}"
  topic: """ + TOPIC + """
  group_id: {group}
  workers: {workers}{broker_partitions}{kafka_extra}
  properties:
    # A SIGKILL'd consumer never leaves its group: its partitions move (and
    # a restarted one's join completes) only when its session times out
    # (librdkafka's default: 45 s).
    session.timeout.ms: "4000"
    heartbeat.interval.ms: "300"
http: {{listen: "{http_listen}"}}
grpc: {{listen: "{grpc_listen}"}}
clock: event
windows: [5m, 1h, 6h, 24h, 7d]
retention: 8d
case_ttl: 12h
dedup_horizon: 1h
state_dir: {state_dir}
checkpoint_interval: {checkpoint_interval}{extra}
dimensions: {{names: [region, channel], max_series_per_process: 100}}
processes:
  - id: orders
    stages:
      - {{id: placed,  sla: 10m, simulate: {{median: 6m,  fallout: 0.05}}}}
      - {{id: picked,  sla: 1h,  simulate: {{median: 40m, fallout: 0.02, rework: 0.05}}}}
      - {{id: shipped, sla: 4h, simulate: {{median: 3h, sigma: 0.9, fallout: 0.03, rework: 0.08}}}}
    simulate:
      arrivals_per_hour: 250
      deal_median: 60
      deal_sigma: 0.8
      cost_per_case: 7.5
      feedback_odds: 0.2
      attributes:
        region: [emea, amer, apac]
        channel: [web, shop]
    # For kpid_kpi_tree_value / _sensitivity, read from the windows.
    kpi_tree:
      - {{id: revenue, product: [orders, fill_rate, avg_order]}}
      - {{id: orders, kpi: started}}
      - {{id: fill_rate, product: [placed_conversion, picked_conversion, shipped_conversion]}}
      - {{id: placed_conversion, kpi: conversion, stage: placed}}
      - {{id: picked_conversion, kpi: conversion, stage: picked}}
      - {{id: shipped_conversion, kpi: conversion, stage: shipped}}
      - {{id: avg_order, kpi: avg_deal}}
  - id: claims
    stages:
      - {{id: filed,    sla: 30m, simulate: {{median: 20m, fallout: 0.10}}}}
      - {{id: assessed, sla: 2h, simulate: {{median: 2h, sigma: 1.0, fallout: 0.15, rework: 0.10}}}}
      - {{id: paid,     sla: 1h,  simulate: {{median: 30m, fallout: 0.02, rework: 0.15}}}}
    simulate:
      arrivals_per_hour: 150
      deal_median: 800
      deal_sigma: 1.0
      cost_per_case: 40
      feedback_odds: 0.4
      attributes:
        region: [emea, amer]
        channel: [phone, web, agent]
  - id: signup
    stages:
      # Long, widely spread stays: some outlive case_ttl and expire.
      - {{id: form,   sla: 15m, simulate: {{median: 5m, fallout: 0.25}}}}
      - {{id: verify, sla: 3h,  simulate: {{median: 3h, sigma: 1.4, fallout: 0.10, rework: 0.05}}}}
    simulate:
      arrivals_per_hour: 100
      deal_median: 20
      cost_per_case: 2
      feedback_odds: 0.1
"""

# Series that are about the process, not about the events it read: they
# differ between two correct runs, so they are left out of the comparison.
# Everything else on /metrics is compared.
EXCLUDED = {
    # The same in every run of one build: nothing to learn from comparing it.
    "kpid_build_info": "build metadata, not state",
    # Reload history of this process (a restart has none).
    "kpid_config_": "this process's config reloads",
    # Alertmanager deliveries and queue of this process; the rule engine's
    # alert instances depend on wall-clock evaluation times (`for:`), not on
    # the events alone.
    "kpid_notification": "this process's alert deliveries",
    "kpid_alerts": "alert instances follow wall-clock rule evaluations",
    # Alert-state checkpoints of this process (every checkpoint_interval),
    # and what it restored or dropped at start.
    "kpid_alert_state_": "this process's alert-state checkpoints and restores",
    # The consumer's view of the broker: connection and fetch position, not
    # engine state (the lag is how catching up is detected, see caught_up).
    "kpid_kafka_connected": "this process's broker connection",
    "kpid_consumer_lag_messages": "this process's fetch position",
    # Deliveries of this process's dead-letter producer (none configured).
    "kpid_dead_letter_messages_total": "this process's dead-letter producer",
    # Evictions at max_open_cases count this run's only (case_tracker.h: not
    # stored in checkpoints; the expiries they also are persist).
    "kpid_process_cases_evicted_total": "this run's evictions, by design not checkpointed",
    # Checkpoint writes, durations, failures and restores of this process
    # (to state_dir and kafka.state_topic).
    "kpid_checkpoint": "this process's checkpoint writes and restores",
    "kpid_state_": "this process's checkpoint writes and restores",
    # Fan-out of global snapshots to this process's peers (config `peers`).
    "kpid_peer_": "this process's requests to its peers",
    # Scrape and HTTP server bookkeeping, if a library exports any.
    "kpid_scrape": "scrape timing",
    "exposer_": "scrape timing",
    "process_": "OS process statistics",
}

# Engine series that must be > 0 in the reference run: without them the
# comparison would not cover breaches, fallout, rework, completions...
MUST_HAPPEN = [
    "kpid_stage_sla_breaches_total",
    "kpid_process_cases_fallout_total",
    "kpid_stage_rework_total",
    "kpid_process_cases_completed_total",
    "kpid_process_cases_expired_total",
    "kpid_transitions_total",
    "kpid_process_revenue_total",
    "kpid_process_cost_total",
    "kpid_window_process_feedback_score",
    "kpid_stage_backlog",
    "kpid_stage_backlog_over_sla",
    "kpid_kpi_tree_value",
]

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+\d+)?$")
PARTITION_LABEL = re.compile(r'partition="(\d+)"')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def parse_metrics(text):
    """{series: value text}; the series is the name with its labels, as
    exported (kpid writes labels in a fixed order)."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError(f"cannot read /metrics line {line!r}")
        samples[m.group(1) + (m.group(2) or "")] = m.group(3)
    return samples


def excluded_reason(series):
    for prefix, why in EXCLUDED.items():
        if series.startswith(prefix):
            return why
    return None


def compared(samples):
    return {s: v for s, v in samples.items() if excluded_reason(s) is None}


def total(samples, name):
    return sum(float(v) for s, v in samples.items() if s == name or s.startswith(name + "{"))


def read_count(samples):
    """Messages kpid has fully handled: accepted, rejected or duplicate."""
    return int(total(samples, "kpid_events_consumed_total") +
               total(samples, "kpid_events_rejected_total") +
               total(samples, "kpid_events_duplicate_total"))


def lags(samples):
    return {s: float(v) for s, v in samples.items() if s.startswith("kpid_consumer_lag_messages{")}


def assigned_partitions(samples):
    """The partitions kpid has a lag for: the ones assigned to it."""
    return {int(PARTITION_LABEL.search(s).group(1)) for s in lags(samples)}


def as_number(text):
    try:
        return float(text)
    except ValueError:
        return float("nan")


def family(series):
    return series.split("{", 1)[0]


def diff(want, got, want_name="reference", got_name="crash run", close=None):
    """The series that differ, as (series, printable line), in series order;
    empty when equal. close(series, a, b): values that count as equal though
    their text differs (None: only equal text)."""
    out = []
    for s in sorted(set(want) | set(got)):
        a, b = want.get(s), got.get(s)
        if a == b:
            continue
        if a is None:
            out.append((s, f"  only in {got_name}: {s} {b}"))
        elif b is None:
            out.append((s, f"  only in {want_name}: {s} {a}"))
        elif close is None or not close(s, a, b):
            x, y = as_number(a), as_number(b)
            delta = f" ({got_name} - {want_name} = {y - x:+.17g})" if x == x and y == y else ""
            out.append((s, f"  {s}: {want_name} {a}, {got_name} {b}{delta}"))
    return out


def summarize(differences, want, got, per_family=DIFF_LINES_PER_FAMILY):
    """Per metric family: how many series differ, and the first few."""
    by_family = {}
    for series, line in differences:
        by_family.setdefault(family(series), []).append(line)
    out = []
    for name, lines in by_family.items():
        series = {s for s in set(want) | set(got) if family(s) == name}
        out.append(f" {name}: {len(lines)} of {len(series)} series differ")
        out += lines[:per_family]
        if len(lines) > per_family:
            out.append(f"  ... {len(lines) - per_family} more")
    return out


def check_reference(samples):
    errors = []
    for name in MUST_HAPPEN:
        if total(samples, name) <= 0:
            errors.append(f"reference: no {name}: the scenario no longer exercises it")
    return errors


class Harness:
    """Child processes (stopped by cleanup), their logs and configs in
    `tmp`, a deadline for the whole test, and the standalone broker."""

    def __init__(self, args, tmp, deadline):
        self.args = args  # .kpid, .loadgen, .events, .event_seed, .partitions, .workers
        self.tmp = tmp
        self.deadline = deadline
        self.procs = []  # (name, Popen), for the cleanup
        self.brokers = None
        self.bootstrap = None

    def left(self):
        return self.deadline - time.monotonic()

    def log_path(self, name):
        return os.path.join(self.tmp, f"{name}.log")

    def start(self, name, argv):
        log = open(self.log_path(name), "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append((name, p))
        return p

    def wait_for(self, what, condition, timeout=None, poll=0.1):
        end = self.deadline if timeout is None else min(self.deadline, time.monotonic() + timeout)
        while time.monotonic() < end:
            try:
                got = condition()
                if got:
                    return got
            except (OSError, ValueError, KeyError):  # not up yet: refused, no data
                pass
            time.sleep(poll)
        raise AssertionError(f"timed out waiting for {what}")

    def write_config(self, run, group, checkpoint_interval, http_listen, grpc_listen="127.0.0.1:0",
                     kafka_extra="", extra="", state_dir=None):
        state_dir = state_dir or os.path.join(self.tmp, f"state-{run}")
        path = os.path.join(self.tmp, f"kpid-{run}.yaml")
        with open(path, "w") as f:
            # Only the broker's config (dev-broker, kpi-loadgen) is "embedded".
            f.write(CONFIG.format(brokers=self.brokers or "embedded", group=group,
                                  broker_partitions="" if self.brokers else
                                  f"\n  partitions: {self.args.partitions}",
                                  workers=self.args.workers, http_listen=http_listen,
                                  grpc_listen=grpc_listen, state_dir=state_dir,
                                  checkpoint_interval=checkpoint_interval,
                                  kafka_extra=kafka_extra, extra=extra))
        return path

    def start_broker(self, kafka_extra=""):
        """`kpid dev-broker` with the event topic (and, with kafka_extra's
        kafka.state_topic, that one: the mock broker does not answer
        CreateTopics)."""
        config = self.write_config("broker", "unused", "10s", "127.0.0.1:0",
                                   kafka_extra=kafka_extra)
        self.bootstrap = os.path.join(self.tmp, "bootstrap")
        self.start("broker", [self.args.kpid, "dev-broker", "--config", config,
                              "--partitions", str(self.args.partitions),
                              "--bootstrap_file", self.bootstrap])
        self.brokers = self.wait_for("the broker's bootstrap file",
                                     lambda: open(self.bootstrap).read().strip(), timeout=20)
        return config

    def produce(self, config, extra_args=()):
        """kpi-loadgen's seeded stream of args.events events, from
        2026-01-01, to the broker."""
        began = time.monotonic()
        loadgen = self.start("loadgen", [self.args.loadgen, "--config", config,
                                         "--bootstrap_file", self.bootstrap,
                                         "--events", str(self.args.events),
                                         "--seed", str(self.args.event_seed),
                                         "--start", "2026-01-01T00:00:00Z", *extra_args])
        rc = loadgen.wait(timeout=max(1, self.left()))
        if rc != 0:
            raise AssertionError(f"kpi-loadgen exited {rc}")
        print(f"produced {self.args.events} events (seed {self.args.event_seed}) to "
              f"{self.args.partitions} partitions in {time.monotonic() - began:.1f} s")

    def start_broker_and_produce(self):
        self.produce(self.start_broker())

    def metrics(self, port):
        return parse_metrics(http_get(f"http://127.0.0.1:{port}/metrics"))

    def scrape(self, p, port, what):
        """/metrics of a kpid that must still run; None while it does not answer."""
        if p.poll() is not None:
            raise AssertionError(f"{what}: kpid exited {p.returncode}")
        if self.left() <= 0:
            raise AssertionError(f"{what}: timed out")
        try:
            return self.metrics(port)
        except (OSError, ValueError):
            return None

    def stop(self, p, name, sig):
        p.send_signal(sig)
        try:
            rc = p.wait(timeout=TERM_EXIT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError(f"{name}: still running {TERM_EXIT_S} s after "
                                 f"{signal.Signals(sig).name}")
        if sig == signal.SIGTERM and rc != 0:
            raise AssertionError(f"{name}: exited {rc} after SIGTERM, want 0")
        return rc

    def cleanup(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

#!/usr/bin/env python3
"""Crash recovery with real processes: killed and restarted, kpid ends with
exactly the KPIs of a run that was never interrupted (issue 7).

The Kafka broker is a process of its own (`kpid dev-broker`), so it outlives
every kpid. kpi-loadgen writes N seeded events to it once. Then:

  reference: kpid (group A, state_dir A) reads all N events, uninterrupted;
  crash run: kpid (group B, state_dir B, checkpoint_interval 1s) is killed
             (SIGKILL, or SIGTERM with --signal term) at --kills random
             points of its progress and restarted each time, then reads to
             the end.

Both runs use `clock: event`, so every window ends at the latest event time
and their KPIs depend only on the events. After both have caught up, every
engine series of /metrics (counters, window gauges, quantiles, backlogs,
transitions, ingest counts) must be equal, exactly; the differing series are
printed otherwise. With --kills 0 the crash run is a second uninterrupted run
(a check of the harness itself: it must pass on any kpid).

    crash_test.py --kpid BIN --loadgen BIN [--signal kill|term] [--seed S]

A failure prints the kill seed and the points it drew; `--seed S` repeats
them (the points are progress thresholds, so the same seed kills at about
the same messages; the exact ones depend on batching).
"""

import argparse
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

DEADLINE_S = 100  # the whole run; ctest's timeout is above it
TERM_EXIT_S = 10  # a SIGTERM'd kpid must have exited 0 within this
STALL_S = 3  # caught up when nothing moved for this long (see caught_up)
DIFF_LINES_PER_FAMILY = 4  # printed; the whole diff goes to a file

# Three processes, two dimensions, SLAs close to (or under) the stages'
# medians so that breaches happen, and fallout, rework, completions, cost and
# feedback. case_ttl is short enough that long stays expire. Windows from 5m
# to 7d: the default stream (150k events) spans about two days of event
# time.
CONFIG = """
kafka:
  brokers: "{brokers}"
  topic: crash-events
  group_id: {group}
  workers: {workers}{broker_partitions}
  properties:
    # A SIGKILL'd consumer never leaves its group: the restarted one's join
    # waits for the session to time out (librdkafka's default: 45 s).
    session.timeout.ms: "4000"
    heartbeat.interval.ms: "300"
http: {{listen: "127.0.0.1:{http_port}"}}
grpc: {{listen: "127.0.0.1:0"}}
clock: event
windows: [5m, 1h, 6h, 24h, 7d]
retention: 8d
case_ttl: 12h
dedup_horizon: 1h
state_dir: {state_dir}
checkpoint_interval: {checkpoint_interval}
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
    # Checkpoint writes, durations, failures and restores of this process.
    "kpid_checkpoint": "this process's checkpoint writes and restores",
    "kpid_state_": "this process's checkpoint writes and restores",
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


def as_number(text):
    try:
        return float(text)
    except ValueError:
        return float("nan")


def family(series):
    return series.split("{", 1)[0]


def diff(reference, crashed):
    """The series that differ, as (series, printable line), in series order;
    empty when equal."""
    out = []
    for s in sorted(set(reference) | set(crashed)):
        a, b = reference.get(s), crashed.get(s)
        if a == b:
            continue
        if a is None:
            out.append((s, f"  only in crash run: {s} {b}"))
        elif b is None:
            out.append((s, f"  only in reference: {s} {a}"))
        else:
            x, y = as_number(a), as_number(b)
            delta = f" (crash - reference = {y - x:+.17g})" if x == x and y == y else ""
            out.append((s, f"  {s}: reference {a}, crash run {b}{delta}"))
    return out


def summarize(differences, reference, crashed, per_family=DIFF_LINES_PER_FAMILY):
    """Per metric family: how many series differ, and the first few."""
    by_family = {}
    for series, line in differences:
        by_family.setdefault(family(series), []).append(line)
    out = []
    for name, lines in by_family.items():
        series = {s for s in set(reference) | set(crashed) if family(s) == name}
        out.append(f" {name}: {len(lines)} of {len(series)} series differ")
        out += lines[:per_family]
        if len(lines) > per_family:
            out.append(f"  ... {len(lines) - per_family} more")
    return out


class Harness:
    def __init__(self, args, tmp, deadline):
        self.args = args
        self.tmp = tmp
        self.deadline = deadline
        self.procs = []  # (name, Popen), for the cleanup
        self.brokers = None

    def left(self):
        return self.deadline - time.monotonic()

    def start(self, name, argv):
        log = open(os.path.join(self.tmp, f"{name}.log"), "w")
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

    def write_config(self, run, group, checkpoint_interval, http_port):
        state_dir = os.path.join(self.tmp, f"state-{run}")
        path = os.path.join(self.tmp, f"kpid-{run}.yaml")
        with open(path, "w") as f:
            # Only the broker's config (dev-broker, kpi-loadgen) is "embedded".
            f.write(CONFIG.format(brokers=self.brokers or "embedded", group=group,
                                  broker_partitions="" if self.brokers else
                                  f"\n  partitions: {self.args.partitions}",
                                  workers=self.args.workers, http_port=http_port,
                                  state_dir=state_dir, checkpoint_interval=checkpoint_interval))
        return path

    def start_broker_and_produce(self):
        config = self.write_config("broker", "unused", "10s", free_port())
        bootstrap = os.path.join(self.tmp, "bootstrap")
        self.start("broker", [self.args.kpid, "dev-broker", "--config", config,
                              "--partitions", str(self.args.partitions),
                              "--bootstrap_file", bootstrap])
        self.brokers = self.wait_for("the broker's bootstrap file",
                                     lambda: open(bootstrap).read().strip(), timeout=20)
        began = time.monotonic()
        loadgen = self.start("loadgen", [self.args.loadgen, "--config", config,
                                         "--bootstrap_file", bootstrap,
                                         "--events", str(self.args.events),
                                         "--seed", str(self.args.event_seed),
                                         "--start", "2026-01-01T00:00:00Z"])
        rc = loadgen.wait(timeout=max(1, self.left()))
        if rc != 0:
            raise AssertionError(f"kpi-loadgen exited {rc}")
        print(f"produced {self.args.events} events (seed {self.args.event_seed}) to "
              f"{self.args.partitions} partitions in {time.monotonic() - began:.1f} s")

    def metrics(self, port):
        return parse_metrics(http_get(f"http://127.0.0.1:{port}/metrics"))

    def start_kpid(self, run, group, checkpoint_interval, restart):
        port = free_port()
        config = self.write_config(run, group, checkpoint_interval, port)
        p = self.start(f"kpid-{run}-{restart}", [self.args.kpid, "--config", config])
        return p, port

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

    def caught_up(self, p, port, run):
        """Waits until kpid has read everything it is going to read and its
        engine series stopped moving; returns the last scrape.

        Done when two scrapes a second apart have equal engine series (the
        last batch is handled, and idle partitions' clocks have moved on to
        the latest event time, firing what was due) and kpid says it read all
        N messages or is at the end of every partition. Or, whatever kpid
        says, when nothing moved for STALL_S: kpid_consumer_lag_messages
        counts a partition whose position is not known yet (nothing fetched
        since the start: e.g. its committed offset is at the end) as wholly
        unread, and a kpid without durable state restarts its counters."""
        n, partitions = self.args.events, self.args.partitions
        began = time.monotonic()
        samples, previous, still_since = {}, None, None
        while True:
            got = self.scrape(p, port, f"{run}: catching up ({read_count(samples)} of {n} "
                              f"messages read, lags {sorted(lags(samples).values())})")
            if got is None:
                time.sleep(0.2)
                continue
            samples = got
            lag = lags(samples)
            assigned = len(lag) == partitions
            if assigned and previous is not None and compared(samples) == compared(previous):
                still_since = still_since or time.monotonic() - 1.0
                at_end = read_count(samples) == n or not any(lag.values())
                if at_end or time.monotonic() - still_since >= STALL_S:
                    how = "at the end" if at_end else f"nothing moved for {STALL_S} s"
                    print(f"{run}: caught up ({how}) after {time.monotonic() - began:.1f} s; "
                          f"{read_count(samples)} of {n} messages read")
                    return samples
            else:
                still_since = None
            previous = samples if assigned else None
            time.sleep(1.0 if assigned else 0.2)

    def wait_for_stop_point(self, p, port, threshold, what):
        """Waits until kpid has fetched `threshold` messages (all partitions'
        N - lag, or its own count of messages read when higher: see
        caught_up for both); or until it read nothing for a second, its
        partitions assigned (nothing left for it to read). Returns how far
        it got."""
        n, partitions = self.args.events, self.args.partitions
        last_read, still_since = None, None
        while True:
            samples = self.scrape(p, port, what)
            if samples is not None:
                lag, read = lags(samples), read_count(samples)
                if len(lag) == partitions:
                    fetched = max(n - int(sum(lag.values())), read)
                    if fetched >= threshold:
                        return f"{fetched} messages fetched"
                    if read != last_read:
                        last_read, still_since = read, time.monotonic()
                    elif time.monotonic() - still_since >= 1.0:
                        return f"{fetched} messages fetched, nothing more read for 1 s"
            time.sleep(0.02)

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

    def reference_run(self):
        p, port = self.start_kpid("reference", "crash-test-a", "10s", 0)
        samples = self.caught_up(p, port, "reference")
        read = read_count(samples)
        if read != self.args.events:
            raise AssertionError(f"reference: read {read} messages, produced {self.args.events}")
        self.stop(p, "reference kpid", signal.SIGTERM)
        return samples

    def crash_run(self, sig, points):
        restart = 0
        p, port = self.start_kpid("crash", "crash-test-b", "1s", restart)
        for k, threshold in enumerate(points):
            # A threshold kpid already passed stops it as soon as its
            # partitions are assigned.
            began = time.monotonic()
            at = self.wait_for_stop_point(p, port, threshold, f"crash run: before stop {k + 1}")
            self.stop(p, f"kpid-crash-{restart}", sig)
            print(f"stop {k + 1}: {signal.Signals(sig).name} at {at} (threshold {threshold}), "
                  f"{time.monotonic() - began:.1f} s after start {restart}")
            restart += 1
            p, port = self.start_kpid("crash", "crash-test-b", "1s", restart)
        samples = self.caught_up(p, port, "crash run")
        self.stop(p, "crash-run kpid", signal.SIGTERM)
        return samples

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


def check_reference(samples):
    errors = []
    for name in MUST_HAPPEN:
        if total(samples, name) <= 0:
            errors.append(f"reference: no {name}: the scenario no longer exercises it")
    return errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kpid", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--signal", choices=["kill", "term"], default="kill")
    ap.add_argument("--kills", type=int, default=5, help="stops of the crash run; 0: none")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed of the stop points (default: random, printed)")
    ap.add_argument("--events", type=int, default=150000)
    ap.add_argument("--event_seed", type=int, default=11, help="kpi-loadgen's --seed")
    ap.add_argument("--partitions", type=int, default=8)
    # One worker per partition by default: on a kpid whose event clock is per
    # worker, a worker shared by partitions breaches a lagging partition's
    # cases by the event time of the others, and two uninterrupted runs
    # already differ. 0: kpid's default (one per core).
    ap.add_argument("--workers", type=int, default=None, help="kafka.workers (default: partitions)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    if args.workers is None:
        args.workers = args.partitions
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    sig = signal.SIGKILL if args.signal == "kill" else signal.SIGTERM
    # Distinct points, spread over the whole stream, in the order reached.
    points = sorted(random.Random(seed).sample(range(1, args.events), args.kills))
    print(f"stop seed {seed} ({signal.Signals(sig).name}); stop points (messages fetched): "
          f"{points}")
    print(f"repeat: {sys.argv[0]} --kpid {args.kpid} --loadgen {args.loadgen} "
          f"--signal {args.signal} --seed {seed} --kills {args.kills} --events {args.events} "
          f"--event_seed {args.event_seed} --partitions {args.partitions} --workers {args.workers}")

    tmp = tempfile.mkdtemp(prefix="kpid-crash-")
    h = Harness(args, tmp, time.monotonic() + DEADLINE_S)
    errors = []
    try:
        h.start_broker_and_produce()
        reference = h.reference_run()
        errors += check_reference(reference)
        crashed = h.crash_run(sig, points)
        want, got = compared(reference), compared(crashed)
        differences = diff(want, got)
        print(f"{len(want)} series compared, {len(reference) - len(want)} excluded")
        if differences:
            with open(os.path.join(tmp, "diff.txt"), "w") as f:
                f.write("".join(line + "\n" for _, line in differences))
            errors.append(f"{len(differences)} of {len(set(want) | set(got))} series differ after "
                          f"{args.kills} x {signal.Signals(sig).name} (stop seed {seed}); all "
                          f"of them in {tmp}/diff.txt:\n" +
                          "\n".join(summarize(differences, want, got)))
    except AssertionError as e:
        errors.append(str(e))
    finally:
        h.cleanup()
    for e in errors:
        print(e)
    if errors or args.keep:
        print(f"logs, configs and state in {tmp}")
    if errors:
        print(f"FAILED (stop seed {seed})")
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Scale-out benchmark (issue 8): end-to-end events/s of 1, 2 and 3 kpid
replicas in one consumer group, and restore time per million open cases.

throughput: per round and replica count k (interleaved: 1, 2, 3, 1, 2, 3...),
  a fresh `kpid dev-broker` (--partitions), k kpid replicas (fresh group,
  --workers each, no state_dir), lead_to_cash as in e2e_ingest.py. Once the
  group is stable (every partition assigned, every replica holding some) the
  replicas are stopped (SIGSTOP), kpi-loadgen produces --events, and they are
  continued (SIGCONT): so all of them read a full backlog from the same
  instant, and no rebalance happens during the measurement. The clock runs
  from SIGCONT to the scrape where the replicas' counts of messages handled
  add up to --events (scraped every --poll seconds); CPU is utime + stime of
  every replica (and the broker) over the same time. Reported per k: events/s
  (median of rounds), each as a ratio against the 1-replica run of the same
  round, and CPU-seconds per million events. A control (--no-control to
  leave it out): one replica with as many workers as the most replicas have
  together, i.e. as many threads competing for the shared cores.

restore: --open-cases events that each open a case which stays open (one
  stage whose simulated stay is months), on --restore-partitions partitions.
  kpid with an empty state_dir reads them all (the replay: the time to
  rebuild that state from the log), then SIGTERM checkpoints every partition;
  kpid is then started --rounds times on that state_dir: time from exec to
  /readyz 200, to kpid_state_restores_total{result="restored"} counting every
  partition, and to kpid_process_open_cases holding every case again. With
  `kafka.state_topic` accepted by `kpid check-config`, also restored from the
  state topic into an empty state_dir (skipped with the reason otherwise).
  Each start is on a fresh group id (the mock broker holds a group's next
  join until the previous member's session ends, ~45 s, even after a clean
  leave); the replay's exec-to-ready is that join, common to every start,
  and is subtracted; kpid's log gives the restore time itself.

The mock broker keeps only ~5 MiB per partition: --events and --open-cases
are checked against what the consumers read (a short topic never reaches the
count, and the run fails with a hint).

  python3 bench/scale_bench.py throughput --rounds 3
  python3 bench/scale_bench.py restore --rounds 3
  python3 bench/scale_bench.py all            # both, defaults
"""

import argparse
import datetime
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from e2e_ingest import (PROCESSES_YAML, TOPIC, BenchError, Processes, cpu_seconds, free_port,
                        kafka_yaml, log, tail)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANDLED_RE = re.compile(r"^kpid_events_(?:consumed|rejected|duplicate)_total(?:\{[^}]*\})? (\S+)$",
                        re.M)
LAG_RE = re.compile(r'^kpid_consumer_lag_messages\{[^}]*partition="(\d+)"', re.M)
RESTORED_RE = re.compile(r'^kpid_state_restores_total\{[^}]*result="restored"[^}]*\} (\S+)$', re.M)
OPEN_RE = re.compile(r"^kpid_process_open_cases(?:\{[^}]*\})? (\S+)$", re.M)
STATE_TOPIC = "kpid-state"

# Cases that open and stay open: one stage whose simulated stay is months,
# far longer than the stream (1M arrivals at 1M/h: one hour of event time).
OPEN_CASES_YAML = """\
clock: event
windows: [1h, 24h]
retention: 2d
case_ttl: 60d
dimensions: {names: [region, channel], max_series_per_process: 1000}
processes:
  - id: backlog
    stages:
      - {id: waiting, sla: 30d, simulate: {median: 90d, fallout: 0.0}}
    simulate:
      arrivals_per_hour: 1000000
      deal_median: 100
      cost_per_case: 0
      feedback_odds: 0
      attributes:
        region: [emea, amer, apac]
        channel: [web, partner, outbound]
"""


def get(url, timeout=2.0):
    """(status, body); (None, "") when kpid does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except (urllib.error.URLError, ConnectionError, OSError):
        return None, ""


def restore_span(log_path):
    """Seconds kpid spent restoring partitions, from its log: the first to
    the last "partition state restored", plus one partition's share (the
    first one's own restore precedes its line). None without restores."""
    stamps = []
    with open(log_path) as f:
        for line in f:
            if 'msg="partition state restored"' in line:
                ts = line.split(" ", 1)[0][len("ts="):].rstrip("Z")
                stamps.append(datetime.datetime.fromisoformat(ts).timestamp())
    if len(stamps) < 2:
        return None
    return (stamps[-1] - stamps[0]) * len(stamps) / (len(stamps) - 1)


def sum_of(regex, text):
    return sum(float(v) for v in regex.findall(text))


class Bench:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.procs = Processes()

    def start_broker(self, name, partitions, processes_yaml, broker_extra=()):
        """`kpid dev-broker`; broker_extra: more kafka keys for it alone (it
        creates kafka.state_topic: the mock broker does not answer
        CreateTopics). Returns (process, a config for kpi-loadgen, address)."""
        configs = {}
        for who, extra in (("broker", broker_extra), ("loadgen", ())):
            configs[who] = os.path.join(self.tmp, f"{name}-{who}.yaml")
            with open(configs[who], "w") as f:
                f.write(kafka_yaml("embedded", "unused", [f"partitions: {partitions}", *extra], []))
                f.write('http: {listen: "127.0.0.1:0"}\ngrpc: {listen: "127.0.0.1:0"}\n')
                f.write(processes_yaml)
        config = configs["broker"]
        bootstrap = os.path.join(self.tmp, f"{name}-bootstrap")
        proc = self.procs.start(f"{name}-broker", [self.args.kpid, "dev-broker", "--config", config,
                                                   "--partitions", str(partitions),
                                                   "--bootstrap_file", bootstrap],
                                os.path.join(self.tmp, f"{name}-broker.log"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if os.path.exists(bootstrap) and open(bootstrap).read().strip():
                return proc, configs["loadgen"], open(bootstrap).read().strip()
            if proc.poll() is not None:
                raise BenchError(f"dev-broker exited {proc.returncode}")
            time.sleep(0.05)
        raise BenchError("no bootstrap address from kpid dev-broker")

    def produce(self, config, address, events):
        r = subprocess.run([self.args.loadgen, "--config", config, "--brokers", address,
                            "--topic", TOPIC, "--events", str(events)], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise BenchError(f"kpi-loadgen failed ({r.returncode}):\n{r.stderr[-2000:]}")

    def start_kpid(self, name, address, group, processes_yaml, extra=(), top="", workers=None):
        port = free_port()
        config = os.path.join(self.tmp, f"{name}.yaml")
        with open(config, "w") as f:
            f.write(kafka_yaml(address, group, [f"workers: {workers or self.args.workers}", *extra],
                               []))
            f.write(f'http: {{listen: "127.0.0.1:{port}"}}\ngrpc: {{listen: "127.0.0.1:0"}}\n')
            f.write(top)
            f.write(processes_yaml)
        log_path = os.path.join(self.tmp, f"{name}.log")
        proc = self.procs.start(name, [self.args.kpid, "--config", config], log_path)
        proc.url = f"http://127.0.0.1:{port}"
        proc.log_path = log_path
        return proc

    def metrics(self, proc):
        if proc.poll() is not None:
            raise BenchError(f"{proc.bench_name} exited {proc.returncode}:\n{tail(proc.log_path)}")
        return get(proc.url + "/metrics")[1]

    # throughput

    def throughput_run(self, k, workers, round_index):
        name = f"t{round_index}-k{k}w{workers}"
        broker, broker_config, address = self.start_broker(name, self.args.partitions,
                                                           PROCESSES_YAML)
        group = f"scale-bench-{name}"
        replicas = [self.start_kpid(f"{name}-r{i}", address, group, PROCESSES_YAML, workers=workers)
                    for i in range(k)]
        # The mock broker's rebalances take 3 s steps, sometimes much longer.
        deadline = time.monotonic() + 120
        while True:  # every partition assigned once, every replica holding some
            owned = [set(LAG_RE.findall(self.metrics(r))) for r in replicas]
            if all(owned) and sum(len(o) for o in owned) == self.args.partitions and \
                    len(set().union(*owned)) == self.args.partitions:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{name}: group not stable after 120 s: {owned}")
            time.sleep(0.2)
        for r in replicas:
            r.send_signal(signal.SIGSTOP)
        self.produce(broker_config, address, self.args.events)
        cpu0 = [cpu_seconds(r.pid) for r in replicas]
        broker_cpu0 = cpu_seconds(broker.pid)
        began = time.monotonic()
        for r in replicas:
            r.send_signal(signal.SIGCONT)
        deadline = began + 120
        handled = 0
        while handled < self.args.events:
            time.sleep(self.args.poll)
            handled = sum(sum_of(HANDLED_RE, self.metrics(r)) for r in replicas)
            if time.monotonic() > deadline:
                raise BenchError(f"{name}: {handled} of {self.args.events} messages handled after "
                                 f"120 s (the mock broker keeps ~5 MiB per partition: lower "
                                 f"--events or raise --partitions)")
        seconds = time.monotonic() - began
        cpu = sum(cpu_seconds(r.pid) - c for r, c in zip(replicas, cpu0))
        broker_cpu = cpu_seconds(broker.pid) - broker_cpu0
        if handled != self.args.events:
            raise BenchError(f"{name}: {handled} messages handled, {self.args.events} produced")
        for r in replicas:
            Processes.stop(r)
        Processes.stop(broker)
        return {"events_per_sec": self.args.events / seconds, "seconds": seconds,
                "cpu_per_million": cpu / self.args.events * 1e6,
                "broker_cpu_per_million": broker_cpu / self.args.events * 1e6}

    def throughput(self):
        w = self.args.workers
        # (replicas, workers each); the first is the baseline. The last is a
        # control: one replica with as many workers as the most replicas
        # have together, so as many threads compete for the shared cores.
        runs = [(k, w) for k in self.args.replicas]
        if self.args.control:
            runs.append((1, w * max(self.args.replicas)))
        rounds = []
        for i in range(self.args.rounds):
            row = {}
            for run in runs:
                row[run] = self.throughput_run(*run, i)
                log(f"round {i + 1}: {run[0]} replica(s) x {run[1]} workers: "
                    f"{row[run]['events_per_sec']:,.0f} events/s, "
                    f"{row[run]['cpu_per_million']:.2f} kpid CPU-s/M")
            rounds.append(row)
        print(f"\nthroughput: {self.args.events} events, {self.args.partitions} partitions, "
              f"{self.args.rounds} rounds")
        print("| replicas x workers | events/s (median) | / first row, same round (median; range) "
              "| kpid CPU-s per M events | broker CPU-s per M |")
        print("|---|---|---|---|---|")
        for run in runs:
            ratios = [r[run]["events_per_sec"] / r[runs[0]]["events_per_sec"] for r in rounds]
            print(f"| {run[0]} x {run[1]} | "
                  f"{statistics.median(r[run]['events_per_sec'] for r in rounds):,.0f} | "
                  f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
                  f"{statistics.median(r[run]['cpu_per_million'] for r in rounds):.2f} | "
                  f"{statistics.median(r[run]['broker_cpu_per_million'] for r in rounds):.2f} |")
        for i, row in enumerate(rounds):
            print(f"round {i + 1}: " + ", ".join(
                f"{k}x{n}: {row[(k, n)]['events_per_sec']:,.0f}/s in "
                f"{row[(k, n)]['seconds']:.2f} s, {row[(k, n)]['cpu_per_million']:.2f} CPU-s/M"
                for k, n in runs))

    # restore

    def state_topic_refused(self):
        config = os.path.join(self.tmp, "check-state-topic.yaml")
        with open(config, "w") as f:
            f.write(kafka_yaml("127.0.0.1:9", "unused", [f"state_topic: {STATE_TOPIC}"], []))
            f.write(OPEN_CASES_YAML)
        r = subprocess.run([self.args.kpid, "check-config", config], capture_output=True,
                           text=True)
        return None if r.returncode == 0 else (r.stdout + r.stderr).strip()

    def timed_start(self, name, address, state_dir, extra, want_restored=0, want_open=None,
                    want_handled=None):
        """Starts kpid on state_dir; seconds from exec to ready, to
        want_restored partitions restored (if any), and to want_open open
        cases or want_handled messages handled ("open"); then SIGTERM."""
        began = time.monotonic()
        # A group of its own: the mock broker holds a group's next join until
        # the last member's session ends (~45 s), even after it left cleanly.
        proc = self.start_kpid(name, address, f"restore-bench-{name}", OPEN_CASES_YAML, extra,
                               top=f"state_dir: {state_dir}\ncheckpoint_interval: 1h\n")
        ready = restored = opened = None
        deadline = began + 300
        while opened is None or (want_restored and restored is None) or ready is None:
            if time.monotonic() > deadline:
                raise BenchError(f"{name}: not restored within 300 s:\n{tail(proc.log_path)}")
            text = self.metrics(proc)
            now = time.monotonic() - began
            if ready is None and get(proc.url + "/readyz")[0] == 200:
                ready = now
            if restored is None and want_restored and sum_of(RESTORED_RE, text) >= want_restored:
                restored = now
            if opened is None and text and (
                    sum_of(OPEN_RE, text) >= want_open if want_handled is None else
                    sum_of(HANDLED_RE, text) >= want_handled):
                opened = now
            time.sleep(self.args.poll)
        open_cases = sum_of(OPEN_RE, text)
        stop_began = time.monotonic()
        Processes.stop(proc, timeout=120)
        return {"ready": ready, "restored": restored, "open": opened, "open_cases": open_cases,
                "stop": time.monotonic() - stop_began, "span": restore_span(proc.log_path)}

    def restore(self):
        n, partitions = self.args.open_cases, self.args.restore_partitions
        refused = self.state_topic_refused()
        broker, config, address = self.start_broker(
            "restore", partitions, OPEN_CASES_YAML,
            [] if refused else [f"state_topic: {STATE_TOPIC}"])
        log(f"producing {n} case openings to {partitions} partitions")
        self.produce(config, address, n)
        state_dir = os.path.join(self.tmp, "state")
        # The replay: an empty state_dir, every message read from the log.
        replay = self.timed_start("replay", address, state_dir, [], want_handled=n)
        size = sum(os.path.getsize(os.path.join(state_dir, f)) for f in os.listdir(state_dir)
                   if f.endswith(".state"))
        log(f"replay: {replay['open']:.2f} s to {replay['open_cases']:.0f} open cases; SIGTERM "
            f"(checkpoints) {replay['stop']:.2f} s; {size / 1e6:.1f} MB of .state files")
        rows = []
        for i in range(self.args.rounds):
            rows.append(self.timed_start(f"restore-{i}", address, state_dir, [], partitions,
                                         want_open=replay["open_cases"]))
            log(f"restore {i + 1}: ready {rows[-1]['ready']:.2f} s, every partition restored "
                f"{rows[-1]['restored']:.2f} s, every case open {rows[-1]['open']:.2f} s")
        million = replay["open_cases"] / 1e6
        join = replay["ready"]  # a fresh group's join and assignment, nothing to restore
        print(f"\nrestore: {replay['open_cases']:.0f} open cases on {partitions} partitions, "
              f"{self.args.workers} workers; {size / 1e6:.1f} MB of .state files "
              f"({size / replay['open_cases']:.0f} B per open case)")
        print("| start (fresh group) | exec to /readyz 200 | exec to every case open "
              "| minus the replay's exec to ready (join) | per million open cases "
              "| restores in kpid's log (first to last, extrapolated) |")
        print("|---|---|---|---|---|---|")
        print(f"| replay from the log (empty state_dir) | {replay['ready']:.2f} s | "
              f"{replay['open']:.2f} s | {replay['open'] - join:.2f} s | "
              f"{(replay['open'] - join) / million:.2f} s | — |")
        med = {key: statistics.median(r[key] for r in rows) for key in ("ready", "open")}
        spans = [r["span"] for r in rows if r["span"] is not None]
        span = statistics.median(spans) if spans else float("nan")
        print(f"| restore from state_dir (median of {len(rows)}) | {med['ready']:.2f} s | "
              f"{med['open']:.2f} s | {med['open'] - join:.2f} s | "
              f"{(med['open'] - join) / million:.2f} s | {span:.2f} s "
              f"({span / million:.2f} s per million) |")
        print("rounds: " + "; ".join(f"ready {r['ready']:.2f}, every partition restored "
                                     f"{r['restored']:.2f}, open {r['open']:.2f} s, log span "
                                     f"{r['span'] or float('nan'):.2f} s" for r in rows))
        if refused:
            print(f"state topic: not measured: kpid check-config refuses kafka.state_topic: "
                  f"{refused}")
        else:
            extra = [f"state_topic: {STATE_TOPIC}"]
            # Once with the topic and a state_dir to fill the topic, then
            # from the topic alone (an empty state_dir: no local fast path).
            filled = os.path.join(self.tmp, "state-topic-filled")
            self.timed_start("topic-fill", address, filled, extra, want_handled=n)
            row = self.timed_start("topic-restore", address, os.path.join(self.tmp, "state-empty"),
                                   extra, want_open=replay["open_cases"])
            print(f"| restore from the state topic (empty state_dir) | {row['ready']:.2f} s | "
                  f"{row['open']:.2f} s | {row['open'] - join:.2f} s | "
                  f"{(row['open'] - join) / million:.2f} s | "
                  f"{row['span'] or float('nan'):.2f} s |")
        Processes.stop(broker)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["throughput", "restore", "all"])
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--kpid", help="this kpid binary instead of --build-dir's")
    ap.add_argument("--loadgen", help="this kpi-loadgen binary instead of --build-dir's")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--events", type=int, default=1000000)
    ap.add_argument("--partitions", type=int, default=48)
    ap.add_argument("--replicas", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2, 3],
                    help="replica counts, comma-separated; the first is the baseline")
    ap.add_argument("--no-control", dest="control", action="store_false",
                    help="leave out the 1-replica run with as many workers as the most replicas")
    ap.add_argument("--workers", type=int, default=2, help="kafka.workers of each replica")
    ap.add_argument("--open-cases", type=int, default=1000000)
    ap.add_argument("--restore-partitions", type=int, default=64)
    ap.add_argument("--poll", type=float, default=0.05, help="seconds between scrapes")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kpid-scale-bench-")
    # Copies, so that a concurrent rebuild cannot swap the binaries mid-run.
    for name, path in (("kpid", "daemon/kpid"), ("loadgen", "tools/loadgen/kpi-loadgen")):
        source = getattr(args, name) or os.path.join(args.build_dir, path)
        os.makedirs(os.path.join(tmp, name))
        setattr(args, name, shutil.copy(source, os.path.join(tmp, name)))
    with open("/proc/loadavg") as f:
        log(f"load average at start: {' '.join(f.read().split()[:3])}")
    bench = Bench(args, tmp)
    try:
        if args.what in ("throughput", "all"):
            bench.throughput()
        if args.what in ("restore", "all"):
            bench.restore()
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        bench.procs.stop_all()
        with open("/proc/loadavg") as f:
            log(f"load average at end: {' '.join(f.read().split()[:3])}")
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""End-to-end ingest benchmark: kpid against a bare librdkafka consumer.

Starts `kpid dev-broker` (the embedded mock broker, 16 partitions), produces
--events events with kpi-loadgen, then for --rounds rounds, alternating:

  (a) kpid-bench-bare-consumer drains the topic (manual assignment from the
      beginning, counting only): the ceiling on this broker and machine;
  (b) kpid (external mode, a fresh group.id each round) consumes the same
      events; the clock runs from the first scrape of /metrics (every 20 ms
      until then) with kpid_events_consumed_total > 0 to the end of kpid's
      last busy 50 ms (its CPU, from /proc/PID/stat, then stays idle and a
      scrape confirms every event was consumed), so kpid is not scraped while
      it runs, as the bare consumer is not. With --scraped, /metrics is
      scraped every 20 ms the whole run instead and the clock stops at the
      scrape where the count reaches --events: each scrape renders the whole
      page (~430 KB at the end of the default stream), which at that rate
      takes about a quarter of a core from kpid and as much again from this
      script (RESULTS.md §34). Then kpid gets SIGTERM.

Prints per round and the median: bare events/s, kpid events/s, kpid/bare
(also up to 99% of the events, which leaves out the up-to-100 ms a kpid
worker holds its last partial batch), and CPU-seconds per million events for
both, plus the mock broker's share of the machine and kpid's page faults per
event (which, unlike CPU time, do not depend on the machine's load). With a
baseline build, each round runs both kpids, the baseline first every other
round, and prints their ratios of events/s and of CPU-seconds. The binaries are copied to
a temp dir first, so a concurrent rebuild cannot swap them mid-run. Stdlib
only; loopback only; every process it starts is stopped on exit, Ctrl-C or
error.

  python3 bench/e2e_ingest.py                       # 400k protobuf events, 3 rounds
  python3 bench/e2e_ingest.py --events 200000 --rounds 5 --build-dir build
  python3 bench/e2e_ingest.py --kafka-property queued.min.messages=1000000
  python3 bench/e2e_ingest.py --baseline-build-dir /tmp/base/build   # + kpid/baseline
  python3 bench/e2e_ingest.py --scraped             # kpid scraped every 20 ms as it runs
  python3 bench/e2e_ingest.py --compare-scrape 0.1  # kpid scraped every 100 ms vs not
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPIC = "bench-events"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# lead_to_cash as in examples/, without rules or alertmanagers.
PROCESSES_YAML = """\
clock: event
windows: [5m, 1h, 24h, 7d]
retention: 15d
dimensions: {names: [region, channel], max_series_per_process: 1000}
processes:
  - id: lead_to_cash
    stages:
      - {id: lead,  sla: 1h,  simulate: {median: 20m, fallout: 0.30}}
      - {id: mql,   sla: 24h, simulate: {median: 8h,  fallout: 0.40}}
      - {id: sql,   sla: 48h, simulate: {median: 20h, fallout: 0.25}}
      - {id: demo,  sla: 72h, simulate: {median: 30h, fallout: 0.20, rework: 0.05}}
      - {id: quote, sla: 48h, simulate: {median: 24h, fallout: 0.35, rework: 0.10}}
    simulate:
      arrivals_per_hour: 3600
      deal_median: 24000
      deal_sigma: 0.7
      cost_per_case: 350
      feedback_odds: 0.3
      attributes:
        region: [emea, amer, apac]
        channel: [web, partner, outbound]
"""


class BenchError(Exception):
    pass


DURATION_RE = re.compile(r"\b(sla|median): (\d+)(ms|s|m|h)\b")
DURATION_MS = {"ms": 1, "s": 1000, "m": 60 * 1000, "h": 3600 * 1000}


def processes_yaml(arrivals_per_hour, compress_time=1):
    """PROCESSES_YAML with the simulated arrival rate kpi-loadgen produces at.

    compress_time F > 1 runs the simulation F times faster in event time:
    arrivals F times as frequent, every stage's median time and SLA F times
    shorter. The events are then the same mix (stage entries, fallouts,
    completions and breaches in the same proportions, ~the same open cases)
    packed into 1/F of the event time; --arrivals-per-hour instead changes the
    mix too (at a high rate most events are a new case's first stage)."""
    yaml = PROCESSES_YAML.replace("arrivals_per_hour: 3600",
                                  f"arrivals_per_hour: {arrivals_per_hour * compress_time}")
    if compress_time == 1:
        return yaml

    def shorter(m):
        ms = int(m.group(2)) * DURATION_MS[m.group(3)]
        if ms % compress_time:
            raise BenchError(f"--compress-time {compress_time} does not divide {m.group(0)}")
        return f"{m.group(1)}: {ms // compress_time}ms"
    return DURATION_RE.sub(shorter, yaml)


def log(message):
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def yaml_str(value):
    return json.dumps(value)  # a JSON string is a valid YAML scalar


def kafka_yaml(brokers, group_id, extra, properties):
    lines = ["kafka:", f"  brokers: {yaml_str(brokers)}", f"  topic: {TOPIC}",
             f"  group_id: {yaml_str(group_id)}"]
    lines += [f"  {line}" for line in extra]
    if properties:
        lines.append("  properties:")
        lines += [f"    {yaml_str(k)}: {yaml_str(v)}" for k, v in properties]
    return "\n".join(lines) + "\n"


class Processes:
    """Every child process started, so all of them can be stopped on exit."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, log_path, **kwargs):
        log_file = open(log_path, "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=log_file,
                                stdout=kwargs.pop("stdout", log_file), **kwargs)
        log_file.close()
        proc.bench_name = name
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc, timeout=15.0):
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"{proc.bench_name} (pid {proc.pid}) ignored SIGTERM; killing it")
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop_all(self):
        for proc in reversed(self.procs):
            self.stop(proc, timeout=5.0)
        self.procs.clear()


def proc_stat(pid):
    """(utime + stime in seconds, minor page faults) of a process, all its
    threads, from /proc/PID/stat. Faults do not depend on the machine's load,
    unlike CPU time."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK, int(fields[7])


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    return proc_stat(pid)[0]


def fetch_cpu_seconds(pid):
    """utime + stime of kpid's librdkafka broker threads (`rdk:broker*`: the
    fetch thread of each broker), which fetch and queue the messages ahead of
    the workers (RESULTS.md §22)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # the thread ended
        if stat[stat.index("(") + 1:stat.rindex(")")].startswith("rdk:broker"):
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


METRIC_RE = re.compile(r"^(kpid_events_(?:consumed|rejected|duplicate)_total)(?:\{[^}]*\})? (\S+)$",
                       re.M)


def scrape(url):
    """{consumed, rejected, duplicate} from kpid's /metrics, or None if not up yet."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError, socket.timeout):
        return None
    totals = {"consumed": 0.0, "rejected": 0.0, "duplicate": 0.0}
    for name, value in METRIC_RE.findall(text):
        totals[name[len("kpid_events_"):-len("_total")]] += float(value)
    return totals


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def start_broker(args, procs, tmp):
    broker_config = os.path.join(tmp, "broker.yaml")
    with open(broker_config, "w") as f:
        f.write(kafka_yaml("embedded", "unused", [f"partitions: {args.partitions}"], []))
        f.write(f"http: {{listen: \"127.0.0.1:{free_port()}\"}}\n")
        f.write(f"grpc: {{listen: \"127.0.0.1:{free_port()}\"}}\n")
        f.write(processes_yaml(args.arrivals_per_hour, args.compress_time))
    bootstrap_file = os.path.join(tmp, "bootstrap")
    if os.path.exists(bootstrap_file):
        os.remove(bootstrap_file)  # a stale address would point at a dead broker
    log_path = os.path.join(tmp, "broker.log")
    proc = procs.start("dev-broker", [args.kpid, "dev-broker", "--config", broker_config,
                                      "--partitions", str(args.partitions),
                                      "--bootstrap_file", bootstrap_file], log_path)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"kpid dev-broker exited ({proc.returncode}):\n{tail(log_path)}")
        if os.path.exists(bootstrap_file):
            with open(bootstrap_file) as f:
                address = f.read().strip()
            if address:
                if not all(a.startswith("127.0.0.1:") for a in address.split(",")):
                    raise BenchError(f"broker is not on loopback: {address}")
                args.broker_pid = proc.pid
                return broker_config, address
        time.sleep(0.05)
    raise BenchError(f"no bootstrap address from kpid dev-broker:\n{tail(log_path)}")


def produce(args, broker_config, address, tmp):
    log(f"producing {args.events} {args.format} events with kpi-loadgen")
    started = time.monotonic()
    result = subprocess.run([args.loadgen, "--config", broker_config, "--brokers", address,
                             "--topic", TOPIC, "--events", str(args.events),
                             "--format", args.format], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise BenchError(f"kpi-loadgen failed ({result.returncode}):\n{result.stderr[-2000:]}")
    log(f"produced in {time.monotonic() - started:.1f} s")
    # The mock broker silently drops the oldest data past ~5 MiB per partition;
    # a short topic would make every consumer below wait forever.
    result = subprocess.run([args.bare, "--brokers", address, "--topic", TOPIC, "--watermarks"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise BenchError(f"watermark query failed:\n{result.stderr}")
    marks = json.loads(result.stdout)
    if marks["messages"] != args.events or marks["low_offsets_nonzero"] != 0:
        raise BenchError(
            f"topic holds {marks['messages']} messages ({marks['low_offsets_nonzero']} partitions "
            f"lost their oldest data) instead of {args.events}: the embedded broker keeps only "
            f"~5 MiB per partition; lower --events or raise --partitions")


def run_bare(args, address):
    extra = [f"--property={k}={v}" for k, v in args.bare_property]
    result = subprocess.run([args.bare, "--brokers", address, "--topic", TOPIC,
                             "--expect", str(args.events), "--timeout-sec", "60"] + extra,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90)
    if result.returncode != 0:
        raise BenchError(f"bare consumer failed ({result.returncode}):\n{result.stderr}")
    out = json.loads(result.stdout.strip().splitlines()[-1])
    counted = out["events"] - 1  # the first message starts the clock
    return {"events_per_sec": out["events_per_sec"], "seconds": out["seconds"],
            "cpu_per_million": out["cpu_seconds"] / counted * 1e6}


def start_kpid(args, procs, address, tmp, round_index, binary, label):
    """Starts `binary` as kpid on a fresh group; returns (proc, /metrics url, log path)."""
    port = free_port()
    config_path = os.path.join(tmp, f"{label}-round{round_index}.yaml")
    extra = [f"workers: {args.workers}"] if args.workers else []
    with open(config_path, "w") as f:
        f.write(kafka_yaml(address, f"{label}-bench-{round_index}-{uuid.uuid4().hex[:8]}", extra,
                           args.kafka_property))
        f.write(f"http: {{listen: \"127.0.0.1:{port}\"}}\n")
        f.write(f"grpc: {{listen: \"127.0.0.1:{free_port()}\"}}\n")
        f.write(processes_yaml(args.arrivals_per_hour, args.compress_time))
    log_path = os.path.join(tmp, f"{label}-round{round_index}.log")
    proc = procs.start(label, [binary, "--config", config_path], log_path)
    return proc, f"http://127.0.0.1:{port}/metrics", log_path


def run_kpid(args, procs, address, tmp, round_index, binary=None, label="kpid"):
    proc, url, log_path = start_kpid(args, procs, address, tmp, round_index,
                                     binary or args.kpid, label)
    first = None  # (time, consumed, kpid cpu, broker cpu) at the first scrape with consumed > 0
    near_end = None  # (time, consumed) at the first scrape with consumed >= 99%
    totals = None
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                raise BenchError(f"kpid exited ({proc.returncode}):\n{tail(log_path)}")
            if time.monotonic() > deadline:
                raise BenchError(f"kpid did not consume {args.events} events in 60 s "
                                 f"(last scrape: {totals}):\n{tail(log_path)}")
            next_scrape = time.monotonic() + args.scrape_interval
            totals = scrape(url)
            if totals is not None:
                now = time.monotonic()
                cpu, faults = proc_stat(proc.pid)
                broker_cpu = cpu_seconds(args.broker_pid)
                fetch_cpu = fetch_cpu_seconds(proc.pid)
                if first is None and totals["consumed"] > 0:
                    first = (now, totals["consumed"], cpu, broker_cpu, faults, fetch_cpu)
                if near_end is None and totals["consumed"] >= 0.99 * args.events:
                    near_end = (now, totals["consumed"])
                if totals["consumed"] >= args.events:
                    break
                if totals["consumed"] + totals["rejected"] + totals["duplicate"] >= args.events:
                    raise BenchError(f"kpid did not accept every event: {totals}")
            time.sleep(max(0.0, next_scrape - time.monotonic()))
    finally:
        rc = procs.stop(proc)
        procs.procs.remove(proc)
    if rc != 0:
        log(f"warning: kpid exited {rc} on SIGTERM (log: {log_path})")
    counted = args.events - first[1]
    seconds = now - first[0]
    if counted <= 0 or seconds <= 0:
        raise BenchError("kpid consumed everything before the first scrape; raise --events")
    # Without the last 1%: kpid's workers hold a partial batch for up to
    # 100 ms (rd_kafka_consume_batch_queue waits for a full one), which is
    # latency at the end of the run rather than throughput.
    near_seconds = near_end[0] - first[0]
    rate_99 = (near_end[1] - first[1]) / near_seconds if near_seconds > 0 else float("nan")
    return {"events_per_sec": counted / seconds, "seconds": seconds,
            "events_per_sec_to_99pct": rate_99,
            "cpu_per_million": (cpu - first[2]) / counted * 1e6,
            # The mock broker shares the machine: kpid + broker cores busy.
            "broker_cpu_per_million": (broker_cpu - first[3]) / counted * 1e6,
            "cores_busy": (cpu - first[2] + broker_cpu - first[3]) / seconds,
            "minor_faults_per_event": (faults - first[4]) / counted,
            "fetch_cpu_per_million": (fetch_cpu - first[5]) / counted * 1e6,
            "counted": counted}


def run_kpid_cpu_timed(args, procs, address, tmp, round_index, scrape_interval, label,
                       binary=None):
    """kpid timed without relying on /metrics for the end of the run.

    /metrics is scraped every 20 ms only until kpid has consumed its first
    events (the start, as in run_kpid); from then on only every
    `scrape_interval` seconds (0: never, "not scraped"). The end is when kpid's
    CPU use (/proc/PID/stat, sampled every 50 ms) falls idle for 200 ms and a
    scrape then confirms every event was consumed: the end of the last busy
    window. Both modes are timed the same way, so their rates compare.
    """
    proc, url, log_path = start_kpid(args, procs, address, tmp, round_index,
                                     binary or args.kpid, label)
    window, idle_needed = 0.05, 4
    try:
        deadline = time.monotonic() + 60
        first = None
        while first is None:
            if proc.poll() is not None:
                raise BenchError(f"kpid exited ({proc.returncode}):\n{tail(log_path)}")
            if time.monotonic() > deadline:
                raise BenchError(f"kpid consumed nothing in 60 s:\n{tail(log_path)}")
            totals = scrape(url)
            if totals is not None and totals["consumed"] > 0:
                cpu, faults = proc_stat(proc.pid)
                first = (time.monotonic(), totals["consumed"], cpu, cpu_seconds(args.broker_pid),
                         faults, fetch_cpu_seconds(proc.pid))
            else:
                time.sleep(0.02)
        last_t, last_cpu = first[0], first[2]
        last_busy = (last_t, last_cpu, first[3], first[4], first[5])
        next_scrape = last_t + scrape_interval if scrape_interval > 0 else float("inf")
        scrapes, idle = 0, 0
        while True:
            if time.monotonic() > deadline:
                raise BenchError(f"kpid did not consume {args.events} events in 60 s:\n"
                                 f"{tail(log_path)}")
            now = time.monotonic()
            if now >= next_scrape:
                scrape(url)
                scrapes += 1
                next_scrape += scrape_interval
            wake = min(last_t + window, next_scrape)
            time.sleep(max(0.0, wake - time.monotonic()))
            now = time.monotonic()
            if now < last_t + window:
                continue
            cpu, faults = proc_stat(proc.pid)
            busy = (cpu - last_cpu) / (now - last_t) > 0.25  # cores
            last_t, last_cpu = now, cpu
            if busy:
                last_busy = (now, cpu, cpu_seconds(args.broker_pid), faults,
                             fetch_cpu_seconds(proc.pid))
                idle = 0
                continue
            idle += 1
            if idle >= idle_needed:
                totals = scrape(url)
                if totals is not None and totals["consumed"] >= args.events:
                    break
                idle = 0  # a stall, not the end: keep watching
    finally:
        rc = procs.stop(proc)
        procs.procs.remove(proc)
    if rc != 0:
        log(f"warning: kpid exited {rc} on SIGTERM (log: {log_path})")
    counted = args.events - first[1]
    seconds = last_busy[0] - first[0]
    if counted <= 0 or seconds <= 0:
        raise BenchError("kpid consumed everything before the first scrape; raise --events")
    rate = counted / seconds
    return {"events_per_sec": rate, "seconds": seconds, "scrapes": scrapes,
            "cpu_per_million": (last_busy[1] - first[2]) / counted * 1e6,
            # Comparable fields for report(): no 99% mark without scrapes.
            "events_per_sec_to_99pct": rate,
            "broker_cpu_per_million": (last_busy[2] - first[3]) / counted * 1e6,
            "cores_busy": (last_busy[1] - first[2] + last_busy[2] - first[3]) / seconds,
            "minor_faults_per_event": (last_busy[3] - first[4]) / counted,
            "fetch_cpu_per_million": (last_busy[4] - first[5]) / counted * 1e6,
            "counted": counted}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=400000, help="events to produce (400000)")
    parser.add_argument("--rounds", type=int, default=3, help="bare/kpid rounds (3)")
    parser.add_argument("--build-dir", default=os.path.join(REPO, "build"),
                        help="CMake build directory (default: <repo>/build)")
    parser.add_argument("--format", choices=["protobuf", "json"], default="protobuf",
                        help="event encoding (protobuf); JSON needs fewer --events to fit")
    parser.add_argument("--partitions", type=int, default=16, help="topic partitions (16)")
    parser.add_argument("--arrivals-per-hour", type=int, default=3600, metavar="N",
                        help="cases the simulation starts per hour of event time (3600: "
                             "400k events span about a day). Each partition's engine walks "
                             "all of that event time (a fresh bucket of every window per "
                             "bucket width, its timers second by second); a higher rate "
                             "packs the same events into less event time, as live traffic "
                             "at that rate would")
    parser.add_argument("--compress-time", type=int, default=1, metavar="F",
                        help="run the simulated processes F times faster in event time: "
                             "arrivals F times as frequent, stage times and SLAs F times "
                             "shorter, the same mix of events (1: as configured, 400k events "
                             "span ~42 hours). 150000 packs 400k events into ~1 s of event "
                             "time, as a live stream at ~400k events/s would span")
    parser.add_argument("--workers", type=int, default=0,
                        help="kpid kafka.workers (default 0: kpid's default, one per core)")
    parser.add_argument("--kafka-property", action="append", default=[], metavar="KEY=VALUE",
                        type=lambda kv: tuple(kv.split("=", 1)),
                        help="kafka.properties entry for kpid (repeatable), for experiments")
    parser.add_argument("--bare-property", action="append", default=[], metavar="KEY=VALUE",
                        type=lambda kv: tuple(kv.split("=", 1)),
                        help="librdkafka property for the bare consumer (repeatable)")
    parser.add_argument("--scrape-interval", type=float, default=0.020, metavar="SECONDS",
                        help="with --scraped, how often to scrape kpid's /metrics (0.020); "
                             "each scrape costs kpid CPU, which is counted in its CPU-seconds")
    parser.add_argument("--baseline-build-dir", metavar="DIR",
                        help="also run DIR/daemon/kpid (e.g. a build of the code before a "
                             "change) in every round, for kpid/baseline from the same run")
    parser.add_argument("--scraped", action="store_true",
                        help="time kpid by scraping /metrics every --scrape-interval the whole "
                             "run (the default before RESULTS.md §34), which costs kpid and "
                             "this script CPU on the same cores; the default times kpid "
                             "without scraping it while it runs (CPU going idle marks the end, "
                             "as for --compare-scrape), like the bare consumer")
    parser.add_argument("--quiet", action="store_true",
                        help="the default timing (kept so older command lines still run)")
    parser.add_argument("--compare-scrape", type=float, metavar="SECONDS",
                        help="instead of kpid/bare: per round, kpid with /metrics scraped every "
                             "SECONDS against kpid not scraped, both timed by CPU going idle "
                             "(under ~0.05 s the scrapes alone keep kpid busy and the run does "
                             "not end)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--keep-tmp", action="store_true", help="keep configs and logs")
    args = parser.parse_args()
    if args.events <= 1 or args.rounds < 1:
        parser.error("--events must be > 1 and --rounds >= 1")
    build = os.path.abspath(args.build_dir)
    args.kpid = os.path.join(build, "daemon", "kpid")
    args.loadgen = os.path.join(build, "tools", "loadgen", "kpi-loadgen")
    args.bare = os.path.join(build, "bench", "kpid-bench-bare-consumer")
    args.kpid_base = None
    if args.baseline_build_dir:
        args.kpid_base = os.path.join(os.path.abspath(args.baseline_build_dir), "daemon", "kpid")
        if not os.access(args.kpid_base, os.X_OK):
            parser.error(f"{args.kpid_base} is missing")
    for path in (args.kpid, args.loadgen, args.bare):
        if not os.access(path, os.X_OK):
            parser.error(f"{path} is missing: ninja -C {build} kpid kpi-loadgen "
                         f"kpid-bench-bare-consumer")

    # SIGTERM / SIGHUP unwind like Ctrl-C, so the finally below runs.
    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    # Also when started in the background, where SIGINT arrives ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    procs = Processes()
    tmp = tempfile.mkdtemp(prefix="kpid-e2e-")
    started = time.monotonic()
    failed = True
    try:
        # Run copies, so a rebuild in the shared build tree cannot swap a
        # binary between rounds (or under perf).
        for attr in ("kpid", "loadgen", "bare", "kpid_base"):
            if getattr(args, attr) is None:
                continue
            copy = os.path.join(tmp, attr + "-" + os.path.basename(getattr(args, attr)))
            shutil.copy2(getattr(args, attr), copy)
            setattr(args, attr, copy)
        broker_config, address = start_broker(args, procs, tmp)
        log(f"embedded broker at {address} ({args.partitions} partitions); logs in {tmp}")
        produce(args, broker_config, address, tmp)
        rounds = []
        if args.compare_scrape:
            for r in range(1, args.rounds + 1):
                # Alternate which goes first, so drift in the machine's load evens out.
                order = [("quiet", 0.0), ("scraped", args.compare_scrape)]
                if r % 2 == 0:
                    order.reverse()
                result = {"round": r}
                for label, interval in order:
                    result[label] = run_kpid_cpu_timed(args, procs, address, tmp, r, interval,
                                                       f"kpid-{label}")
                result["ratio"] = (result["scraped"]["events_per_sec"] /
                                   result["quiet"]["events_per_sec"])
                rounds.append(result)
                log(f"round {r}: quiet {result['quiet']['events_per_sec']:,.0f}/s  scraped "
                    f"{result['scraped']['events_per_sec']:,.0f}/s  ratio {result['ratio']:.2f}")
            report_scrape(args, rounds, time.monotonic() - started)
            failed = False
            return 0
        for r in range(1, args.rounds + 1):
            bare = run_bare(args, address)

            def run(binary, label):
                if not args.scraped:
                    return run_kpid_cpu_timed(args, procs, address, tmp, r, 0.0, label, binary)
                return run_kpid(args, procs, address, tmp, r, binary, label)

            # With a baseline, every other round runs it first, so drift in
            # the machine's load evens out between the two.
            base_first = args.kpid_base and r % 2 == 0
            if base_first:
                base = run(args.kpid_base, "kpid-baseline")
            kpid = run(args.kpid, "kpid")
            if args.kpid_base and not base_first:
                base = run(args.kpid_base, "kpid-baseline")
            result = {"round": r, "bare": bare, "kpid": kpid,
                      "ratio": kpid["events_per_sec"] / bare["events_per_sec"],
                      "ratio_to_99pct": kpid["events_per_sec_to_99pct"] / bare["events_per_sec"]}
            line = (f"round {r}: bare {bare['events_per_sec']:,.0f}/s  "
                    f"kpid {kpid['events_per_sec']:,.0f}/s  ratio {result['ratio']:.2f}")
            if args.kpid_base:
                result["baseline"] = base
                result["baseline_ratio"] = base["events_per_sec"] / bare["events_per_sec"]
                result["kpid_over_baseline"] = kpid["events_per_sec"] / base["events_per_sec"]
                result["kpid_over_baseline_cpu"] = (kpid["cpu_per_million"] /
                                                    base["cpu_per_million"])
                line += (f"  baseline {base['events_per_sec']:,.0f}/s  "
                         f"kpid/baseline {result['kpid_over_baseline']:.2f}")
            rounds.append(result)
            log(line)
        report(args, rounds, time.monotonic() - started)
        failed = False
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except BenchError as e:
        log(f"error: {e}")
        return 1
    finally:
        procs.stop_all()
        if args.keep_tmp or failed:
            log(f"configs and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(args, rounds, elapsed):
    def med(key, side=None):
        return statistics.median(r[side][key] if side else r[key] for r in rounds)

    timing = (f"kpid scraped every {args.scrape_interval * 1000:.0f} ms" if args.scraped
              else "kpid not scraped while it runs")
    print(f"e2e ingest: {args.events} {args.format} events, {args.partitions} partitions, "
          f"{os.cpu_count()} cpus, {elapsed:.0f} s; {timing}")
    print(f"{'round':>6} {'bare ev/s':>12} {'kpid ev/s':>12} {'kpid/bare':>10} "
          f"{'(to 99%)':>9} {'bare cpu-s/M':>13} {'kpid cpu-s/M':>13}")
    rows = [(str(r["round"]), r["bare"]["events_per_sec"], r["kpid"]["events_per_sec"],
             r["ratio"], r["ratio_to_99pct"], r["bare"]["cpu_per_million"],
             r["kpid"]["cpu_per_million"]) for r in rounds]
    rows.append(("median", med("events_per_sec", "bare"), med("events_per_sec", "kpid"),
                 med("ratio"), med("ratio_to_99pct"), med("cpu_per_million", "bare"),
                 med("cpu_per_million", "kpid")))
    for name, bare, kpid, ratio, ratio_99, bare_cpu, kpid_cpu in rows:
        print(f"{name:>6} {bare:>12,.0f} {kpid:>12,.0f} {ratio:>10.2f} {ratio_99:>9.2f} "
              f"{bare_cpu:>13.2f} {kpid_cpu:>13.2f}")
    print(f"during kpid's runs the mock broker used {med('broker_cpu_per_million', 'kpid'):.2f} "
          f"cpu-s/M; kpid + broker kept {med('cores_busy', 'kpid'):.2f} of "
          f"{os.cpu_count()} cores busy (median); kpid took "
          f"{med('minor_faults_per_event', 'kpid'):.4f} page faults per event; its librdkafka "
          f"fetch threads took {med('fetch_cpu_per_million', 'kpid'):.2f} of its cpu-s/M")
    if args.kpid_base:
        per_round = ", ".join(f"{r['kpid_over_baseline']:.2f}" for r in rounds)
        print(f"baseline kpid: {med('events_per_sec', 'baseline'):,.0f} ev/s median, "
              f"baseline/bare {med('baseline_ratio'):.2f}, cpu-s/M "
              f"{med('cpu_per_million', 'baseline'):.2f} (fetch threads "
              f"{med('fetch_cpu_per_million', 'baseline'):.2f}); kpid/baseline "
              f"{med('kpid_over_baseline'):.2f} (rounds: {per_round})")
        per_round = ", ".join(f"{r['kpid_over_baseline_cpu']:.2f}" for r in rounds)
        print(f"  CPU-s/M kpid/baseline {med('kpid_over_baseline_cpu'):.3f} (rounds: {per_round}); "
              f"baseline took {med('minor_faults_per_event', 'baseline'):.4f} page faults "
              f"per event")
    verdict = med("ratio")
    print(f"goal: kpid/bare >= 0.7 (issue) {'met' if verdict >= 0.7 else 'NOT met'}, "
          f">= 0.8 (product) {'met' if verdict >= 0.8 else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"events": args.events, "format": args.format,
                       "partitions": args.partitions, "scraped": args.scraped, "rounds": rounds,
                       "median": {"bare_events_per_sec": rows[-1][1],
                                  "kpid_events_per_sec": rows[-1][2], "ratio": rows[-1][3],
                                  "ratio_to_99pct": rows[-1][4],
                                  "bare_cpu_seconds_per_million": rows[-1][5],
                                  "kpid_cpu_seconds_per_million": rows[-1][6]}}, f, indent=2)


def report_scrape(args, rounds, elapsed):
    def med(key, side=None):
        return statistics.median(r[side][key] if side else r[key] for r in rounds)

    print(f"e2e scrape cost: {args.events} {args.format} events, {args.partitions} partitions, "
          f"/metrics every {args.compare_scrape} s vs never, {os.cpu_count()} cpus, "
          f"{elapsed:.0f} s")
    print(f"{'round':>6} {'quiet ev/s':>12} {'scraped ev/s':>13} {'scraped/quiet':>14} "
          f"{'scrapes':>8} {'quiet cpu-s/M':>14} {'scraped cpu-s/M':>16}")
    for r in rounds:
        print(f"{r['round']:>6} {r['quiet']['events_per_sec']:>12,.0f} "
              f"{r['scraped']['events_per_sec']:>13,.0f} {r['ratio']:>14.2f} "
              f"{r['scraped']['scrapes']:>8} {r['quiet']['cpu_per_million']:>14.2f} "
              f"{r['scraped']['cpu_per_million']:>16.2f}")
    print(f"{'median':>6} {med('events_per_sec', 'quiet'):>12,.0f} "
          f"{med('events_per_sec', 'scraped'):>13,.0f} {med('ratio'):>14.2f}")
    verdict = med("ratio")
    print(f"goal: scraped/quiet >= 0.9 {'met' if verdict >= 0.9 else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"events": args.events, "scrape_interval": args.compare_scrape,
                       "rounds": rounds, "median_ratio": verdict}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())

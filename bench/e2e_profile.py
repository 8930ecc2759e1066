#!/usr/bin/env python3
"""Where kpid's CPU goes end to end: the e2e_ingest.py setup (embedded broker,
400k protobuf events), then kpid runs that are each profiled.

  python3 bench/e2e_profile.py --out /tmp/prof --runs 2 perf BIN       # perf, system wide
  python3 bench/e2e_profile.py --out /tmp/cg callgrind a=BIN b=BIN2     # instructions/event

perf: `perf record -e cpu-clock -a -g` while kpid consumes (per-process sampling
got almost no samples in this VM; filter with `perf report --pid`; the call
graphs say who caused kernel time, e.g. `-G -S smp_call_function_many_cond`
for TLB-shootdown IPIs), and each
thread's CPU time and context switches from /proc while busy and in the 2 s
after (idle wake-ups). /metrics is scraped every 200 ms to find the end. Then
the samples of kpid's busy threads (those with at least a tenth of the
busiest one's CPU: the workers and librdkafka's fetch thread) are summed by
part: engine, decode, Kafka (librdkafka), the ingest loop, malloc, kernel.

threads: no profiler; each kpid thread's and the mock broker's time from
/proc/PID/task/TID/schedstat (sampled every 10 ms, kpid not scraped while it
runs): running, runnable but waiting for a core, and asleep (a worker waiting
for messages, the fetch thread for the broker), with voluntary and
involuntary context switches, plus the machine's user/system/idle split from
/proc/stat, over the run and per 100 ms. It answers whether the workers wait
for data or for a core (RESULTS.md §34).

  python3 bench/e2e_profile.py --out /tmp/thr --runs 2 threads BIN

callgrind: each binary runs under `valgrind --tool=callgrind`; counters are
zeroed at the first consumed event and dumped when all are consumed, so the
instructions per event (all threads) exclude start-up. Instruction counts do
not depend on what else runs on the machine, unlike CPU time; timers fire
more often per event under valgrind's slowdown, and the 200 ms scrapes are
counted too (look at the functions, e.g. with callgrind_annotate --inclusive=yes).
Printed per binary: instructions per event of each part (inclusive counts of
the functions in CALLGRIND_PARTS).
"""
import argparse
import glob
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_ingest as E  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")

# Parts of kpid's work, by the functions whose inclusive instruction count
# they are (the largest entry matching the pattern: inlined copies of a
# function are listed under other files with smaller counts).
CALLGRIND_PARTS = [
    ("worker loop (all of a worker's work)", r"KafkaIngest::WorkerLoop\("),
    ("  decode (EventDecoder::Decode)", r"EventDecoder::Decode\("),
    ("    protobuf parse", r"EventDecoder::ParseBinary\(|MessageLite::ParseFromArray\("),
    ("    validate", r"EventDecoder::Validate\("),
    ("  engine (handler per event)", r"PartitionEngine::Handle\w*\("),
    ("  engine ticks (timers, views)", r"PartitionEngine::Tick\("),
    ("  rd_kafka_message_headers", r"\brd_kafka_message_headers\b"),
    ("  rd_kafka_consume_batch_queue", r"\brd_kafka_consume_batch_queue\b"),
    ("  rd_kafka_message_destroy", r"\brd_kafka_message_destroy\b"),
    ("/metrics scrapes (the harness's)", r"HttpServer::RenderMetrics\b"),
    ("rule engine thread", r"RuleEngine::Run\("),
]


def consumed(url):
    try:
        body = urllib.request.urlopen(url, timeout=10).read().decode()
    except Exception:
        return 0
    return sum(float(l.split()[-1]) for l in body.splitlines()
               if l.startswith("kpid_events_consumed_total"))


def threads(pid):
    result = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = f.read()
        except FileNotFoundError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        result[int(tid)] = (stat[stat.index("(") + 1:stat.rindex(")")],
                            (int(fields[11]) + int(fields[12])) / CLK_TCK,
                            int(re.search(r"\bvoluntary_ctxt_switches:\s+(\d+)", status).group(1)),
                            int(fields[7]))  # minor page faults
    return result


def start_kpid(args, procs, address, out, label, argv_prefix, binary):
    config = os.path.join(out, f"{label}.yaml")
    port = E.free_port()
    with open(config, "w") as f:
        f.write(E.kafka_yaml(address, f"prof-{label}-{uuid.uuid4().hex[:8]}", [],
                             args.kafka_property))
        f.write(f"http: {{listen: \"127.0.0.1:{port}\"}}\n")
        f.write(f"grpc: {{listen: \"127.0.0.1:{E.free_port()}\"}}\n")
        f.write(E.processes_yaml(args.arrivals_per_hour, args.compress_time))
    proc = procs.start(label, argv_prefix + [binary, "--config", config],
                       os.path.join(out, f"{label}.log"))
    return proc, f"http://127.0.0.1:{port}/metrics"


def wait_first(url, timeout=600):
    deadline = time.monotonic() + timeout
    while consumed(url) == 0:
        if time.monotonic() > deadline:
            raise E.BenchError("kpid consumed nothing")
        time.sleep(0.05)


def perf_part(dso, symbol):
    """The part of kpid a perf sample of (dso, symbol) belongs to."""
    if "librdkafka" in dso:
        return "kafka (librdkafka)"
    if dso.startswith("[kernel"):
        return "kernel"
    if re.search(r"\b(_int_)?(malloc|free|calloc|realloc)\b|tcache|unlink_chunk|operator (new|delete)",
                 symbol):
        return "malloc/free"
    if re.search(r"kpid::(cases|aggregate|engine)::", symbol):
        return "engine"
    if ("libprotobuf" in dso or "google::protobuf" in symbol or "ProcessEvent" in symbol
            or "EventDecoder" in symbol or "_Hash_bytes" in symbol):
        return "decode (protobuf, validate)"
    if "KafkaIngest" in symbol:
        return "ingest loop"
    return f"other ({dso})"


def print_perf_parts(data, tids, title):
    report = subprocess.run(
        ["perf", "report", "-i", data, "--tid", ",".join(map(str, tids)), "--no-children",
         "--sort", "dso,sym", "-F", "overhead,dso,sym", "--percentage", "relative", "--stdio"],
        capture_output=True, text=True).stdout
    parts = {}
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[.\]\s+(.*)", line)
        if m:
            part = perf_part(m.group(2), m.group(3))
            parts[part] = parts.get(part, 0.0) + float(m.group(1))
    print(f"  {title}:")
    for part, share in sorted(parts.items(), key=lambda kv: -kv[1]):
        if share >= 0.5:
            print(f"    {share:5.1f}%  {part}")


def print_callgrind_parts(path, counted, total):
    listing = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                             capture_output=True, text=True).stdout
    counts = []
    for line in listing.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)", line)
        if m:
            counts.append((int(m.group(1).replace(",", "")), m.group(2)))
    rest = total
    for label, pattern in CALLGRIND_PARTS:
        found = [n for n, name in counts if re.search(pattern, name)]
        if found:
            print(f"    {label:40s} {max(found) / counted:8,.0f}")
            if not label.startswith(" "):
                rest -= max(found)
    print(f"    {'rest (librdkafka threads, gRPC, ...)':40s} {rest / counted:8,.0f}")


def run_perf(args, procs, address, binary):
    for r in range(args.runs):
        proc, url = start_kpid(args, procs, address, args.out, f"run{r}", [], binary)
        perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2000", "-a", "-g", "-o",
                                 os.path.join(args.out, f"perf{r}.data")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_first(url)
        t0, before = time.monotonic(), threads(proc.pid)
        while consumed(url) < args.events:
            time.sleep(0.2)
        t1, busy = time.monotonic(), threads(proc.pid)
        time.sleep(2.0)
        idle = threads(proc.pid)
        perf.send_signal(signal.SIGINT)
        perf.wait()
        procs.stop(proc)
        cpu = sum(busy[t][1] - before.get(t, ("", 0, 0, 0))[1] for t in busy)
        print(f"run {r}: pid {proc.pid}, {args.events / (t1 - t0):,.0f} ev/s, "
              f"{cpu / args.events * 1e6:.2f} cpu-s/M; perf{r}.data")
        for t in sorted(busy):
            b0, b1, b2 = before.get(t, ("", 0, 0, 0)), busy[t], idle.get(t, busy[t])
            if b1[1] - b0[1] >= 0.01 or b2[2] - b1[2] >= 10:
                print(f"  tid {t} {b1[0]:16s} busy {b1[1] - b0[1]:5.2f} s, {b1[2] - b0[2]:5d} "
                      f"wake-ups, {(b1[3] - b0[3]) / args.events:.4f} page faults/event | "
                      f"next 2 s idle: {b2[1] - b1[1]:4.2f} s, {b2[2] - b1[2]:4d} wake-ups")
        used = {t: busy[t][1] - before.get(t, ("", 0, 0, 0))[1] for t in busy}
        top = max(used.values())
        workers = [t for t in used if used[t] >= top / 10 and not busy[t][0].startswith("rdk:")]
        fetchers = [t for t in used if used[t] >= top / 10 and busy[t][0].startswith("rdk:")]
        data = os.path.join(args.out, f"perf{r}.data")
        print_perf_parts(data, workers, f"samples of the workers (tids {workers}) by part")
        if fetchers:
            print_perf_parts(data, fetchers, f"samples of librdkafka's busy threads {fetchers}")


def schedstats(pid):
    """{tid: (name, ns running, ns runnable and waiting, voluntary, involuntary
    context switches)} of a process's threads."""
    result = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return result
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                running, waiting = map(int, f.read().split()[:2])
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = f.read()
        except (OSError, ValueError):
            continue  # the thread ended
        name = re.search(r"^Name:\s+(.*)$", status, re.M).group(1)
        voluntary = int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))
        involuntary = int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", status,
                                    re.M).group(1))
        result[int(tid)] = (name, running, waiting, voluntary, involuntary)
    return result


def machine_jiffies():
    with open("/proc/stat") as f:
        return list(map(int, f.readline().split()[1:9]))


def print_thread_states(label, first, last, min_share=0.01):
    """Each thread's share of the wall time between two samples: running,
    runnable but waiting for a core, asleep."""
    wall = (last[0] - first[0]) * 1e9
    for who, index in (("kpid", 1), ("broker", 2)):
        total = 0
        for tid in sorted(last[index]):
            if tid not in first[index]:
                continue
            name, running, waiting, vol, invol = last[index][tid]
            _, running0, waiting0, vol0, invol0 = first[index][tid]
            running, waiting = running - running0, waiting - waiting0
            total += running
            if running / wall < min_share:
                continue
            print(f"  {label} {who:6s} tid {tid:7d} {name:16s} running {running / wall:4.2f}  "
                  f"waiting for a core {waiting / wall:4.2f}  asleep "
                  f"{max(0.0, 1 - (running + waiting) / wall):4.2f}  switches: "
                  f"{vol - vol0:5d} voluntary, {invol - invol0:5d} involuntary")
        print(f"  {label} {who} threads running: {total / wall:.2f} cores")


def run_threads(args, procs, address, binary):
    interval, window, idle_needed = 0.01, 0.1, 20
    for r in range(args.runs):
        proc, url = start_kpid(args, procs, address, args.out, f"threads{r}", [], binary)
        wait_first(url)
        samples = [(time.monotonic(), schedstats(proc.pid), schedstats(args.broker_pid),
                    machine_jiffies())]
        idle = 0
        while True:
            time.sleep(interval)
            sample = (time.monotonic(), schedstats(proc.pid), schedstats(args.broker_pid),
                      machine_jiffies())
            ran = (sum(v[1] for v in sample[1].values()) -
                   sum(v[1] for v in samples[-1][1].values()))
            samples.append(sample)
            idle = idle + 1 if ran < 0.25 * (sample[0] - samples[-2][0]) * 1e9 else 0
            if idle >= idle_needed:
                if consumed(url) >= args.events:
                    break
                idle = 0
            if sample[0] - samples[0][0] > 120:
                raise E.BenchError("kpid did not finish in 120 s")
        procs.stop(proc)
        samples = samples[:len(samples) - idle_needed]  # up to the last busy sample
        first, last = samples[0], samples[-1]
        wall = last[0] - first[0]
        jiffies = [b - a for a, b in zip(first[3], last[3])]
        cores = (os.cpu_count() or 1) / max(1, sum(jiffies))
        print(f"run {r}: pid {proc.pid}, {wall:.3f} s from the first consumed event to the "
              f"last busy 10 ms (~{args.events / wall:,.0f} ev/s); machine: user "
              f"{jiffies[0] * cores:.2f}, system {jiffies[2] * cores:.2f}, idle "
              f"{jiffies[3] * cores:.2f}, softirq {jiffies[6] * cores:.2f} cores")
        print_thread_states("whole run", first, last)
        busy = {t for t in last[1] if t in first[1] and
                (last[1][t][1] - first[1][t][1]) >= 0.05 * wall * 1e9}
        step = max(1, int(window / interval))
        print(f"  per {window * 1000:.0f} ms, threads with >= 5% of a core: "
              f"running/waiting for a core/asleep (voluntary switches)")
        for i in range(0, len(samples) - step, step):
            a, b = samples[i], samples[i + step]
            w = (b[0] - a[0]) * 1e9
            cells = []
            for index, tids in ((1, sorted(busy)), (2, sorted(b[2]))):
                for tid in tids:
                    if tid not in a[index] or tid not in b[index]:
                        continue
                    name, running, waiting, vol = b[index][tid][:4]
                    running -= a[index][tid][1]
                    waiting -= a[index][tid][2]
                    if index == 2 and running < 0.01 * w:
                        continue
                    cells.append(f"{name[:10]} {running / w:.2f}/{waiting / w:.2f}/"
                                 f"{max(0.0, 1 - (running + waiting) / w):.2f} "
                                 f"({vol - a[index][tid][3]})")
            print(f"    {a[0] - first[0]:5.2f} s  " + "  ".join(cells))


def run_callgrind(args, procs, address, binaries):
    for spec in binaries:
        label, binary = spec.split("=", 1)
        dump = os.path.join(args.out, f"callgrind.{label}.out")
        proc, url = start_kpid(args, procs, address, args.out, label,
                               ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}"],
                               binary)
        wait_first(url)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True)
        counted = args.events - consumed(url)
        while consumed(url) < args.events:
            time.sleep(0.5)
        subprocess.run(["callgrind_control", "-d", "end", str(proc.pid)], capture_output=True)
        procs.stop(proc, timeout=60)
        total = 0
        for path in glob.glob(dump + "*"):
            with open(path, errors="ignore") as f:
                text = f.read()
            if "Trigger: dump end" in text:
                total = int(re.search(r"^summary: (\d+)", text, re.M).group(1))
                print(f"{label}: {total / counted:,.0f} instructions per event, all threads "
                      f"({counted:.0f} events; {path})")
                print_callgrind_parts(path, counted, total)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", default=os.path.join(E.REPO, "build"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--events", type=int, default=400000)
    parser.add_argument("--partitions", type=int, default=16,
                        help="of the topic (16); each partition's engine walks the whole "
                             "stream's event time, so fewer partitions prepare fewer buckets "
                             "per event")
    parser.add_argument("--arrivals-per-hour", type=int, default=3600,
                        help="as for e2e_ingest.py (3600)")
    parser.add_argument("--compress-time", type=int, default=1, metavar="F",
                        help="as for e2e_ingest.py: the same events in 1/F of the event time")
    parser.add_argument("--kafka-property", action="append", default=[], metavar="KEY=VALUE",
                        type=lambda kv: tuple(kv.split("=", 1)),
                        help="kafka.properties entry for kpid (repeatable)")
    parser.add_argument("mode", choices=["perf", "callgrind", "threads"])
    parser.add_argument("binaries", nargs="+",
                        help="perf, threads: one kpid; callgrind: label=kpid ...")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    setup = argparse.Namespace(
        kpid=args.binaries[0].split("=", 1)[-1], partitions=args.partitions, events=args.events,
        format="protobuf", arrivals_per_hour=args.arrivals_per_hour,
        compress_time=args.compress_time, loadgen=os.path.join(args.build_dir, "tools", "loadgen", "kpi-loadgen"),
        bare=os.path.join(args.build_dir, "bench", "kpid-bench-bare-consumer"))
    procs = E.Processes()
    try:
        broker_config, address = E.start_broker(setup, procs, args.out)
        E.produce(setup, broker_config, address, args.out)
        if args.mode == "perf":
            run_perf(args, procs, address, setup.kpid)
        elif args.mode == "threads":
            args.broker_pid = setup.broker_pid
            run_threads(args, procs, address, setup.kpid)
        else:
            run_callgrind(args, procs, address, args.binaries)
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()

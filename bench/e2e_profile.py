#!/usr/bin/env python3
"""Where kpid's CPU goes end to end: the e2e_ingest.py setup (embedded broker,
400k protobuf events), then kpid runs that are each profiled.

  python3 bench/e2e_profile.py --out /tmp/prof --runs 2 perf BIN       # perf, system wide
  python3 bench/e2e_profile.py --out /tmp/cg callgrind a=BIN b=BIN2     # instructions/event

perf: `perf record -e cpu-clock -a` while kpid consumes (per-process sampling
got almost no samples in this VM; filter with `perf report --pid`), and each
thread's CPU time and context switches from /proc while busy and in the 2 s
after (idle wake-ups). /metrics is scraped every 200 ms to find the end.

callgrind: each binary runs under `valgrind --tool=callgrind`; counters are
zeroed at the first consumed event and dumped when all are consumed, so the
instructions per event (all threads) exclude start-up. Instruction counts do
not depend on what else runs on the machine, unlike CPU time; timers fire
more often per event under valgrind's slowdown, and the 200 ms scrapes are
counted too (look at the functions, e.g. with callgrind_annotate --inclusive=yes).
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
                            int(re.search(r"\bvoluntary_ctxt_switches:\s+(\d+)", status).group(1)))
    return result


def start_kpid(procs, address, out, label, argv_prefix, binary):
    config = os.path.join(out, f"{label}.yaml")
    port = E.free_port()
    with open(config, "w") as f:
        f.write(E.kafka_yaml(address, f"prof-{label}-{uuid.uuid4().hex[:8]}", [], []))
        f.write(f"http: {{listen: \"127.0.0.1:{port}\"}}\n")
        f.write(f"grpc: {{listen: \"127.0.0.1:{E.free_port()}\"}}\n")
        f.write(E.PROCESSES_YAML)
    proc = procs.start(label, argv_prefix + [binary, "--config", config],
                       os.path.join(out, f"{label}.log"))
    return proc, f"http://127.0.0.1:{port}/metrics"


def wait_first(url, timeout=600):
    deadline = time.monotonic() + timeout
    while consumed(url) == 0:
        if time.monotonic() > deadline:
            raise E.BenchError("kpid consumed nothing")
        time.sleep(0.05)


def run_perf(args, procs, address, binary):
    for r in range(args.runs):
        proc, url = start_kpid(procs, address, args.out, f"run{r}", [], binary)
        perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2000", "-a", "-o",
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
        cpu = sum(busy[t][1] - before.get(t, ("", 0, 0))[1] for t in busy)
        print(f"run {r}: pid {proc.pid}, {args.events / (t1 - t0):,.0f} ev/s, "
              f"{cpu / args.events * 1e6:.2f} cpu-s/M; perf{r}.data")
        for t in sorted(busy):
            b0, b1, b2 = before.get(t, ("", 0, 0)), busy[t], idle.get(t, busy[t])
            if b1[1] - b0[1] >= 0.01 or b2[2] - b1[2] >= 10:
                print(f"  tid {t} {b1[0]:16s} busy {b1[1] - b0[1]:5.2f} s, {b1[2] - b0[2]:5d} "
                      f"wake-ups | next 2 s idle: {b2[1] - b1[1]:4.2f} s, {b2[2] - b1[2]:4d} wake-ups")


def run_callgrind(args, procs, address, binaries):
    for spec in binaries:
        label, binary = spec.split("=", 1)
        dump = os.path.join(args.out, f"callgrind.{label}.out")
        proc, url = start_kpid(procs, address, args.out, label,
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


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", default=os.path.join(E.REPO, "build"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--events", type=int, default=400000)
    parser.add_argument("mode", choices=["perf", "callgrind"])
    parser.add_argument("binaries", nargs="+", help="perf: one kpid; callgrind: label=kpid ...")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    setup = argparse.Namespace(
        kpid=args.binaries[0].split("=", 1)[-1], partitions=16, events=args.events,
        format="protobuf", loadgen=os.path.join(args.build_dir, "tools", "loadgen", "kpi-loadgen"),
        bare=os.path.join(args.build_dir, "bench", "kpid-bench-bare-consumer"))
    procs = E.Processes()
    try:
        broker_config, address = E.start_broker(setup, procs, args.out)
        E.produce(setup, broker_config, address, args.out)
        if args.mode == "perf":
            run_perf(args, procs, address, setup.kpid)
        else:
            run_callgrind(args, procs, address, args.binaries)
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Scale-out with real processes: kpid replicas in one consumer group, one of
them SIGKILLed mid-stream and another started later, together end with
exactly the KPIs of a single replica over the same events (issue 8).

The Kafka broker is a process of its own (`kpid dev-broker`, 8 partitions).
kpi-loadgen writes N seeded events to it once (the crash test's scenario,
tests/integration/kpid_harness.py), then one end event per partition at the
same event time T_end, just after the stream's last event (see END_EVENT).
Then:

  reference: one kpid (group A) reads everything, uninterrupted;
  scale run: replicas r1, r2, r3 (group B, each with its own state_dir and
             loopback port-0 listeners) share the partitions; once they have
             read --kill_at of the messages r2 gets SIGKILL; when r1 and r3
             own every partition (r2's session timed out) r4, a new replica
             with an empty state_dir, joins; r1, r3 and r4 read to the end.

A partition moved to a replica without state of it is read from its first
message there; one given back is restored from the replica's own checkpoint
of it (written on revoke) at the checkpoint's offset. So at the end each
partition is counted by exactly one live replica, and the sum over r1, r3 and
r4 of every counter and window count of /metrics must equal the reference,
exactly (combine() says how each series combines, and why some cannot).

Variants:
  --state_topic: `kafka.state_topic: kpid-state`: state follows partitions
             through a compacted topic;
  global snapshot (always): replicas get `replica_id` and
             `peers: {addresses}` (the other live replicas' gRPC addresses),
             and `kpictl snapshot --format json` (GLOBAL scope: kpictl's
             default) against each of r1, r3 and r4 must equal the
             reference's snapshot in every count, not be partial, and list
             the three replicas with disjoint partitions covering all.

    scale_test.py --kpid BIN --loadgen BIN --kpictl BIN [--state_topic] [--keep]
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from kpid_harness import (TOPIC, Harness, as_number, assigned_partitions, check_reference,
                          compared, diff, excluded_reason, free_port, lags, read_count,
                          summarize)

DEADLINE_S = 140  # the whole run; ctest's timeout is above it
STALL_S = 3  # done when nothing moved for this long (see converged)
STATE_TOPIC = "kpid-state"

# Per-partition event clocks (docs/engine.md, Clocks): once caught up and
# idle, a partition's "now" is the latest event time of ITS replica's
# partitions, and windows end at the replica's latest event time. Replicas
# holding different partitions would end at different times (and fire
# different deadlines) than one replica holding all. One event per partition
# at the same T_end, the last message of every partition, puts every
# partition of every replica at T_end at the end, as in the reference:
# whatever the replica, each partition's clock is its own event time while it
# reads its log and T_end once it has read its end event. (A new case in
# signup, counted alike in both runs.)
END_EVENT = ('{{"eventId":"end-{p}","process":"signup","caseId":"end-{p}",'
             '"kind":"STAGE_ENTERED","stage":"form","occurredAt":"{t}"}}')

# How a series of the replicas combines into the group's value; everything
# not listed adds up (counters, histogram buckets and counts, window counts,
# backlogs, open cases: each partition is counted by one replica).
# Prefixes of family names, or a label, with why.
NOT_SUMMABLE = {
    'quantile="': "a quantile of merged data is not a sum of quantiles: its _count is compared",
    "kpid_window_stage_conversion_ratio": "a ratio: its numerator and denominator are compared",
    "kpid_window_stage_fallout_ratio": "a ratio: its numerator and denominator are compared",
    "kpid_window_stage_sla_attainment_ratio": "a ratio: its numerator and denominator are compared",
    "kpid_window_stage_rework_ratio": "a ratio: its numerator and denominator are compared",
    "kpid_window_process_win_ratio": "a ratio: completed and fallout are compared",
    "kpid_window_process_avg_deal": "a ratio: revenue and completed are compared",
    "kpid_window_process_cost_to_serve": "a ratio: cost and completed are compared",
    "kpid_window_process_feedback_score": "a mean of the replicas' scores, whose count is not on "
                                          "/metrics",
    "kpid_kpi_tree_": "products and sensitivities of window ratios",
}
# The latest event time of any partition, and the age of the oldest open case
# (from the same T_end everywhere): the group's value is the largest.
LARGEST = ("kpid_watermark_timestamp_seconds", "kpid_stage_oldest_case_age_seconds")
# Sums of doubles (amounts, seconds): added per replica and then across
# replicas, in another grouping than the reference's one process, they may
# round differently in the last bits.
FLOAT_SUMS = ("kpid_process_revenue_total", "kpid_process_cost_total",
              "kpid_window_process_revenue", "kpid_window_process_cost")
FLOAT_SUFFIX = "_sum"  # histograms' and summaries' sums
RELATIVE_TOLERANCE = 1e-9

# Fields of `kpictl snapshot --format json` that are not counts (see
# NOT_SUMMABLE): a global snapshot computes them from merged counts, which
# the counts beside them check.
SNAPSHOT_NOT_COMPARED = {"conversion", "falloutRatio", "slaAttainment", "reworkRatio", "winRatio",
                         "avgDeal", "costToServe", "feedbackScore", "p50", "p90", "p99", "kpiTree",
                         # Checked on their own (check_global).
                         "partial", "replicas"}


def not_summable(series):
    for key, why in NOT_SUMMABLE.items():
        if series.startswith(key) or ("{" in series and key in series.split("{", 1)[1]):
            return why
    return None


def is_float_sum(series):
    name = series.split("{", 1)[0]
    return name.startswith(FLOAT_SUMS) or name.endswith(FLOAT_SUFFIX)


def close(series, a, b):
    x, y = as_number(a), as_number(b)
    return is_float_sum(series) and abs(x - y) <= RELATIVE_TOLERANCE * max(abs(x), abs(y), 1.0)


def combine(replicas):
    """The group's series from each live replica's compared series."""
    out = {}
    for samples in replicas:
        for s, v in samples.items():
            if not_summable(s):
                continue
            if s.startswith(LARGEST):
                out[s] = max(out.get(s, float("-inf")), float(v))
            else:
                out[s] = out.get(s, 0.0) + float(v)
    # As /metrics writes them (integers without a fraction), for diff().
    return {s: repr(v) if is_float_sum(s) or v != int(v) else str(int(v)) for s, v in out.items()}


def comparable(reference):
    return {s: repr(float(v)) if is_float_sum(s) or float(v) != int(float(v)) else
            str(int(float(v))) for s, v in reference.items() if not not_summable(s)}


def owners(scrapes):
    """Who owns which partitions, for messages."""
    return ", ".join(f"{k} {sorted(assigned_partitions(s))}" for k, s in scrapes.items())


def check_counts(want, got, what):
    """Differences of two snapshot JSON trees outside SNAPSHOT_NOT_COMPARED;
    revenue and cost (doubles) within RELATIVE_TOLERANCE."""
    errors = []
    if isinstance(want, dict) and isinstance(got, dict):
        for k in sorted(set(want) | set(got)):
            if k in SNAPSHOT_NOT_COMPARED:
                continue
            if k not in want or k not in got:
                errors.append(f"{what}.{k}: only in {'global' if k in got else 'reference'}")
            else:
                errors += check_counts(want[k], got[k], f"{what}.{k}")
    elif isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            errors.append(f"{what}: {len(got)} entries, reference {len(want)}")
        for i, (a, b) in enumerate(zip(want, got)):
            errors += check_counts(a, b, f"{what}[{i}]")
    elif isinstance(want, float) or isinstance(got, float):
        if abs(want - got) > RELATIVE_TOLERANCE * max(abs(want), abs(got), 1.0):
            errors.append(f"{what}: global {got}, reference {want}")
    elif want != got:
        errors.append(f"{what}: global {got!r}, reference {want!r}")
    return errors


class ScaleHarness(Harness):
    def __init__(self, args, tmp, deadline):
        super().__init__(args, tmp, deadline)
        self.kafka_extra = f"\n  state_topic: {STATE_TOPIC}" if args.state_topic else ""
        self.grpc_ports = {}  # replica name -> port, when they have peers

    def produce_with_end_events(self):
        self.start_broker(self.kafka_extra)
        # kpi-loadgen needs only the processes: a config without the variant's keys.
        config = self.write_config("loadgen", "unused", "10s", "127.0.0.1:0")
        self.produce(config)
        # The stream's last event time: the same seeded stream, as JSON.
        stream = os.path.join(self.tmp, "stream.json")
        subprocess.run([self.args.loadgen, "--config", config, "--events", str(self.args.events),
                        "--seed", str(self.args.event_seed), "--start", "2026-01-01T00:00:00Z",
                        "--format", "json", "--output", stream], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=max(1, self.left()))
        with open(stream, "rb") as f:
            f.seek(max(0, os.path.getsize(stream) - 4096))
            last = json.loads(f.read().splitlines()[-1])["occurredAt"]  # in time order
        last_time = datetime.datetime.fromisoformat(last.replace("Z", "+00:00"))
        end = (last_time + datetime.timedelta(minutes=1)).replace(microsecond=0)
        end_text = end.strftime("%Y-%m-%dT%H:%M:%SZ")
        for p in range(self.args.partitions):
            subprocess.run([self.args.kcat, "-P", "-b", self.brokers, "-t", TOPIC, "-p", str(p),
                            "-k", f"end-{p}"], input=END_EVENT.format(p=p, t=end_text).encode(),
                           check=True, timeout=max(1, self.left()))
        print(f"last event at {last}; an end event at {end_text} on each partition")

    def replica_extra(self, name, peers):
        if peers is None:
            return ""
        addresses = ", ".join(f'"127.0.0.1:{self.grpc_ports[p]}"' for p in peers)
        return f"\nreplica_id: {name}\npeers: {{addresses: [{addresses}]}}"

    def start_kpid(self, name, group, peers=None):
        """kpid with port-0 HTTP (and gRPC unless it has peers, whose
        addresses must be known before they start); returns (Popen, http
        port, grpc port) once it listens."""
        grpc = f"127.0.0.1:{self.grpc_ports[name]}" if name in self.grpc_ports else "127.0.0.1:0"
        config = self.write_config(name, group, "2s", "127.0.0.1:0", grpc_listen=grpc,
                                   kafka_extra=self.kafka_extra,
                                   extra=self.replica_extra(name, peers))
        p = self.start(name, [self.args.kpid, "--config", config])

        def ports():
            if p.poll() is not None:
                raise AssertionError(f"{name}: kpid exited {p.returncode} at start")
            text = open(self.log_path(name)).read()
            http = grpc = None
            for line in text.splitlines():
                if 'msg="http listening"' in line:
                    http = int(line.split("address=")[1].split()[0].rsplit(":", 1)[1])
                if 'msg="grpc server listening"' in line:
                    grpc = int(line.split(" port=")[1].split()[0])
            return (http, grpc) if http and grpc else None

        http, grpc_port = self.wait_for(f"{name}'s listeners", ports, timeout=20)
        return p, http, grpc_port

    def scrape_all(self, replicas, what):
        """{name: /metrics} of every replica, or None when one does not answer."""
        out = {}
        for name, (p, port, _) in replicas.items():
            got = self.scrape(p, port, f"{what}: {name}")
            if got is None:
                return None
            out[name] = got
        return out

    def wait_scraped(self, replicas, what, condition, poll=0.05):
        """Scrapes every replica until condition(scrapes) is true; returns it."""
        while True:
            got = self.scrape_all(replicas, what)
            if got is not None:
                result = condition(got)
                if result:
                    return result
            time.sleep(poll)

    def converged(self, replicas, run):
        """Waits until the replicas own every partition once, have read to
        the end and their engine series stopped moving; returns the last
        scrapes.

        Done when two scrapes a second apart have equal engine series and
        the replicas' counts of messages read add up to every message (each
        partition is counted by its owner only) or every lag is 0. Or,
        whatever the counts say, when nothing moved for STALL_S (see
        crash_test.py's caught_up: the lag of a partition whose position is
        not known yet is its whole log)."""
        n = self.args.events + self.args.partitions  # with the end events
        began = time.monotonic()
        previous, still_since, scrapes = None, None, {}
        while True:
            got = self.scrape_all(replicas, f"{run}: catching up ("
                                  f"{sum(read_count(s) for s in scrapes.values())} of {n} "
                                  f"messages read; partitions {owners(scrapes)})")
            if got is None:
                time.sleep(0.2)
                continue
            scrapes = got
            owned = [assigned_partitions(s) for s in scrapes.values()]
            once = sorted(p for o in owned for p in o) == list(range(self.args.partitions))
            state = {k: compared(s) for k, s in scrapes.items()}
            if once and previous is not None and state == previous:
                still_since = still_since or time.monotonic() - 1.0
                read = sum(read_count(s) for s in scrapes.values())
                at_end = read == n or not any(v for s in scrapes.values() for v in lags(s).values())
                if at_end or time.monotonic() - still_since >= STALL_S:
                    how = "at the end" if at_end else f"nothing moved for {STALL_S} s"
                    print(f"{run}: converged ({how}) after {time.monotonic() - began:.1f} s; "
                          f"{read} of {n} messages read; partitions {owners(scrapes)}")
                    return scrapes
            else:
                still_since = None
            previous = state if once else None
            time.sleep(1.0 if once else 0.2)

    def snapshot(self, name, grpc_port):
        r = subprocess.run([self.args.kpictl, "--addr", f"127.0.0.1:{grpc_port}", "snapshot",
                            "--format", "json"], capture_output=True, text=True,
                           timeout=max(1, min(30, self.left())))
        if r.returncode != 0:
            raise AssertionError(f"kpictl snapshot against {name}: exit {r.returncode}: "
                                 f"{r.stderr.strip()}")
        return json.loads(r.stdout)

    def reference_run(self):
        # No peers: its snapshot (GLOBAL or not) is its own, every partition.
        kpid = self.start_kpid("reference", "scale-test-a")
        scrapes = self.converged({"reference": kpid}, "reference")
        samples = scrapes["reference"]
        read, n = read_count(samples), self.args.events + self.args.partitions
        if read != n:
            raise AssertionError(f"reference: read {read} messages, produced {n}")
        snapshot = self.snapshot("reference", kpid[2])
        self.stop(kpid[0], "reference kpid", signal.SIGTERM)
        return samples, snapshot

    def scale_run(self):
        """Returns {replica: (Popen, http port, grpc port)} of the live
        replicas and their last scrapes."""
        group, names, live = "scale-test-b", ["r1", "r2", "r3", "r4"], ["r1", "r3", "r4"]
        # Each live replica's peers are the other live ones: a static list
        # naming a replica that is gone would make every global answer
        # partial (by design), as a pod that is gone leaves the headless
        # service's DNS. r2 knows r1 and r3.
        for name in names:
            self.grpc_ports[name] = free_port()
        peers = {name: [p for p in (live if name in live else ["r1", "r3"]) if p != name]
                 for name in names}
        replicas = {name: self.start_kpid(name, group, peers[name]) for name in names[:3]}
        kill_at = int(self.args.kill_at * self.args.events)
        began = time.monotonic()

        def all_assigned(scrapes):
            owned = [assigned_partitions(s) for s in scrapes.values()]
            return all(owned) and sorted(p for o in owned for p in o) == \
                list(range(self.args.partitions)) and scrapes

        scrapes = self.wait_scraped(replicas, "scale run: r1, r2, r3 sharing the partitions",
                                    all_assigned)
        print(f"scale run: partitions {owners(scrapes)} after {time.monotonic() - began:.1f} s")
        scrapes = self.wait_scraped(
            replicas, f"scale run: {kill_at} messages read",
            lambda s: sum(read_count(x) for x in s.values()) >= kill_at and s, poll=0.02)
        r2_read, r2_left = read_count(scrapes["r2"]), int(sum(lags(scrapes["r2"]).values()))
        self.stop(replicas["r2"][0], "r2", signal.SIGKILL)
        del replicas["r2"]
        print(f"scale run: r2 SIGKILLed with {sum(read_count(s) for s in scrapes.values())} "
              f"messages read (r2: {r2_read} read, {r2_left} left; partitions "
              f"{owners(scrapes)}) after {time.monotonic() - began:.1f} s")
        if r2_read == 0:
            raise AssertionError("r2 had read nothing when killed: not mid-stream")
        if r2_left == 0:
            # The group took so long to settle that r2 had read all it held:
            # its partitions still move without their state, which is what
            # is checked; only less of them is read twice.
            print("scale run: note: r2 had nothing left to read when killed")
        scrapes = self.wait_scraped(replicas, "scale run: r2's partitions moved to r1 and r3",
                                    all_assigned, poll=0.2)
        print(f"scale run: partitions {owners(scrapes)} after {time.monotonic() - began:.1f} s, "
              f"{sum(read_count(s) for s in scrapes.values())} messages read; r4 joins")
        replicas["r4"] = self.start_kpid("r4", group, peers["r4"])
        scrapes = self.converged(replicas, "scale run")
        if not assigned_partitions(scrapes["r4"]):
            raise AssertionError("r4 owns no partition at the end")
        return replicas, scrapes


def check_global(h, replicas, reference_snapshot):
    """`kpictl snapshot` against each live replica (GLOBAL) against the
    reference's (one replica with every partition)."""
    errors = []
    for name, (_, _, grpc_port) in replicas.items():
        got = h.snapshot(name, grpc_port)
        if got.get("partial", False):
            errors.append(f"global snapshot from {name}: partial: {got.get('replicas')}")
        statuses = got.get("replicas", [])
        owners = sorted(p for r in statuses for p in r.get("partitions", []))
        failed = [r for r in statuses if r.get("error")]
        if len(statuses) != len(replicas) or failed or owners != list(range(h.args.partitions)):
            errors.append(f"global snapshot from {name}: replicas {statuses}, want "
                          f"{len(replicas)} without error owning partitions "
                          f"0..{h.args.partitions - 1} once")
        differences = check_counts(reference_snapshot, got, "snapshot")
        if differences:
            errors.append(f"global snapshot from {name}: {len(differences)} counts differ from "
                          f"the reference:\n  " + "\n  ".join(differences[:20]))
        else:
            print(f"global snapshot from {name}: every count equals the reference's")
    return errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kpid", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--kpictl", required=True)
    ap.add_argument("--kcat", default=shutil.which("kcat") or "kcat")
    ap.add_argument("--state_topic", action="store_true",
                    help=f"kafka.state_topic: {STATE_TOPIC}")
    ap.add_argument("--events", type=int, default=150000)
    ap.add_argument("--event_seed", type=int, default=11, help="kpi-loadgen's --seed")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="kafka.workers of each replica")
    ap.add_argument("--kill_at", type=float, default=0.3,
                    help="r2 is killed when the replicas have read this share of the messages")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="kpid-scale-")
    began = time.monotonic()
    h = ScaleHarness(args, tmp, began + DEADLINE_S)
    errors = []
    try:
        h.produce_with_end_events()
        reference, reference_snapshot = h.reference_run()
        errors += check_reference(reference)
        replicas, scrapes = h.scale_run()
        want = comparable(compared(reference))
        got = combine(compared(s) for s in scrapes.values())
        differences = diff(want, got, "reference", "sum of replicas", close=close)
        left_out = {}
        for series in reference:
            why = excluded_reason(series) or not_summable(series)
            if why:
                left_out[why] = left_out.get(why, 0) + 1
        print(f"{len(want)} series compared; left out: " +
              "; ".join(f"{n} ({why})" for why, n in sorted(left_out.items())))
        if differences:
            with open(os.path.join(tmp, "diff.txt"), "w") as f:
                f.write("".join(line + "\n" for _, line in differences))
            errors.append(f"{len(differences)} of {len(set(want) | set(got))} series differ; all "
                          f"of them in {tmp}/diff.txt:\n" +
                          "\n".join(summarize(differences, want, got)))
        errors += check_global(h, replicas, reference_snapshot)
    except (AssertionError, subprocess.SubprocessError) as e:
        errors.append(str(e))
    finally:
        h.cleanup()
    print(f"{time.monotonic() - began:.0f} s in all")
    for e in errors:
        print(e)
    if errors or args.keep:
        print(f"logs, configs and state in {tmp}")
    if errors:
        print("FAILED")
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

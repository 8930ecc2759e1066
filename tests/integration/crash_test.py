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
import shutil
import signal
import sys
import tempfile
import time

from kpid_harness import (Harness, check_reference, compared, diff, free_port, lags,
                          read_count, summarize)

DEADLINE_S = 100  # the whole run; ctest's timeout is above it
STALL_S = 3  # caught up when nothing moved for this long (see caught_up)


class CrashHarness(Harness):
    def start_kpid(self, run, group, checkpoint_interval, restart):
        port = free_port()
        config = self.write_config(run, group, checkpoint_interval, f"127.0.0.1:{port}")
        p = self.start(f"kpid-{run}-{restart}", [self.args.kpid, "--config", config])
        return p, port

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
    h = CrashHarness(args, tmp, time.monotonic() + DEADLINE_S)
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

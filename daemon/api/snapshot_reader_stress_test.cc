// Snapshots read while a worker writes (run under ThreadSanitizer by
// scripts/test): SnapshotReader takes no lock and must see only consistent
// values. A writer thread applies the facts of whole cases to an
// AggregateShard and interns new dimension values in its DimensionTable;
// reader threads read snapshots, unfiltered and filtered by a value that
// appears while they read, and check invariants that hold at every moment.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/api/snapshot_reader.h"
#include "daemon/ingest/event_view_testing.h"
#include "google/protobuf/map.h"
#include "gtest/gtest.h"

namespace kpid::api {
namespace {

constexpr char kYaml[] = R"(
windows: [1h, 1d]
retention: 2d
dimensions: {names: [region], max_series_per_process: 100}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
      - {id: demo, sla: 1d}
)";

TEST(SnapshotReaderStressTest, ReadsWhileAWorkerWrites) {
  const model::Config config = *model::ParseConfig(kYaml, "t.yaml");
  aggregate::AggregateShard shard(config);
  cases::DimensionTable table(config);
  const absl::Time start = absl::FromUnixSeconds(1008028800);
  cases::ManualClock clock(start + absl::Hours(2));  // never written concurrently
  SnapshotReader::Options options;
  options.config = &config;
  options.shards = {&shard};
  options.dimensions = {&table};
  options.clock = &clock;
  const SnapshotReader reader(std::move(options));

  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; i < 100000; ++i) {
      const cases::DimsId dims =
          table.Resolve(0, ingest::MakeAttributes({{"region", absl::StrCat("r", i % 50)}}));
      const absl::Time at = start + absl::Seconds(i % 3600);
      shard.CaseStarted(0, dims, at);
      shard.StageEntered(0, 0, dims, at, false);
      shard.StageExited(0, 0, dims, at, cases::ExitOutcome::kAdvanced, absl::Minutes(i % 90),
                        i % 90 <= 60);
      shard.StageEntered(0, 1, dims, at, false);
      if (i % 4 == 0) {
        shard.StageExited(0, 1, dims, at, cases::ExitOutcome::kFallout, absl::Hours(1), true);
        shard.CaseFallout(0, dims, at);
      } else {
        shard.StageExited(0, 1, dims, at, cases::ExitOutcome::kAdvanced, absl::Hours(2), true);
        shard.CaseCompleted(0, dims, at, 100, absl::Hours(3));
      }
    }
    stop.store(true);
  });

  auto read = [&](bool filtered) {
    v1::GetSnapshotRequest request;
    if (filtered) (*request.mutable_dimensions())["region"] = "r49";
    int reads = 0;
    while (!stop.load() || reads == 0) {
      absl::StatusOr<v1::Snapshot> s = reader.Read(request);
      ASSERT_TRUE(s.ok()) << s.status();
      for (const v1::ProcessWindow& w : s->processes(0).windows()) {
        for (const v1::StageWindow& st : w.stages()) {
          // Within one read: a stage's exits never exceed what it counts
          // as met, fallen out or advanced, and ratios stay in [0, 1].
          EXPECT_EQ(st.exited(), st.advanced() + st.fallout());
          EXPECT_LE(st.sla_met(), st.exited());
          if (st.has_sla_attainment()) {
            EXPECT_GE(st.sla_attainment(), 0);
            EXPECT_LE(st.sla_attainment(), 1);
          }
        }
        if (w.has_win_ratio()) {
          EXPECT_LE(w.win_ratio(), 1);
        }
      }
      ++reads;
    }
  };
  std::thread all([&] { read(false); });
  std::thread one_region([&] { read(true); });
  writer.join();
  all.join();
  one_region.join();

  // Quiet now: every fact is in. Started 100000; a quarter fell out.
  absl::StatusOr<v1::Snapshot> s = reader.Read(v1::GetSnapshotRequest());
  ASSERT_TRUE(s.ok());
  const v1::ProcessWindow& day = s->processes(0).windows(1);
  EXPECT_EQ(day.started(), 100000u);
  EXPECT_EQ(day.fallout(), 25000u);
  EXPECT_EQ(day.completed(), 75000u);
}

}  // namespace
}  // namespace kpid::api

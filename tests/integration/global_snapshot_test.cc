// The global view end to end (issue 8 item 2): two kpid replicas in one
// consumer group on a topic of 2 partitions (replica r1 runs the embedded
// broker, r2 connects to it), each listing both gRPC addresses as peers.
// Events go to chosen partitions, so each replica owns the cases of one;
// with `clock: event` their own "now"s differ (partition 0 ends at minute
// 200, partition 1 at minute 400), which the global answer must reconcile
// by ending every replica's windows at the latest (minute 400). Expected
// values are worked out by hand below. Then r2 is killed: r1's global
// answer is partial and names it.
//
// Times are minutes after S = 2026-03-01T23:12:00Z, a bucket edge of both
// windows (1h: 60 s buckets, 1d: 24 min buckets). SLAs: lead 1h, won 1d.
//   partition 0: P0-1 lead 0, won 30 (lead 30m, met), completed 90 (1000;
//                won 60m met; lead time 90m)
//                P0-2 lead 10, fallout 200 (lead 190m, missed)
//   partition 1: P1-1 lead 20, won 140 (lead 120m, missed), completed 300
//                (3000; won 160m met; lead time 280m)
//                P1-2 lead 400 (open)
// Global 1d window (ends at 400, covers from before minute 0): everything.
//   started 4; completed 2 (revenue 4000); fallout 1; win_ratio 2/3;
//   avg_deal 2000. lead: entered 4, advanced 2 (P0-1, P1-1), fallout 1
//   (P0-2), exited 3, sla_met 1 (P0-1) -> conversion 2/3, attainment 1/3;
//   cycle times 30m, 120m, 190m: p50 = 2nd = 120m. won: entered 2,
//   advanced 2, sla_met 2. Lead times 90m, 280m: p50 = 1st = 90m, p90 =
//   2nd = 280m (r1's or r2's own p50 alone would be one of them). Open: 1.
// Global 1h window ending at 400: buckets [340, 401): only P1-2's entry
//   (started 1, nothing completed: win_ratio absent). Partition 0's own
//   1h window (ending at 200) would hold P0-2's fallout; pinned at 400 it
//   holds nothing.
#include <signal.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "daemon/api/proto_time.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "kpid/v1/event.pb.h"
#include "kpid/v1/kpi_service.grpc.pb.h"
#include "tests/testing/kafka_client.h"
#include "tests/testing/process.h"

namespace kpid::testing {
namespace {

using kpid::v1::ProcessEvent;

constexpr int64_t kS = 1772406720;  // 175834 x 10080: an edge of 1 min and 24 min buckets
absl::Time At(int64_t minute) { return absl::FromUnixSeconds(kS + minute * 60); }

constexpr char kConfig[] = R"(
replica_id: $ID
kafka:
  brokers: $BROKERS
  topic: events
  group_id: global$EMBEDDED
  # Short sessions: the mock broker rebalances within seconds.
  properties: {session.timeout.ms: "4000", heartbeat.interval.ms: "300"}
http: {listen: "127.0.0.1:$HTTP"}
grpc: {listen: "127.0.0.1:$GRPC"}
peers: {addresses: ["127.0.0.1:$PEER1", "127.0.0.1:$PEER2"], timeout: 2s}
clock: event
windows: [1h, 1d]
retention: 2d
dedup_horizon: 1h
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
      - {id: won, sla: 1d}
)";

struct Step {
  const char* case_id;
  ProcessEvent::Kind kind;
  const char* stage;
  int64_t minute;
  double amount;
  int32_t partition;
};

const std::vector<Step> kSteps = {
    {"P0-1", ProcessEvent::STAGE_ENTERED, "lead", 0, 0, 0},
    {"P0-2", ProcessEvent::STAGE_ENTERED, "lead", 10, 0, 0},
    {"P1-1", ProcessEvent::STAGE_ENTERED, "lead", 20, 0, 1},
    {"P0-1", ProcessEvent::STAGE_ENTERED, "won", 30, 0, 0},
    {"P0-1", ProcessEvent::CASE_COMPLETED, "", 90, 1000, 0},
    {"P1-1", ProcessEvent::STAGE_ENTERED, "won", 140, 0, 1},
    {"P0-2", ProcessEvent::CASE_FALLOUT, "", 200, 0, 0},
    {"P1-1", ProcessEvent::CASE_COMPLETED, "", 300, 3000, 1},
    {"P1-2", ProcessEvent::STAGE_ENTERED, "lead", 400, 0, 1},
};

std::string Encode(const Step& s, int i) {
  ProcessEvent e;
  e.set_event_id(absl::StrCat("e", i));
  e.set_process("sales");
  e.set_case_id(s.case_id);
  e.set_kind(s.kind);
  e.set_stage(s.stage);
  e.set_amount(s.amount);
  e.mutable_occurred_at()->set_seconds(kS + s.minute * 60);
  return e.SerializeAsString();
}

double Minutes(const google::protobuf::Duration& d) {
  return absl::ToDoubleMinutes(api::FromProto(d));
}

struct Replica {
  std::string id;
  int http = FreePort();
  int grpc = FreePort();
  std::unique_ptr<Subprocess> process;
  std::string Addr() const { return absl::StrCat("127.0.0.1:", grpc); }
};

class GlobalSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("global");
    r_[0].id = "r1";
    r_[1].id = "r2";
    Start(0, "embedded");
    ASSERT_TRUE(
        WaitFor([&] { return !ReadFileOrEmpty(dir_ + "/bootstrap").empty(); }, absl::Seconds(10)));
    brokers_ = std::string(absl::StripSuffix(ReadFileOrEmpty(dir_ + "/bootstrap"), "\n"));
    ASSERT_TRUE(WaitFor([&] { return Ready(0); }, absl::Seconds(20))) << Log(0);
    Start(1, brokers_);
    // Both in the group with a partition each before any event: no
    // partition is read twice.
    ASSERT_TRUE(WaitFor(
        [&] {
          return Ready(1) && Local(0).replicas(0).partitions_size() == 1 &&
                 Local(1).replicas(0).partitions_size() == 1;
        },
        absl::Seconds(30)))
        << Log(0) << Log(1);

    TestProducer producer(brokers_);
    for (size_t i = 0; i < kSteps.size(); ++i) {
      producer.Send(
          "events",
          {kSteps[i].case_id, Encode(kSteps[i], static_cast<int>(i)), {}, kSteps[i].partition});
    }
    ASSERT_EQ(producer.Flush(absl::Seconds(20)), 0);
    ASSERT_TRUE(WaitFor(
        [&] {
          return Local(0).processes(0).windows(1).started() +
                     Local(1).processes(0).windows(1).started() ==
                 4;
        },
        absl::Seconds(20)))
        << Log(0) << Log(1);
    ASSERT_TRUE(WaitFor(
        [&] {
          return Local(0).processes(0).windows(1).completed() +
                     Local(1).processes(0).windows(1).completed() ==
                 2;
        },
        absl::Seconds(20)));
  }

  void Start(int i, const std::string& brokers) {
    Replica& r = r_[static_cast<size_t>(i)];
    const std::string config = absl::StrCat(dir_, "/", r.id, ".yaml");
    WriteFileOrDie(
        config, absl::StrReplaceAll(
                    kConfig,
                    {{"$ID", r.id},
                     {"$BROKERS", brokers},
                     {"$EMBEDDED", brokers == "embedded"
                                       ? absl::StrCat("\n  partitions: 2\n  bootstrap_file: ", dir_,
                                                      "/bootstrap")
                                       : ""},
                     {"$HTTP", absl::StrCat(r.http)},
                     {"$GRPC", absl::StrCat(r.grpc)},
                     {"$PEER1", absl::StrCat(r_[0].grpc)},
                     {"$PEER2", absl::StrCat(r_[1].grpc)}}));
    r.process =
        std::make_unique<Subprocess>(std::vector<std::string>{KPID_BINARY, "--config", config},
                                     absl::StrCat(dir_, "/", r.id, ".log"));
  }

  bool Ready(int i) { return HttpGet(r_[static_cast<size_t>(i)].http, "/readyz").status == 200; }
  std::string Log(int i) {
    return absl::StrCat(
        "--- ", r_[static_cast<size_t>(i)].id, ":\n",
        ReadFileOrEmpty(absl::StrCat(dir_, "/", r_[static_cast<size_t>(i)].id, ".log")));
  }

  v1::Snapshot Ask(int i, v1::Scope scope, grpc::Status* status = nullptr) {
    auto stub = v1::KpiService::NewStub(
        grpc::CreateChannel(r_[static_cast<size_t>(i)].Addr(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::GetSnapshotRequest request;
    request.set_scope(scope);
    v1::Snapshot snapshot;
    grpc::Status s = stub->GetSnapshot(&context, request, &snapshot);
    if (status != nullptr) *status = s;
    if (!s.ok() || snapshot.processes_size() != 1 || snapshot.processes(0).windows_size() != 2 ||
        snapshot.replicas_size() < 1) {
      // Shaped like an empty answer so that polling callers keep polling.
      snapshot.Clear();
      snapshot.add_replicas();
      snapshot.add_processes()->add_windows();
      snapshot.mutable_processes(0)->add_windows();
    }
    return snapshot;
  }
  v1::Snapshot Local(int i) { return Ask(i, v1::SCOPE_LOCAL); }

  void ExpectHandTotals(const v1::Snapshot& g) {
    EXPECT_FALSE(g.partial());
    EXPECT_EQ(api::FromProto(g.as_of()), At(400));  // the latest of both replicas
    EXPECT_EQ(api::FromProto(g.watermark()), At(400));
    ASSERT_EQ(g.replicas_size(), 2);
    std::vector<int32_t> partitions;
    for (const v1::ReplicaStatus& r : g.replicas()) {
      EXPECT_EQ(r.error(), "") << r.replica();
      partitions.insert(partitions.end(), r.partitions().begin(), r.partitions().end());
    }
    std::sort(partitions.begin(), partitions.end());
    EXPECT_EQ(partitions, (std::vector<int32_t>{0, 1}));
    const v1::ProcessSnapshot& p = g.processes(0);
    EXPECT_EQ(p.open_cases(), 1);          // P1-2
    EXPECT_EQ(p.backlog(0).backlog(), 1);  // P1-2 in lead
    const v1::ProcessWindow& hour = p.windows(0);
    EXPECT_EQ(hour.started(), 1u);  // P1-2 only: [340, 401)
    EXPECT_EQ(hour.fallout(), 0u);  // P0-2's fallout (minute 200) is outside
    EXPECT_FALSE(hour.has_win_ratio());
    const v1::ProcessWindow& day = p.windows(1);
    EXPECT_EQ(day.started(), 4u);
    EXPECT_EQ(day.completed(), 2u);
    EXPECT_EQ(day.fallout(), 1u);
    EXPECT_EQ(day.revenue(), 4000);
    EXPECT_DOUBLE_EQ(day.win_ratio(), 2.0 / 3);
    EXPECT_DOUBLE_EQ(day.avg_deal(), 2000);
    const v1::StageWindow& lead = day.stages(0);
    EXPECT_EQ(lead.entered(), 4u);
    EXPECT_EQ(lead.advanced(), 2u);
    EXPECT_EQ(lead.fallout(), 1u);
    EXPECT_EQ(lead.exited(), 3u);
    EXPECT_EQ(lead.sla_met(), 1u);
    EXPECT_DOUBLE_EQ(lead.conversion(), 2.0 / 3);
    EXPECT_DOUBLE_EQ(lead.sla_attainment(), 1.0 / 3);
    EXPECT_EQ(lead.cycle_time().count(), 3u);
    EXPECT_NEAR(Minutes(lead.cycle_time().p50()), 120, 1.2);  // within 1%
    const v1::StageWindow& won = day.stages(1);
    EXPECT_EQ(won.entered(), 2u);
    EXPECT_EQ(won.advanced(), 2u);
    EXPECT_EQ(won.sla_met(), 2u);
    EXPECT_EQ(day.lead_time().count(), 2u);
    EXPECT_NEAR(Minutes(day.lead_time().p50()), 90, 0.9);
    EXPECT_NEAR(Minutes(day.lead_time().p90()), 280, 2.8);
  }

  std::string dir_;
  std::string brokers_;
  Replica r_[2];
};

TEST_F(GlobalSnapshotTest, EachReplicaAnswersTheWholeAndPartialWhenOneIsGone) {
  const v1::Snapshot local0 = Local(0);
  const v1::Snapshot local1 = Local(1);
  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE(r_[i].id);
    const v1::Snapshot g = Ask(i, v1::SCOPE_GLOBAL);
    ExpectHandTotals(g);
    // The sum of the local answers (1d window: all events are in both
    // replicas' own windows too).
    const v1::ProcessWindow& a = local0.processes(0).windows(1);
    const v1::ProcessWindow& b = local1.processes(0).windows(1);
    const v1::ProcessWindow& day = g.processes(0).windows(1);
    EXPECT_EQ(day.started(), a.started() + b.started());
    EXPECT_EQ(day.completed(), a.completed() + b.completed());
    EXPECT_EQ(day.fallout(), a.fallout() + b.fallout());
    EXPECT_EQ(day.revenue(), a.revenue() + b.revenue());
    for (int s = 0; s < 2; ++s) {
      EXPECT_EQ(day.stages(s).entered(), a.stages(s).entered() + b.stages(s).entered());
      EXPECT_EQ(day.stages(s).exited(), a.stages(s).exited() + b.stages(s).exited());
      EXPECT_EQ(day.stages(s).sla_met(), a.stages(s).sla_met() + b.stages(s).sla_met());
      EXPECT_EQ(day.stages(s).sla_breaches(),
                a.stages(s).sla_breaches() + b.stages(s).sla_breaches());
    }
    EXPECT_EQ(g.processes(0).open_cases(),
              local0.processes(0).open_cases() + local1.processes(0).open_cases());
  }
  const MetricSamples metrics = ParseMetrics(HttpGet(r_[0].http, "/metrics").body);
  EXPECT_GE(Sample(metrics, "kpid_peer_requests_total{result=\"ok\"}"), 2);

  // r2 gone without a word: r1 still answers, partial, naming it.
  r_[1].process->Signal(SIGKILL);
  EXPECT_EQ(r_[1].process->Wait(absl::Seconds(10)), 128 + SIGKILL);
  absl::SleepFor(absl::Seconds(1.1));  // past the global answer's cache ttl
  grpc::Status status;
  const v1::Snapshot g = Ask(0, v1::SCOPE_GLOBAL, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(g.partial());
  bool named = false;
  for (const v1::ReplicaStatus& r : g.replicas()) {
    if (r.address() == r_[1].Addr()) named = !r.error().empty();
  }
  EXPECT_TRUE(named) << g.DebugString();

  std::string out;
  ASSERT_EQ(RunCommand({KPICTL_BINARY, "--addr", r_[0].Addr(), "--format", "markdown", "snapshot"},
                       &out, absl::Seconds(20)),
            0)
      << out;
  EXPECT_TRUE(absl::StrContains(out, "PARTIAL")) << out;
  EXPECT_TRUE(absl::StrContains(out, r_[1].Addr())) << out;
  // --local asks r1 alone: not partial.
  ASSERT_EQ(RunCommand({KPICTL_BINARY, "--addr", r_[0].Addr(), "--format", "markdown", "snapshot",
                        "--local"},
                       &out, absl::Seconds(20)),
            0)
      << out;
  EXPECT_FALSE(absl::StrContains(out, "PARTIAL")) << out;

  r_[0].process->Signal(SIGTERM);
  EXPECT_EQ(r_[0].process->Wait(absl::Seconds(15)), 0);
}

}  // namespace
}  // namespace kpid::testing

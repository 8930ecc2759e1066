// The gRPC API end to end (issue 6): kpid on its embedded broker with
// `clock: event`, fed a hand-written scenario spanning 14 days of event
// time, then every KpiService RPC through a real gRPC client, health and
// reflection, and kpictl (report weekly as JSON, and as markdown against a
// golden file reviewed by hand). Expected values are worked out by hand in
// the comments below, never copied from kpid's output.
//
// Times are minutes after S = 2026-03-01T23:12:00Z = 175834 x 10080 s, a
// bucket edge of the 7d window (buckets of 7d/60 = 10080 s = 2h48m). "Now"
// is the last event, N = S + 14d 01:24, in the middle of bucket E = S/10080 + 120.
// - last 7d (offset 0): buckets [E - 60, E] = [S + 7d, S + 14d + 2h48m)
// - 7d before (offset 7d): end N - 7d, bucket E - 60: [S, S + 7d + 2h48m)
// The two share bucket [S + 7d, S + 7d + 2h48m) (a window may be one bucket
// long, DESIGN §3); the scenario puts no event there, so each fact is in
// exactly one week.
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "daemon/api/proto_time.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "kpid/v1/event.pb.h"
#include "kpid/v1/kpi_service.grpc.pb.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "proto/grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "tests/testing/kafka_client.h"
#include "tests/testing/process.h"
#include "weekly_report.pb.h"

namespace kpid::testing {
namespace {

using kpid::v1::ProcessEvent;

constexpr int64_t kS = 1772406720;  // 175834 x 10080
constexpr int64_t M(int day, int hour, int minute) { return day * 1440 + hour * 60 + minute; }
constexpr int64_t kNowMinute = M(14, 1, 24);
const absl::Time kNow = absl::FromUnixSeconds(kS + kNowMinute * 60);
absl::Time At(int64_t minute) { return absl::FromUnixSeconds(kS + minute * 60); }

constexpr char kConfig[] = R"(
kafka:
  brokers: embedded
  topic: events
  group_id: api
  partitions: 1
  bootstrap_file: $DIR/bootstrap
http: {listen: "127.0.0.1:$HTTP"}
grpc: {listen: "127.0.0.1:$GRPC"}
clock: event
windows: [1h, 1d, 7d]
retention: 15d
dedup_horizon: 1h
dimensions: {names: [region]}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
      - {id: demo, sla: 1d}
      - {id: quote, sla: 2d}
rules: ["rules.yaml"]
)";

// LeadSlaLow fires at the end (lead attainment 5/6 < 0.9 over the last 7d);
// on the way it may fire and resolve as the window moves, but its final
// state does not depend on when it was evaluated. QuoteSlaLow never fires
// (every quote exit is within SLA).
constexpr char kRules[] = R"(groups:
  - name: sla
    interval: 1s
    rules:
      - alert: LeadSlaLow
        process: sales
        stage: lead
        kpi: sla_attainment
        window: 7d
        op: "<"
        threshold: 0.9
        min_events: 1
        labels: {severity: ticket}
        annotations: {summary: "lead SLA attainment {{ $value }}"}
      - alert: QuoteSlaLow
        process: sales
        stage: quote
        kpi: sla_attainment
        window: 7d
        op: "<"
        threshold: 0.5
        min_events: 1
)";

constexpr auto kEntered = ProcessEvent::STAGE_ENTERED;
constexpr auto kCompleted = ProcessEvent::CASE_COMPLETED;
constexpr auto kFallout = ProcessEvent::CASE_FALLOUT;
constexpr auto kCost = ProcessEvent::COST;
constexpr auto kFeedback = ProcessEvent::FEEDBACK;

struct Step {
  const char* case_id;
  ProcessEvent::Kind kind;
  const char* stage;
  int64_t minute;
  double value;  // amount or score
  const char* region;
};

// SLAs: lead 1h, demo 1d, quote 2d. "met"/"missed": the exit's time in stage.
const std::vector<Step> kSteps = {
    // ---- The week before: [S, S + 7d).
    {"P1", kEntered, "lead", M(1, 0, 0), 0, "emea"},
    {"P1", kEntered, "demo", M(1, 0, 30), 0, "emea"},    // lead 30m met
    {"P1", kEntered, "quote", M(1, 12, 30), 0, "emea"},  // demo 12h met
    {"P2", kEntered, "lead", M(2, 0, 0), 0, "amer"},
    {"P1", kCompleted, "", M(2, 0, 30), 1000, "emea"},  // quote 12h met; lead time 24h30m
    {"P1", kCost, "", M(2, 0, 40), 100, "emea"},
    {"P1", kFeedback, "", M(2, 0, 50), 9, "emea"},
    {"P2", kFallout, "", M(2, 2, 0), 0, "amer"},  // lead 2h missed (breach at 2d 01:00)
    {"P3", kEntered, "lead", M(3, 0, 0), 0, "emea"},
    {"P3", kEntered, "demo", M(3, 0, 20), 0, "emea"},   // lead 20m met
    {"P3", kCompleted, "", M(3, 5, 20), 3000, "emea"},  // demo 5h met; lead time 5h20m
    {"P4", kEntered, "lead", M(4, 0, 0), 0, "amer"},
    {"P4", kEntered, "demo", M(4, 0, 50), 0, "amer"},  // lead 50m met
    {"P4", kFallout, "", M(6, 0, 50), 0, "amer"},      // demo 2d missed (breach at 5d 00:50)
    // ---- The last 7d, after the shared bucket: [S + 7d 02:48, N].
    {"C1", kEntered, "lead", M(8, 0, 0), 0, "emea"},
    {"C1", kEntered, "demo", M(8, 0, 40), 0, "emea"},   // lead 40m met
    {"C1", kEntered, "quote", M(8, 6, 40), 0, "emea"},  // demo 6h met
    {"C2", kEntered, "lead", M(9, 0, 0), 0, "emea"},
    {"C2", kEntered, "demo", M(9, 0, 10), 0, "emea"},   // lead 10m met
    {"C2", kCompleted, "", M(9, 4, 10), 2000, "emea"},  // demo 4h met; lead time 4h10m
    {"C2", kFeedback, "", M(9, 4, 30), 9, "emea"},
    {"C1", kCompleted, "", M(9, 6, 40), 2000, "emea"},  // quote 24h met; lead time 30h40m
    {"C1", kCost, "", M(9, 6, 50), 300, "emea"},
    {"C1", kFeedback, "", M(9, 7, 0), 7, "emea"},
    {"C3", kEntered, "lead", M(10, 0, 0), 0, "amer"},
    {"C3", kEntered, "demo", M(10, 3, 0), 0, "amer"},     // lead 3h missed (breach at 10d 01:00)
    {"C3", kEntered, "lead", M(10, 5, 0), 0, "amer"},     // demo 2h met; lead rework
    {"C3", kEntered, "demo", M(10, 5, 30), 0, "amer"},    // lead 30m met; demo rework
    {"C3", kCompleted, "", M(10, 10, 30), 4000, "amer"},  // demo 5h met; lead time 10h30m
    {"C4", kEntered, "lead", M(11, 0, 0), 0, "amer"},
    {"C4", kFallout, "", M(11, 0, 30), 0, "amer"},  // lead 30m met
    {"C5", kEntered, "lead", M(12, 0, 0), 0, "emea"},
    {"C5", kEntered, "demo", M(12, 0, 45), 0, "emea"},  // lead 45m met; open (breach at 13d 00:45)
    {"C6", kEntered, "lead", M(14, 0, 0), 0, "amer"},   // open (breach at 14d 01:00)
    {"C7", kEntered, "lead", kNowMinute, 0, "emea"},    // open; the watermark: N
};

std::string Encode(const Step& s, const std::string& event_id) {
  ProcessEvent e;
  e.set_event_id(event_id);
  e.set_process("sales");
  e.set_case_id(s.case_id);
  e.set_kind(s.kind);
  e.set_stage(s.stage);
  if (s.kind == kFeedback) {
    e.set_score(s.value);
  } else {
    e.set_amount(s.value);
  }
  e.mutable_occurred_at()->set_seconds(kS + s.minute * 60);
  (*e.mutable_attributes())["region"] = s.region;
  return e.SerializeAsString();
}

google::protobuf::Duration D(absl::Duration d) {
  google::protobuf::Duration p;
  api::ToProto(d, &p);
  return p;
}

absl::Duration Seconds(const google::protobuf::Duration& d) { return api::FromProto(d); }

// Quantiles are within 1% of an observed value (aggregate/distribution.h).
void ExpectAbout(const google::protobuf::Duration& got, absl::Duration expected) {
  EXPECT_NEAR(absl::ToDoubleSeconds(Seconds(got)), absl::ToDoubleSeconds(expected),
              absl::ToDoubleSeconds(expected) * 0.01);
}

class ApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir("api"));
    http_port_ = FreePort();
    grpc_port_ = FreePort();
    WriteFileOrDie(*dir_ + "/rules.yaml", kRules);
    const std::string config = *dir_ + "/kpid.yaml";
    WriteFileOrDie(config, absl::StrReplaceAll(kConfig, {{"$DIR", *dir_},
                                                         {"$HTTP", absl::StrCat(http_port_)},
                                                         {"$GRPC", absl::StrCat(grpc_port_)}}));
    kpid_ = new Subprocess({KPID_BINARY, "--config", config}, *dir_ + "/kpid.log");
    ASSERT_TRUE(
        WaitFor([] { return !ReadFileOrEmpty(*dir_ + "/bootstrap").empty(); }, absl::Seconds(10)));
    brokers_ = new std::string(absl::StripSuffix(ReadFileOrEmpty(*dir_ + "/bootstrap"), "\n"));
    {
      TestProducer producer(*brokers_);
      for (size_t i = 0; i < kSteps.size(); ++i) {
        producer.Send("events",
                      {kSteps[i].case_id, Encode(kSteps[i], absl::StrCat("e", i)), {}, -1});
      }
      ASSERT_EQ(producer.Flush(absl::Seconds(30)), 0);
    }
    ASSERT_TRUE(WaitFor([] { return Consumed() >= kSteps.size(); }, absl::Seconds(30)))
        << ReadFileOrEmpty(*dir_ + "/kpid.log");
    // The last breach (C6 at 14d 01:00) fires on the worker's timer once
    // N is seen; wait for it rather than race it.
    ASSERT_TRUE(WaitFor(
        [] {
          v1::Snapshot s;
          return Stub()->GetSnapshot(Context().get(), v1::GetSnapshotRequest(), &s).ok() &&
                 s.processes(0).backlog(0).backlog_over_sla() == 1;
        },
        absl::Seconds(10)))
        << ReadFileOrEmpty(*dir_ + "/kpid.log");
    // Breaching cases come from the view each tracker publishes at its next
    // Tick (~100 ms): wait for the view that includes C6's breach too.
    ASSERT_TRUE(WaitFor(
        [] {
          v1::ListBreachingCasesResponse r;
          return Stub()
                     ->ListBreachingCases(Context().get(), v1::ListBreachingCasesRequest(), &r)
                     .ok() &&
                 r.total() == 2;
        },
        absl::Seconds(10)))
        << ReadFileOrEmpty(*dir_ + "/kpid.log");
  }

  static void TearDownTestSuite() {
    kpid_->Signal(SIGTERM);
    EXPECT_EQ(kpid_->Wait(absl::Seconds(10)), 0);
    delete kpid_;
  }

  static size_t Consumed() {
    MetricSamples m = ParseMetrics(HttpGet(http_port_, "/metrics").body);
    double n = Sample(m, "kpid_events_consumed_total");
    for (const auto& [series, value] : m) {
      if (absl::StartsWith(series, "kpid_events_rejected_total{")) n += value;
    }
    return n < 0 ? 0 : static_cast<size_t>(n);
  }

  static std::string Addr() { return absl::StrCat("127.0.0.1:", grpc_port_); }
  static std::shared_ptr<grpc::Channel> Channel() {
    return grpc::CreateChannel(Addr(), grpc::InsecureChannelCredentials());
  }
  static std::unique_ptr<v1::KpiService::Stub> Stub() { return v1::KpiService::NewStub(Channel()); }
  static std::unique_ptr<grpc::ClientContext> Context() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return context;
  }

  static v1::Snapshot Snapshot(const v1::GetSnapshotRequest& request) {
    v1::Snapshot snapshot;
    const grpc::Status status = Stub()->GetSnapshot(Context().get(), request, &snapshot);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return snapshot;
  }
  static v1::GetSnapshotRequest Week(absl::Duration offset) {
    v1::GetSnapshotRequest r;
    r.set_process("sales");
    *r.add_windows() = D(absl::Hours(24 * 7));
    *r.mutable_offset() = D(offset);
    return r;
  }

  static int Kpictl(const std::vector<std::string>& args, std::string* out) {
    std::vector<std::string> argv = {KPICTL_BINARY, "--addr", Addr()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, out, absl::Seconds(30));
  }

  static std::string* dir_;
  static std::string* brokers_;
  static int http_port_;
  static int grpc_port_;
  static Subprocess* kpid_;
};

std::string* ApiTest::dir_ = nullptr;
std::string* ApiTest::brokers_ = nullptr;
int ApiTest::http_port_ = 0;
int ApiTest::grpc_port_ = 0;
Subprocess* ApiTest::kpid_ = nullptr;

constexpr int kLead = 0, kDemo = 1, kQuote = 2;

TEST_F(ApiTest, LastSevenDays) {
  const v1::Snapshot s = Snapshot(Week(absl::ZeroDuration()));
  EXPECT_EQ(api::FromProto(s.as_of()), kNow);      // clock: event
  EXPECT_EQ(api::FromProto(s.watermark()), kNow);  // C7's event
  ASSERT_EQ(s.processes_size(), 1);
  const v1::ProcessSnapshot& p = s.processes(0);
  ASSERT_EQ(p.windows_size(), 1);
  const v1::ProcessWindow& w = p.windows(0);
  EXPECT_EQ(Seconds(w.coverage().window()), absl::Hours(24 * 7));
  EXPECT_EQ(api::FromProto(w.coverage().end()), kNow);
  EXPECT_EQ(api::FromProto(w.coverage().from()), At(M(7, 0, 0)));
  EXPECT_EQ(api::FromProto(w.coverage().to()), At(M(14, 2, 48)));

  // Process: C1..C7 started; C1, C2, C3 completed (2000 + 2000 + 4000);
  // C4 fell out; cost 300 (C1); scores 9 (C2) and 7 (C1).
  EXPECT_EQ(w.started(), 7u);
  EXPECT_EQ(w.completed(), 3u);
  EXPECT_EQ(w.fallout(), 1u);
  EXPECT_EQ(w.revenue(), 8000);
  EXPECT_EQ(w.cost(), 300);
  EXPECT_EQ(w.feedback_count(), 2u);
  EXPECT_DOUBLE_EQ(w.win_ratio(), 0.75);       // 3 / (3 + 1)
  EXPECT_DOUBLE_EQ(w.avg_deal(), 8000.0 / 3);  // 2666.67
  EXPECT_DOUBLE_EQ(w.cost_to_serve(), 100);    // 300 / 3
  EXPECT_DOUBLE_EQ(w.feedback_score(), 8);     // (9 + 7) / 2
  // Lead times 4h10m (C2), 10h30m (C3), 30h40m (C1): p50 = 2nd, p90 = 3rd.
  EXPECT_EQ(w.lead_time().count(), 3u);
  ExpectAbout(w.lead_time().p50(), absl::Minutes(10 * 60 + 30));
  ExpectAbout(w.lead_time().p90(), absl::Minutes(30 * 60 + 40));

  ASSERT_EQ(w.stages_size(), 3);
  const v1::StageWindow& lead = w.stages(kLead);
  // Lead entries: C1 C2 C3 C3(again) C4 C5 C6 C7 = 8, 1 rework (C3).
  // Exits: C1 40m, C2 10m, C3 3h (missed), C3 30m, C5 45m advanced; C4 30m fallout.
  EXPECT_EQ(lead.entered(), 8u);
  EXPECT_EQ(lead.rework(), 1u);
  EXPECT_EQ(lead.exited(), 6u);
  EXPECT_EQ(lead.advanced(), 5u);
  EXPECT_EQ(lead.fallout(), 1u);
  EXPECT_EQ(lead.sla_met(), 5u);
  EXPECT_EQ(lead.sla_breaches(), 2u);  // C3 at 10d 01:00, C6 at 14d 01:00
  EXPECT_DOUBLE_EQ(lead.conversion(), 5.0 / 6);
  EXPECT_DOUBLE_EQ(lead.fallout_ratio(), 1.0 / 6);
  EXPECT_DOUBLE_EQ(lead.sla_attainment(), 5.0 / 6);
  EXPECT_DOUBLE_EQ(lead.rework_ratio(), 1.0 / 8);
  // Cycle times 10m 30m 30m 40m 45m 3h: p50 = 3rd = 30m, p90 = 6th = 3h.
  ExpectAbout(lead.cycle_time().p50(), absl::Minutes(30));
  ExpectAbout(lead.cycle_time().p90(), absl::Hours(3));

  const v1::StageWindow& demo = w.stages(kDemo);
  // Entries C1 C2 C3 C3(again) C5; exits C1 6h, C2 4h, C3 2h, C3 5h, all advanced, met.
  EXPECT_EQ(demo.entered(), 5u);
  EXPECT_EQ(demo.exited(), 4u);
  EXPECT_EQ(demo.sla_met(), 4u);
  EXPECT_EQ(demo.sla_breaches(), 1u);  // C5 at 13d 00:45
  EXPECT_EQ(demo.conversion(), 1);
  ASSERT_TRUE(demo.has_fallout_ratio());  // 0 / 4: present and 0
  EXPECT_EQ(demo.fallout_ratio(), 0);
  EXPECT_DOUBLE_EQ(demo.rework_ratio(), 0.2);            // 1 / 5
  ExpectAbout(demo.cycle_time().p50(), absl::Hours(4));  // 2h 4h 5h 6h: 2nd
  ExpectAbout(demo.cycle_time().p90(), absl::Hours(6));  // 4th

  const v1::StageWindow& quote = w.stages(kQuote);
  EXPECT_EQ(quote.entered(), 1u);  // C1
  EXPECT_EQ(quote.exited(), 1u);   // C1 after 24h, met
  EXPECT_EQ(quote.sla_attainment(), 1);

  // Now: C6 (84m, over 1h) and C7 (0m) in lead; C5 in demo (over 1d).
  EXPECT_EQ(p.open_cases(), 3);
  EXPECT_EQ(p.backlog(kLead).backlog(), 2);
  EXPECT_EQ(p.backlog(kLead).backlog_over_sla(), 1);
  EXPECT_EQ(p.backlog(kLead).sla_breaches_total(), 3u);  // P2, C3, C6
  EXPECT_EQ(p.backlog(kDemo).backlog(), 1);
  EXPECT_EQ(p.backlog(kDemo).backlog_over_sla(), 1);
  EXPECT_EQ(p.backlog(kDemo).sla_breaches_total(), 2u);  // P4, C5
  EXPECT_EQ(p.backlog(kQuote).backlog(), 0);
  EXPECT_EQ(Seconds(p.backlog(kQuote).sla()), absl::Hours(48));
}

TEST_F(ApiTest, TheSevenDaysBefore) {
  const v1::Snapshot s = Snapshot(Week(absl::Hours(24 * 7)));
  EXPECT_EQ(Seconds(s.offset()), absl::Hours(24 * 7));
  const v1::ProcessWindow& w = s.processes(0).windows(0);
  EXPECT_EQ(api::FromProto(w.coverage().end()), kNow - absl::Hours(24 * 7));
  EXPECT_EQ(api::FromProto(w.coverage().from()), At(0));
  EXPECT_EQ(api::FromProto(w.coverage().to()), At(M(7, 2, 48)));
  // P1..P4 started; P1 (1000), P3 (3000) completed; P2, P4 fell out; cost
  // 100 and score 9 (P1).
  EXPECT_EQ(w.started(), 4u);
  EXPECT_EQ(w.completed(), 2u);
  EXPECT_EQ(w.fallout(), 2u);
  EXPECT_EQ(w.revenue(), 4000);
  EXPECT_EQ(w.win_ratio(), 0.5);     // 2 / 4
  EXPECT_EQ(w.avg_deal(), 2000);     // 4000 / 2
  EXPECT_EQ(w.cost_to_serve(), 50);  // 100 / 2
  EXPECT_EQ(w.feedback_score(), 9);
  // Lead times 5h20m (P3), 24h30m (P1).
  ExpectAbout(w.lead_time().p50(), absl::Minutes(5 * 60 + 20));
  ExpectAbout(w.lead_time().p90(), absl::Minutes(24 * 60 + 30));

  const v1::StageWindow& lead = w.stages(kLead);
  // Exits P1 30m, P3 20m, P4 50m advanced; P2 2h fallout (missed).
  EXPECT_EQ(lead.entered(), 4u);
  EXPECT_EQ(lead.exited(), 4u);
  EXPECT_EQ(lead.fallout(), 1u);
  EXPECT_EQ(lead.sla_met(), 3u);
  EXPECT_EQ(lead.sla_breaches(), 1u);  // P2 at 2d 01:00
  EXPECT_EQ(lead.conversion(), 0.75);
  EXPECT_EQ(lead.rework_ratio(), 0);
  ExpectAbout(lead.cycle_time().p50(), absl::Minutes(30));  // 20m 30m 50m 2h: 2nd
  ExpectAbout(lead.cycle_time().p90(), absl::Hours(2));     // 4th
  const v1::StageWindow& demo = w.stages(kDemo);
  // Exits P1 12h, P3 5h advanced; P4 2d fallout (missed).
  EXPECT_EQ(demo.exited(), 3u);
  EXPECT_DOUBLE_EQ(demo.conversion(), 2.0 / 3);
  EXPECT_DOUBLE_EQ(demo.sla_attainment(), 2.0 / 3);
  EXPECT_EQ(demo.sla_breaches(), 1u);  // P4 at 5d 00:50
  ExpectAbout(demo.cycle_time().p50(), absl::Hours(12));
  ExpectAbout(demo.cycle_time().p90(), absl::Hours(48));
  // Backlog is "now" whatever the offset.
  EXPECT_EQ(s.processes(0).backlog(kLead).backlog(), 2);
}

TEST_F(ApiTest, ShortWindowsAtNow) {
  v1::GetSnapshotRequest r;
  *r.add_windows() = D(absl::Hours(1));
  *r.add_windows() = D(absl::Hours(24));
  const v1::Snapshot s = Snapshot(r);
  ASSERT_EQ(s.processes(0).windows_size(), 2);
  // 1h: 60 s buckets, [N - 1h, N + 1m): C6's breach at 01:00 and C7's entry.
  const v1::ProcessWindow& hour = s.processes(0).windows(0);
  EXPECT_EQ(api::FromProto(hour.coverage().from()), kNow - absl::Hours(1));
  EXPECT_EQ(api::FromProto(hour.coverage().to()), kNow + absl::Minutes(1));
  EXPECT_EQ(hour.started(), 1u);
  EXPECT_EQ(hour.stages(kLead).entered(), 1u);
  EXPECT_EQ(hour.stages(kLead).sla_breaches(), 1u);
  EXPECT_EQ(hour.stages(kLead).exited(), 0u);
  EXPECT_FALSE(hour.stages(kLead).has_conversion());  // no exits: absent, not 0
  EXPECT_FALSE(hour.has_win_ratio());
  EXPECT_FALSE(hour.stages(kLead).cycle_time().has_p50());
  // 1d: 24m buckets; N is 12m into one: [N - 12m - 1d, N + 12m) = [13d 01:12, 14d 01:36):
  // C6 and C7 entries, C6's breach; C5's breach at 13d 00:45 is just before.
  const v1::ProcessWindow& day = s.processes(0).windows(1);
  EXPECT_EQ(api::FromProto(day.coverage().from()), At(M(13, 1, 12)));
  EXPECT_EQ(api::FromProto(day.coverage().to()), At(M(14, 1, 36)));
  EXPECT_EQ(day.started(), 2u);
  EXPECT_EQ(day.stages(kLead).sla_breaches(), 1u);
  EXPECT_EQ(day.stages(kDemo).sla_breaches(), 0u);
}

TEST_F(ApiTest, DimensionFilter) {
  v1::GetSnapshotRequest r = Week(absl::ZeroDuration());
  (*r.mutable_dimensions())["region"] = "emea";
  const v1::Snapshot s = Snapshot(r);
  const v1::ProcessSnapshot& p = s.processes(0);
  const v1::ProcessWindow& w = p.windows(0);
  // emea in the last 7d: C1 C2 C5 C7 started; C1 C2 completed (4000); cost
  // 300 (C1); scores 9 and 7.
  EXPECT_EQ(w.started(), 4u);
  EXPECT_EQ(w.completed(), 2u);
  EXPECT_EQ(w.revenue(), 4000);
  EXPECT_EQ(w.win_ratio(), 1);        // 2 / (2 + 0)
  EXPECT_EQ(w.cost_to_serve(), 150);  // 300 / 2
  EXPECT_EQ(w.feedback_score(), 8);
  // Lead exits C1 40m, C2 10m, C5 45m: all met.
  EXPECT_EQ(w.stages(kLead).entered(), 4u);
  EXPECT_EQ(w.stages(kLead).exited(), 3u);
  EXPECT_EQ(w.stages(kLead).sla_attainment(), 1);
  EXPECT_EQ(w.stages(kDemo).sla_breaches(), 1u);  // C5
  // No quantiles per dimension.
  EXPECT_FALSE(w.has_lead_time());
  // Now: C7 in lead, C5 in demo (over SLA).
  EXPECT_EQ(p.open_cases(), 2);
  EXPECT_EQ(p.backlog(kLead).backlog(), 1);
  EXPECT_EQ(p.backlog(kLead).backlog_over_sla(), 0);
  EXPECT_EQ(p.backlog(kDemo).backlog_over_sla(), 1);
}

TEST_F(ApiTest, InvalidArguments) {
  auto fails = [](v1::GetSnapshotRequest r) {
    v1::Snapshot s;
    const grpc::Status status = Stub()->GetSnapshot(Context().get(), r, &s);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    return status.error_message();
  };
  v1::GetSnapshotRequest r;
  r.set_process("billing");
  EXPECT_EQ(fails(r), "unknown process \"billing\" (processes: sales)");
  r = Week(absl::ZeroDuration());
  *r.mutable_windows(0) = D(absl::Hours(2));
  EXPECT_EQ(fails(r), "window 2h is not configured (windows: 1h, 1d, 7d)");
  r = Week(absl::Hours(24 * 9));  // 9d + 7d = 16d > 15d
  EXPECT_EQ(fails(r), "offset 9d + window 7d reaches beyond retention 15d");
  r = Week(absl::ZeroDuration());
  (*r.mutable_dimensions())["channel"] = "web";
  EXPECT_EQ(fails(r), "unknown dimension \"channel\" (dimensions: region)");
}

TEST_F(ApiTest, Alerts) {
  v1::ListAlertsResponse response;
  // The rule engine evaluates every second and on every exit or breach.
  ASSERT_TRUE(WaitFor(
      [&] {
        response.Clear();
        return Stub()->ListAlerts(Context().get(), v1::ListAlertsRequest(), &response).ok() &&
               response.alerts_size() == 1 && response.alerts(0).state() == v1::Alert::FIRING &&
               std::abs(response.alerts(0).value() - 5.0 / 6) < 1e-9;
      },
      absl::Seconds(10)))
      << response.DebugString();
  const v1::Alert& a = response.alerts(0);
  EXPECT_EQ(a.name(), "LeadSlaLow");
  EXPECT_EQ(a.labels().at("stage"), "lead");
  EXPECT_EQ(a.labels().at("severity"), "ticket");
  EXPECT_TRUE(a.has_active_at());
  // {{ $value }} is absl::StrCat of 5/6: six significant digits.
  EXPECT_EQ(a.annotations().at("summary"), "lead SLA attainment 0.833333");

  // QuoteSlaLow never left inactive: not listed. Another process's: none.
  v1::ListAlertsRequest other;
  other.set_process("sales");
  response.Clear();
  ASSERT_TRUE(Stub()->ListAlerts(Context().get(), other, &response).ok());
  EXPECT_EQ(response.alerts_size(), 1);
  other.set_process("support");
  response.Clear();
  EXPECT_EQ(Stub()->ListAlerts(Context().get(), other, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // not a configured process
}

TEST_F(ApiTest, BreachingCases) {
  v1::ListBreachingCasesResponse response;
  const grpc::Status status =
      Stub()->ListBreachingCases(Context().get(), v1::ListBreachingCasesRequest(), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  // Open past SLA at N: C5 in demo (deadline 13d 00:45) and C6 in lead (14d 01:00).
  EXPECT_EQ(api::FromProto(response.as_of()), kNow);
  EXPECT_EQ(response.total(), 2u);
  ASSERT_EQ(response.cases_size(), 2);
  EXPECT_EQ(response.cases(0).case_id(), "C5");
  EXPECT_EQ(response.cases(0).stage(), "demo");
  EXPECT_EQ(api::FromProto(response.cases(0).deadline()), At(M(13, 0, 45)));
  EXPECT_EQ(Seconds(response.cases(0).age()), absl::Minutes(M(14, 1, 24) - M(12, 0, 45)));
  EXPECT_EQ(Seconds(response.cases(0).overdue()), absl::Minutes(M(14, 1, 24) - M(13, 0, 45)));
  EXPECT_EQ(response.cases(0).dimensions().at("region"), "emea");
  EXPECT_EQ(response.cases(1).case_id(), "C6");
  EXPECT_EQ(Seconds(response.cases(1).age()), absl::Minutes(84));
  EXPECT_EQ(Seconds(response.cases(1).overdue()), absl::Minutes(24));
}

TEST_F(ApiTest, WatchSnapshotsFollowsNewEvents) {
  v1::WatchSnapshotsRequest request;
  *request.mutable_snapshot() = Week(absl::ZeroDuration());
  *request.mutable_interval() = D(absl::Milliseconds(200));
  auto context = Context();
  auto stream = Stub()->WatchSnapshots(context.get(), request);
  v1::Snapshot snapshot;
  ASSERT_TRUE(stream->Read(&snapshot));
  EXPECT_EQ(api::FromProto(snapshot.as_of()), kNow);
  EXPECT_EQ(snapshot.processes(0).windows(0).started(), 7u);
  ASSERT_TRUE(stream->Read(&snapshot));  // the next tick, nothing new
  EXPECT_EQ(snapshot.processes(0).windows(0).started(), 7u);

  // A new case a minute later: the stream shows it without a new call.
  {
    TestProducer producer(*brokers_);
    producer.Send(
        "events",
        {"C8", Encode({"C8", kEntered, "lead", kNowMinute + 1, 0, "amer"}, "e-c8"), {}, -1});
    ASSERT_EQ(producer.Flush(absl::Seconds(10)), 0);
  }
  int reads = 0;
  do {
    ASSERT_TRUE(stream->Read(&snapshot));
  } while (api::FromProto(snapshot.as_of()) == kNow && ++reads < 50);  // 10 s
  EXPECT_EQ(api::FromProto(snapshot.as_of()), kNow + absl::Minutes(1));
  EXPECT_EQ(snapshot.processes(0).windows(0).started(), 8u);
  EXPECT_EQ(snapshot.processes(0).windows(0).stages(kLead).entered(), 9u);
  EXPECT_EQ(snapshot.processes(0).backlog(kLead).backlog(), 3);
  context->TryCancel();
}

TEST_F(ApiTest, HealthAndReflection) {
  auto health = grpc::health::v1::Health::NewStub(Channel());
  for (const char* service : {"", "kpid.v1.KpiService"}) {
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(health->Check(Context().get(), request, &response).ok()) << service;
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }

  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(Channel());
  auto context = Context();
  auto stream = reflection->ServerReflectionInfo(context.get());
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("*");
  ASSERT_TRUE(stream->Write(request));
  stream->WritesDone();
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::vector<std::string> services;
  for (const auto& s : response.list_services_response().service()) services.push_back(s.name());
  EXPECT_NE(std::find(services.begin(), services.end(), "kpid.v1.KpiService"), services.end())
      << response.DebugString();
  EXPECT_NE(std::find(services.begin(), services.end(), "grpc.health.v1.Health"), services.end());
}

// Both weeks side by side, from kpictl's JSON (Protobuf's mapping of
// kpid.kpictl.WeeklyReport). Last 7d vs the 7d before, from the two
// snapshots above.
TEST_F(ApiTest, KpictlReportWeeklyJson) {
  std::string out;
  ASSERT_EQ(Kpictl({"report", "weekly", "--format", "json"}, &out), 0) << out;
  kpictl::WeeklyReport report;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &report).ok()) << out;
  EXPECT_EQ(report.threshold(), 0.1);  // default 10%
  EXPECT_EQ(api::FromProto(report.as_of()), kNow);
  EXPECT_EQ(api::FromProto(report.current().from()), At(M(7, 0, 0)));
  EXPECT_EQ(api::FromProto(report.previous().from()), At(0));
  ASSERT_EQ(report.processes_size(), 1);
  const kpictl::ProcessReport& p = report.processes(0);
  auto kpi = [&p](const std::string& stage, const std::string& name) {
    for (const kpictl::KpiDelta& d : p.kpis()) {
      if (d.stage() == stage && d.kpi() == name) return d;
    }
    ADD_FAILURE() << stage << " " << name;
    return kpictl::KpiDelta();
  };
  const kpictl::KpiDelta started = kpi("", "started");  // 7 vs 4
  EXPECT_EQ(started.current(), 7);
  EXPECT_EQ(started.previous(), 4);
  EXPECT_EQ(started.delta(), 3);
  EXPECT_DOUBLE_EQ(started.relative_delta(), 0.75);  // 3 / 4
  EXPECT_TRUE(started.flagged());
  const kpictl::KpiDelta revenue = kpi("", "revenue");  // 8000 vs 4000
  EXPECT_EQ(revenue.delta(), 4000);
  EXPECT_DOUBLE_EQ(revenue.relative_delta(), 1);
  const kpictl::KpiDelta win = kpi("", "win_ratio");  // 0.75 vs 0.5
  EXPECT_DOUBLE_EQ(win.delta(), 0.25);
  EXPECT_DOUBLE_EQ(win.relative_delta(), 0.5);
  const kpictl::KpiDelta score = kpi("", "feedback_score");  // 8 vs 9
  EXPECT_EQ(score.delta(), -1);
  EXPECT_DOUBLE_EQ(score.relative_delta(), -1.0 / 9);  // -11.1%: beyond 10%
  EXPECT_TRUE(score.flagged());
  // Lead time p50: 630m vs 320m (10h30m, 5h20m), each reported within 1%:
  // the ratio is in [630 x 0.99 / (320 x 1.01), 630 x 1.01 / (320 x 0.99)].
  const double lead_time = kpi("", "lead_time_p50").relative_delta();
  EXPECT_GE(lead_time, 630 * 0.99 / (320 * 1.01) - 1);            // +92.97%
  EXPECT_LE(lead_time, 630 * 1.01 / (320 * 0.99) - 1);            // +100.85%
  const kpictl::KpiDelta conversion = kpi("lead", "conversion");  // 5/6 vs 3/4
  EXPECT_DOUBLE_EQ(conversion.delta(), 5.0 / 6 - 0.75);
  EXPECT_NEAR(conversion.relative_delta(), 1.0 / 9, 1e-12);  // (1/12) / (3/4)
  EXPECT_TRUE(conversion.flagged());
  const kpictl::KpiDelta rework = kpi("lead", "rework_ratio");  // 1/8 vs 0: off zero
  EXPECT_EQ(rework.delta(), 0.125);
  EXPECT_FALSE(rework.has_relative_delta());
  EXPECT_TRUE(rework.flagged());
  // 30m both weeks: the same distribution bin, so exactly no change.
  const kpictl::KpiDelta p50 = kpi("lead", "cycle_time_p50");
  EXPECT_EQ(p50.delta(), 0);
  EXPECT_FALSE(p50.flagged());
  const kpictl::KpiDelta quote_fallout = kpi("quote", "fallout_ratio");  // 0 vs 0
  EXPECT_EQ(quote_fallout.delta(), 0);
  EXPECT_FALSE(quote_fallout.flagged());
  const kpictl::KpiDelta breaches = kpi("demo", "sla_breaches");  // 1 vs 1
  EXPECT_EQ(breaches.relative_delta(), 0);

  // Lead: 1 exit over SLA (C3), breaches C3 C6, C6 over now. Demo: C5's breach, over now.
  ASSERT_EQ(p.sla_breaches_size(), 2);
  EXPECT_EQ(p.sla_breaches(0).stage(), "lead");
  EXPECT_EQ(p.sla_breaches(0).missed(), 1u);
  EXPECT_EQ(p.sla_breaches(0).breaches(), 2u);
  EXPECT_EQ(p.sla_breaches(0).backlog_over_sla(), 1);
  EXPECT_DOUBLE_EQ(p.sla_breaches(0).sla_attainment(), 5.0 / 6);
  EXPECT_EQ(p.sla_breaches(1).stage(), "demo");
  EXPECT_EQ(p.sla_breaches(1).missed(), 0u);
  EXPECT_EQ(p.sla_breaches(1).breaches(), 1u);
  ASSERT_EQ(report.top_breaching_cases_size(), 2);
  EXPECT_EQ(report.top_breaching_cases(0).case_id(), "C5");
  EXPECT_EQ(report.breaching_cases_unavailable(), "");
}

// The markdown report against tests/golden/kpictl_report_weekly.md, which
// was reviewed by hand against the figures above. KPID_UPDATE_GOLDEN=1
// rewrites it (then review the diff).
TEST_F(ApiTest, KpictlReportWeeklyMarkdownGolden) {
  std::string out;
  ASSERT_EQ(Kpictl({"report", "weekly", "--format", "markdown"}, &out), 0) << out;
  const std::string golden = std::string(GOLDEN_DIR) + "/kpictl_report_weekly.md";
  if (getenv("KPID_UPDATE_GOLDEN") != nullptr) WriteFileOrDie(golden, out);
  EXPECT_EQ(out, ReadFileOrEmpty(golden));
}

TEST_F(ApiTest, KpictlSnapshotCsvAndErrors) {
  std::string out;
  ASSERT_EQ(Kpictl({"snapshot", "--window", "7d", "--format", "csv"}, &out), 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "sales,7d,,revenue,8000\r\n")) << out;
  EXPECT_TRUE(absl::StrContains(out, "sales,7d,lead,entered,8\r\n")) << out;
  EXPECT_TRUE(absl::StrContains(out, "sales,,lead,backlog_over_sla,1\r\n")) << out;

  // A bad request: kpid's reason, one line, exit 1.
  ASSERT_EQ(Kpictl({"snapshot", "--window", "2h"}, &out), 1);
  EXPECT_EQ(out, "kpictl: snapshot: window 2h is not configured (windows: 1h, 1d, 7d)\n");

  // Nobody listening: one line, exit 1.
  const int closed = FreePort();
  ASSERT_EQ(
      RunCommand({KPICTL_BINARY, "--addr", absl::StrCat("127.0.0.1:", closed), "alerts"}, &out), 1);
  EXPECT_TRUE(
      absl::StartsWith(out, absl::StrCat("kpictl: cannot reach kpid at 127.0.0.1:", closed, ": ")))
      << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

}  // namespace
}  // namespace kpid::testing

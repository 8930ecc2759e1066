// KpiService through a real gRPC server on loopback: status codes and
// messages, ListAlerts / ListBreachingCases from fakes, the WatchSnapshots
// stream bound and its endings.
#include "daemon/api/kpi_service.h"

#include <memory>
#include <thread>

#include "absl/time/clock.h"
#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/api/api_server.h"
#include "daemon/api/proto_time.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"

namespace kpid::api {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1008028800);

constexpr char kYaml[] = R"(
windows: [1h, 1d]
retention: 3d
dimensions: {names: [region, channel]}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
      - {id: demo, sla: 4h}
  - id: support
    stages:
      - {id: triage, sla: 30m}
)";

class FakeBreaching : public BreachingCasesSource {
 public:
  std::vector<BreachingCaseRecord> Breaching() const override { return cases; }
  std::vector<BreachingCaseRecord> cases;
};

class KpiServiceTest : public ::testing::Test {
 protected:
  KpiServiceTest()
      : config_(*model::ParseConfig(kYaml, "t.yaml")),
        shard_(config_),
        table_(config_),
        clock_(kNow) {
    SnapshotReader::Options options;
    options.config = &config_;
    options.shards = {&shard_};
    options.dimensions = {&table_};
    options.clock = &clock_;
    reader_ = std::make_unique<SnapshotReader>(std::move(options));
  }
  ~KpiServiceTest() override {
    if (server_ != nullptr) server_->Stop();
  }

  void StartServer(int max_watch_streams = 16) {
    ApiServer::Options options;
    options.listen = "127.0.0.1:0";
    options.service.snapshots = reader_.get();
    options.service.alerts = [this] { return alerts_; };
    options.service.breaching = breaching_;
    options.service.limits = limits_;
    options.service.limits.max_watch_streams = max_watch_streams;
    options.service.metrics = &metrics_;
    auto started = ApiServer::Start(std::move(options));
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
    stub_ = v1::KpiService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
  }

  static std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout = absl::Seconds(10)) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    return context;
  }

  model::Config config_;
  aggregate::AggregateShard shard_;
  cases::DimensionTable table_;
  cases::ManualClock clock_;
  std::unique_ptr<SnapshotReader> reader_;
  std::vector<alert::AlertView> alerts_;
  // The cache off unless a test turns it on: most tests move the clock.
  model::GrpcApiConfig limits_{.snapshot_cache_ttl = absl::ZeroDuration()};
  FakeBreaching fake_breaching_;
  const BreachingCasesSource* breaching_ = &fake_breaching_;
  SnapshotCallMetrics metrics_;
  std::unique_ptr<ApiServer> server_;
  std::unique_ptr<v1::KpiService::Stub> stub_;
};

using Method = SnapshotCallMetrics::Method;
using Result = SnapshotCallMetrics::Result;

TEST_F(KpiServiceTest, InvalidSnapshotRequestIsInvalidArgumentWithTheReason) {
  StartServer();
  v1::GetSnapshotRequest request;
  request.set_process("billing");
  v1::Snapshot snapshot;
  grpc::Status s = stub_->GetSnapshot(Context().get(), request, &snapshot);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "unknown process \"billing\" (processes: sales, support)");

  request.set_process("sales");
  request.mutable_offset()->set_seconds(3 * 86400);  // + 1h > 3d retention
  s = stub_->GetSnapshot(Context().get(), request, &snapshot);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("reaches beyond retention 3d"));
}

TEST_F(KpiServiceTest, SnapshotOverGrpc) {
  StartServer();
  v1::GetSnapshotRequest request;
  request.set_process("support");
  v1::Snapshot snapshot;
  ASSERT_TRUE(stub_->GetSnapshot(Context().get(), request, &snapshot).ok());
  EXPECT_EQ(FromProto(snapshot.as_of()), kNow);
  ASSERT_EQ(snapshot.processes_size(), 1);
  EXPECT_EQ(snapshot.processes(0).windows_size(), 2);
}

BreachingCaseRecord Case(std::string id, int process, int stage, absl::Duration entered_ago,
                         absl::Duration sla, std::vector<std::string> dims = {}) {
  return {std::move(id),  process, stage, kNow - entered_ago, kNow - entered_ago + sla,
          std::move(dims)};
}

TEST_F(KpiServiceTest, BreachingCasesOldestDeadlineFirst) {
  // Deadlines: A -1h (entered -2h, SLA 1h), B -30m, C (support) -2h, D -30m (ties B: by id).
  fake_breaching_.cases = {Case("B", 0, 0, absl::Minutes(90), absl::Hours(1)),
                           Case("A", 0, 0, absl::Hours(2), absl::Hours(1), {"emea", "web"}),
                           Case("C", 1, 0, absl::Minutes(150), absl::Minutes(30)),
                           Case("D", 0, 1, absl::Minutes(270), absl::Hours(4))};
  StartServer();
  v1::ListBreachingCasesRequest request;
  v1::ListBreachingCasesResponse response;
  ASSERT_TRUE(stub_->ListBreachingCases(Context().get(), request, &response).ok());
  EXPECT_EQ(response.total(), 4u);
  std::vector<std::string> ids;
  for (const v1::BreachingCase& c : response.cases()) ids.push_back(c.case_id());
  EXPECT_THAT(ids, ElementsAre("C", "A", "B", "D"));
  const v1::BreachingCase& a = response.cases(1);
  EXPECT_EQ(a.process(), "sales");
  EXPECT_EQ(a.stage(), "lead");
  EXPECT_EQ(FromProto(a.age()), absl::Hours(2));
  EXPECT_EQ(FromProto(a.overdue()), absl::Hours(1));  // 2h in a 1h stage
  EXPECT_EQ(FromProto(a.deadline()), kNow - absl::Hours(1));
  EXPECT_EQ(a.dimensions().at("region"), "emea");
  EXPECT_EQ(a.dimensions().at("channel"), "web");
  EXPECT_EQ(response.cases(3).stage(), "demo");

  // Only sales, at most 2: total counts the 3 of sales.
  request.set_process("sales");
  request.set_limit(2);
  response.Clear();
  ASSERT_TRUE(stub_->ListBreachingCases(Context().get(), request, &response).ok());
  EXPECT_EQ(response.total(), 3u);
  ASSERT_EQ(response.cases_size(), 2);
  EXPECT_EQ(response.cases(0).case_id(), "A");

  request.set_stage("demo");
  response.Clear();
  ASSERT_TRUE(stub_->ListBreachingCases(Context().get(), request, &response).ok());
  ASSERT_EQ(response.cases_size(), 1);
  EXPECT_EQ(response.cases(0).case_id(), "D");
}

TEST_F(KpiServiceTest, BreachingCasesValidation) {
  StartServer();
  v1::ListBreachingCasesRequest request;
  v1::ListBreachingCasesResponse response;
  request.set_stage("lead");
  grpc::Status s = stub_->ListBreachingCases(Context().get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "stage needs process");
  request.set_process("sales");
  request.set_stage("negotiation");
  s = stub_->ListBreachingCases(Context().get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "unknown stage \"negotiation\" of process \"sales\"");
}

TEST_F(KpiServiceTest, BreachingCasesWithoutSourceAreUnimplemented) {
  breaching_ = nullptr;
  StartServer();
  v1::ListBreachingCasesResponse response;
  grpc::Status s =
      stub_->ListBreachingCases(Context().get(), v1::ListBreachingCasesRequest(), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(KpiServiceTest, AlertsSkipInactiveAndFilterByProcess) {
  alerts_ = {
      {{{"alertname", "QuoteSlow"}, {"process", "sales"}, {"stage", "quote"}},
       {{"summary", "slow"}},
       alert::AlertPhase::kFiring,
       0.5,
       kNow - absl::Minutes(10)},
      {{{"alertname", "Idle"}, {"process", "sales"}},
       {},
       alert::AlertPhase::kInactive,
       0,
       absl::InfinitePast()},
      {{{"alertname", "TriageSlow"}, {"process", "support"}},
       {},
       alert::AlertPhase::kPending,
       3,
       kNow - absl::Minutes(1)},
  };
  StartServer();
  v1::ListAlertsRequest request;
  v1::ListAlertsResponse response;
  ASSERT_TRUE(stub_->ListAlerts(Context().get(), request, &response).ok());
  ASSERT_EQ(response.alerts_size(), 2);  // sorted by labels: QuoteSlow < TriageSlow
  const v1::Alert& a = response.alerts(0);
  EXPECT_EQ(a.name(), "QuoteSlow");
  EXPECT_EQ(a.state(), v1::Alert::FIRING);
  EXPECT_EQ(a.value(), 0.5);
  EXPECT_EQ(a.labels().at("stage"), "quote");
  EXPECT_EQ(a.annotations().at("summary"), "slow");
  EXPECT_EQ(FromProto(a.active_at()), kNow - absl::Minutes(10));
  EXPECT_EQ(response.alerts(1).state(), v1::Alert::PENDING);

  request.set_process("sales");
  request.set_include_inactive(true);
  response.Clear();
  ASSERT_TRUE(stub_->ListAlerts(Context().get(), request, &response).ok());
  ASSERT_EQ(response.alerts_size(), 2);
  EXPECT_EQ(response.alerts(0).name(), "Idle");
  EXPECT_EQ(response.alerts(0).state(), v1::Alert::INACTIVE);
  EXPECT_FALSE(response.alerts(0).has_active_at());
}

// The server notices a cancelled stream within its 100 ms poll.
bool NoStreamsWithin(const KpiService& service, absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  while (service.active_watch_streams() > 0) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

v1::WatchSnapshotsRequest Watch(absl::Duration interval) {
  v1::WatchSnapshotsRequest request;
  request.mutable_snapshot()->set_process("sales");
  ToProto(interval, request.mutable_interval());
  return request;
}

TEST_F(KpiServiceTest, WatchDeliversSnapshotsAsTimeMoves) {
  StartServer();
  auto context = Context();
  auto reader = stub_->WatchSnapshots(context.get(), Watch(absl::Milliseconds(100)));
  v1::Snapshot snapshot;
  ASSERT_TRUE(reader->Read(&snapshot));
  EXPECT_EQ(FromProto(snapshot.as_of()), kNow);
  clock_.Set(kNow + absl::Minutes(1));  // between snapshots; the next one sees it
  do {
    ASSERT_TRUE(reader->Read(&snapshot));
  } while (FromProto(snapshot.as_of()) == kNow);
  EXPECT_EQ(FromProto(snapshot.as_of()), kNow + absl::Minutes(1));
  context->TryCancel();
  while (reader->Read(&snapshot)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(KpiServiceTest, WatchStreamsAreBounded) {
  StartServer(/*max_watch_streams=*/1);
  auto first_context = Context();
  auto first = stub_->WatchSnapshots(first_context.get(), Watch(absl::Milliseconds(100)));
  v1::Snapshot snapshot;
  ASSERT_TRUE(first->Read(&snapshot));

  auto second_context = Context();
  auto second = stub_->WatchSnapshots(second_context.get(), Watch(absl::Milliseconds(100)));
  EXPECT_FALSE(second->Read(&snapshot));
  grpc::Status s = second->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(s.error_message(), "too many WatchSnapshots streams (at most 1); retry later");
  // Counted before the client saw the status.
  EXPECT_EQ(metrics_.calls(Method::kWatchSnapshots, Result::kRefused), 1u);

  // The slot comes back once the first stream ends.
  first_context->TryCancel();
  while (first->Read(&snapshot)) {
  }
  first->Finish();
  ASSERT_TRUE(NoStreamsWithin(server_->service(), absl::Seconds(5)));
  auto third_context = Context();
  auto third = stub_->WatchSnapshots(third_context.get(), Watch(absl::Milliseconds(100)));
  EXPECT_TRUE(third->Read(&snapshot));
  third_context->TryCancel();
}

TEST_F(KpiServiceTest, WatchEndsAtItsDeadlineAndFreesTheSlot) {
  StartServer(/*max_watch_streams=*/1);
  auto context = Context(absl::Milliseconds(500));
  auto reader = stub_->WatchSnapshots(context.get(), Watch(absl::Milliseconds(100)));
  v1::Snapshot snapshot;
  int received = 0;
  while (reader->Read(&snapshot)) ++received;
  EXPECT_GE(received, 1);  // ~5 in 500 ms at 100 ms; fewer on a loaded machine
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(NoStreamsWithin(server_->service(), absl::Seconds(5)));
}

TEST_F(KpiServiceTest, WatchRejectsBadRequests) {
  StartServer();
  v1::Snapshot snapshot;
  auto context = Context();
  auto reader = stub_->WatchSnapshots(context.get(), Watch(absl::Milliseconds(10)));
  EXPECT_FALSE(reader->Read(&snapshot));
  grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "interval 10ms is below the minimum of 100ms");
}

TEST_F(KpiServiceTest, StopEndsOpenStreams) {
  StartServer();
  auto context = Context();
  auto reader = stub_->WatchSnapshots(context.get(), Watch(absl::Seconds(60)));
  v1::Snapshot snapshot;
  ASSERT_TRUE(reader->Read(&snapshot));
  server_->Stop();
  // Ended by the service (OK), not cut off by the server's shutdown grace
  // (which would cancel it) nor left to its 60 s interval.
  EXPECT_FALSE(reader->Read(&snapshot));
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(KpiServiceTest, IdenticalRequestsShareOneReadWithinTheCacheTtl) {
  limits_.snapshot_cache_ttl = absl::Minutes(1);
  StartServer();
  v1::GetSnapshotRequest sales;
  sales.set_process("sales");
  v1::Snapshot first, second;
  ASSERT_TRUE(stub_->GetSnapshot(Context().get(), sales, &first).ok());
  clock_.Set(kNow + absl::Minutes(1));
  ASSERT_TRUE(stub_->GetSnapshot(Context().get(), sales, &second).ok());
  EXPECT_EQ(FromProto(second.as_of()), kNow);  // the cached read
  // Another request reads afresh.
  v1::GetSnapshotRequest support;
  support.set_process("support");
  ASSERT_TRUE(stub_->GetSnapshot(Context().get(), support, &second).ok());
  EXPECT_EQ(FromProto(second.as_of()), kNow + absl::Minutes(1));
  // Three calls served, two reads: sales once (then cached), support once.
  EXPECT_EQ(metrics_.calls(Method::kGetSnapshot, Result::kServed), 3u);
  EXPECT_EQ(metrics_.builds(), 2u);
}

TEST_F(KpiServiceTest, WithoutCacheEveryCallReads) {
  StartServer();  // snapshot_cache_ttl 0
  v1::Snapshot snapshot;
  ASSERT_TRUE(stub_->GetSnapshot(Context().get(), v1::GetSnapshotRequest(), &snapshot).ok());
  clock_.Set(kNow + absl::Minutes(1));
  ASSERT_TRUE(stub_->GetSnapshot(Context().get(), v1::GetSnapshotRequest(), &snapshot).ok());
  EXPECT_EQ(FromProto(snapshot.as_of()), kNow + absl::Minutes(1));
}

TEST_F(KpiServiceTest, CallsBeyondTheRateWaitTheirTurnOrAreRefused) {
  limits_.snapshot_calls_per_second = 1;  // a burst of 1, then a turn a second
  limits_.max_queued_snapshot_calls = 1;
  StartServer();
  v1::Snapshot snapshot;
  ASSERT_TRUE(stub_->GetSnapshot(Context().get(), v1::GetSnapshotRequest(), &snapshot).ok());
  // The next call waits for the turn a second later ...
  std::thread waiting([&] {
    v1::Snapshot s;
    EXPECT_TRUE(stub_->GetSnapshot(Context().get(), v1::GetSnapshotRequest(), &s).ok());
  });
  for (absl::Time give_up = absl::Now() + absl::Seconds(10);
       server_->service().waiting_snapshot_calls() == 0 && absl::Now() < give_up;) {
    std::this_thread::yield();
  }
  EXPECT_EQ(server_->service().waiting_snapshot_calls(), 1);
  // ... and while it does, one more is refused at once.
  grpc::Status queued = stub_->GetSnapshot(Context().get(), v1::GetSnapshotRequest(), &snapshot);
  EXPECT_EQ(queued.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(queued.error_message(), HasSubstr("too many GetSnapshot calls waiting"));
  waiting.join();
  // The next turn is a second away: beyond a 200 ms deadline it is refused
  // at once, not left to time out.
  grpc::Status late = stub_->GetSnapshot(Context(absl::Milliseconds(200)).get(),
                                         v1::GetSnapshotRequest(), &snapshot);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(late.error_message(), HasSubstr("after the call's deadline"));
  // A bad request is told so at once, whatever the queue.
  v1::GetSnapshotRequest bad;
  bad.set_process("nope");
  EXPECT_EQ(stub_->GetSnapshot(Context().get(), bad, &snapshot).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // Served: the first and the one that waited; refused: the queued one and
  // the late one; invalid: the bad one. One call waited for its turn.
  EXPECT_EQ(metrics_.calls(Method::kGetSnapshot, Result::kServed), 2u);
  EXPECT_EQ(metrics_.calls(Method::kGetSnapshot, Result::kRefused), 2u);
  EXPECT_EQ(metrics_.calls(Method::kGetSnapshot, Result::kInvalid), 1u);
  EXPECT_EQ(metrics_.calls(Method::kGetSnapshot, Result::kDeadlineExceeded), 0u);
  EXPECT_EQ(metrics_.paced(), 1u);
  // As scraped.
  bool found = false;
  for (const prometheus::MetricFamily& f : metrics_.Collect()) {
    if (f.name != "kpid_grpc_snapshot_calls_total") continue;
    for (const prometheus::ClientMetric& m : f.metric) {
      if (m.label.size() == 2 && m.label[0].value == "GetSnapshot" &&
          m.label[1].value == "refused") {
        EXPECT_EQ(m.counter.value, 2);
        found = true;
      }
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(KpiServiceTest, PortInUseFailsToStart) {
  StartServer();
  ApiServer::Options options;
  const std::string taken = "127.0.0.1:" + std::to_string(server_->port());
  options.listen = taken;
  options.service.snapshots = reader_.get();
  auto second = ApiServer::Start(std::move(options));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().message(), "grpc: cannot listen on " + taken);
}

}  // namespace
}  // namespace kpid::api

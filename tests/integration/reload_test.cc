// Hot reload end to end: a real kpid on its embedded broker, reloaded by
// SIGHUP and by POST /-/reload over real HTTP. Rules are added and removed
// live; a broken rule file and an engine-shaping change are refused with the
// running rules still evaluated; a stage added and a process removed live
// keep every kept count exactly; an Alertmanager added by a reload (a real
// one) gets the firing alert at once and the resolve of a removed rule;
// /-/reload can require a bearer token.
//
// The rules compare the current backlog, which has a value with or without
// events: `backlog >= 0` holds at once (firing, for 0), `backlog > 0` once a
// case is in the stage.
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kpid/v1/event.pb.h"
#include "tests/testing/alertmanager.h"
#include "tests/testing/kafka_client.h"
#include "tests/testing/process.h"

namespace kpid::testing {
namespace {

using kpid::v1::ProcessEvent;
using ::testing::HasSubstr;

constexpr int64_t kT0 = 1772409600;  // 2026-03-02T00:00:00Z
constexpr absl::Duration kWait = absl::Seconds(20);

constexpr char kConfig[] = R"(
kafka:
  brokers: embedded
  topic: events
  partitions: 1
  bootstrap_file: $DIR/bootstrap
http: {listen: "127.0.0.1:$PORT"$TOKEN}
grpc: {listen: "127.0.0.1:0"}
clock: event
windows: [1h]
retention: 1d
processes:
  - id: sales
    stages: [{id: lead, sla: 1h}, {id: quote, sla: 1d}]
rules: ["rules/*.yaml"]
)";

// An alert on `stage`'s backlog; `op` ">=" fires at once, ">" with a case there.
std::string Rule(const std::string& name, const std::string& stage, const std::string& op) {
  return absl::StrCat("groups:\n  - name: ", name, "\n    rules:\n      - alert: ", name,
                      "\n        process: sales\n        stage: ", stage,
                      "\n        kpi: backlog\n        op: \"", op, "\"\n        threshold: 0\n");
}

std::string Firing(const std::string& name, const std::string& stage) {
  return absl::StrCat("kpid_alerts{alertname=\"", name, "\",process=\"sales\",stage=\"", stage,
                      "\",state=\"firing\"}");
}

class ReloadTest : public ::testing::Test {
 protected:
  // Writes the rule files and the config (with a reload token file, next
  // to it, holding `token` when not empty), starts kpid and waits until it
  // is ready.
  void Start(const std::map<std::string, std::string>& rules, const std::string& token = "") {
    dir_ = MakeTempDir("reload");
    port_ = FreePort();
    if (!token.empty()) {
      WriteFileOrDie(dir_ + "/reload.token", token + "\n");
      token_key_ = ", reload_token_file: reload.token";  // relative to the config
    }
    ASSERT_EQ(::mkdir((dir_ + "/rules").c_str(), 0755), 0);
    for (const auto& [name, text] : rules) WriteRules(name, text);
    // FreePort's port can be taken before kpid binds it (by kpid's own
    // embedded broker, or a neighbour): then kpid exits at once, and another
    // port is tried.
    for (int attempt = 0; attempt < 3; ++attempt) {
      WriteConfig(kConfig);
      kpid_ = std::make_unique<Subprocess>(
          std::vector<std::string>{KPID_BINARY, "--config", dir_ + "/kpid.yaml"},
          dir_ + "/kpid.log");
      const bool ready = WaitFor(
          [&] { return !kpid_->running() || HttpGet(port_, "/readyz").status == 200; }, kWait);
      if (ready && kpid_->running()) return;
      if (!absl::StrContains(Log(), "http: cannot listen")) break;
      kpid_.reset();
      port_ = FreePort();
    }
    kpid_.reset();
    FAIL() << "kpid did not become ready\n" << Log();
  }

  void TearDown() override {
    if (kpid_ == nullptr) return;
    kpid_->Signal(SIGTERM);
    EXPECT_EQ(kpid_->Wait(absl::Seconds(10)), 0) << Log();
  }

  void WriteConfig(const std::string& text) {
    WriteFileOrDie(dir_ + "/kpid.yaml", absl::StrReplaceAll(text, {{"$DIR", dir_},
                                                                   {"$PORT", absl::StrCat(port_)},
                                                                   {"$TOKEN", token_key_}}));
  }
  void WriteRules(const std::string& name, const std::string& text) {
    WriteFileOrDie(dir_ + "/rules/" + name, text);
  }

  MetricSamples Metrics() { return ParseMetrics(HttpGet(port_, "/metrics").body); }
  double Metric(const std::string& series) { return Sample(Metrics(), series); }
  bool WaitForMetric(const std::string& series, double value) {
    return WaitFor([&] { return Metric(series) == value; }, kWait);
  }
  std::string Log() { return ReadFileOrEmpty(dir_ + "/kpid.log"); }

  std::string dir_;
  int port_ = 0;
  std::string token_key_;
  std::unique_ptr<Subprocess> kpid_;
};

TEST_F(ReloadTest, RulesAddedBySighupAndRemovedByHttpReload) {
  ASSERT_NO_FATAL_FAILURE(Start({{"a.yaml", Rule("Old", "lead", ">=")}}));
  ASSERT_TRUE(WaitForMetric(Firing("Old", "lead"), 1)) << Log();
  // The start counts as the first successful load.
  EXPECT_EQ(Metric("kpid_config_last_reload_successful"), 1);
  const double started_at = Metric("kpid_config_last_reload_success_timestamp_seconds");
  EXPECT_GT(started_at, 0);

  // Added with SIGHUP.
  WriteRules("b.yaml", Rule("New", "quote", ">="));
  kpid_->Signal(SIGHUP);
  ASSERT_TRUE(WaitForMetric(Firing("New", "quote"), 1)) << Log();
  MetricSamples m = Metrics();
  EXPECT_EQ(Sample(m, Firing("Old", "lead")), 1);  // untouched
  EXPECT_EQ(Sample(m, "kpid_config_reloads_total{result=\"success\"}"), 1);
  EXPECT_EQ(Sample(m, "kpid_config_reloads_total{result=\"failure\"}"), 0);
  EXPECT_EQ(Sample(m, "kpid_config_last_reload_successful"), 1);
  EXPECT_GE(Sample(m, "kpid_config_last_reload_success_timestamp_seconds"), started_at);

  // Removed with POST /-/reload: gone by the time the answer comes.
  ASSERT_EQ(std::remove((dir_ + "/rules/a.yaml").c_str()), 0);
  HttpResponse reply = HttpPost(port_, "/-/reload");
  EXPECT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(reply.body, "ok\n");
  m = Metrics();
  EXPECT_EQ(Sample(m, Firing("Old", "lead")), -1);
  EXPECT_EQ(Sample(m, Firing("New", "quote")), 1);
  EXPECT_EQ(Sample(m, "kpid_config_reloads_total{result=\"success\"}"), 2);

  EXPECT_EQ(HttpGet(port_, "/-/reload").status, 405);
}

TEST_F(ReloadTest, ABadReloadIsRefusedAndTheRunningRulesStayInForce) {
  ASSERT_NO_FATAL_FAILURE(Start({{"a.yaml", Rule("QuoteBacklog", "quote", ">")}}));
  const std::string good_config = ReadFileOrEmpty(dir_ + "/kpid.yaml");

  // A rule file that does not parse: 400 with where, gauge 0.
  WriteRules("a.yaml", absl::StrReplaceAll(Rule("QuoteBacklog", "quote", ">"),
                                           {{"threshold: 0", "threshold: zero"}}));
  HttpResponse reply = HttpPost(port_, "/-/reload");
  EXPECT_EQ(reply.status, 400);
  // Line 9 of the rule file: "        threshold: zero", the value at column 20.
  EXPECT_THAT(reply.body, HasSubstr(dir_ + "/rules/a.yaml:9:20: "));
  MetricSamples m = Metrics();
  EXPECT_EQ(Sample(m, "kpid_config_last_reload_successful"), 0);
  EXPECT_EQ(Sample(m, "kpid_config_reloads_total{result=\"failure\"}"), 1);
  // By SIGHUP too: refused, logged with the location, kpid still up.
  kpid_->Signal(SIGHUP);
  ASSERT_TRUE(WaitForMetric("kpid_config_reloads_total{result=\"failure\"}", 2)) << Log();
  EXPECT_THAT(Log(), HasSubstr("a.yaml:9:20: "));

  // A restart-only change, with valid rules and a live-reshapable change
  // alongside: refused as a whole, naming the key.
  WriteRules("a.yaml", Rule("QuoteBacklog", "quote", ">"));
  WriteFileOrDie(dir_ + "/kpid.yaml",
                 absl::StrReplaceAll(good_config, {{"{id: quote, sla: 1d}", "{id: quote, sla: 2d}"},
                                                   {"windows: [1h]", "windows: [1h, 1d]"}}));
  reply = HttpPost(port_, "/-/reload");
  EXPECT_EQ(reply.status, 400);
  EXPECT_THAT(reply.body, HasSubstr("kpid.yaml: windows changed: restart kpid to apply"));
  EXPECT_EQ(Metric("kpid_config_last_reload_successful"), 0);
  EXPECT_EQ(Metric("kpid_reload_dropped_total{what=\"process\"}"), 0);

  // The rules kpid started with still evaluate: a case entering quote fires
  // QuoteBacklog (backlog 1 > 0).
  const std::string brokers(absl::StripSuffix(ReadFileOrEmpty(dir_ + "/bootstrap"), "\n"));
  TestProducer producer(brokers);
  ProcessEvent e;
  e.set_event_id("e1");
  e.set_process("sales");
  e.set_case_id("C1");
  e.set_kind(ProcessEvent::STAGE_ENTERED);
  e.set_stage("quote");
  e.mutable_occurred_at()->set_seconds(kT0);
  producer.Send("events", {"C1", e.SerializeAsString(), {}, -1});
  ASSERT_EQ(producer.Flush(kWait), 0);
  ASSERT_TRUE(WaitForMetric(Firing("QuoteBacklog", "quote"), 1)) << Log();

  // Put back: the next reload applies, the gauge is 1 again.
  WriteFileOrDie(dir_ + "/kpid.yaml", good_config);
  reply = HttpPost(port_, "/-/reload");
  EXPECT_EQ(reply.status, 200) << reply.body;
  m = Metrics();
  EXPECT_EQ(Sample(m, "kpid_config_last_reload_successful"), 1);
  EXPECT_EQ(Sample(m, "kpid_config_reloads_total{result=\"success\"}"), 1);
  EXPECT_EQ(Sample(m, Firing("QuoteBacklog", "quote")), 1);  // unchanged rule: still firing
}

// Two processes; the reloads below add a stage, remove support, then
// remove a stage holding open cases.
constexpr char kTwoProcesses[] = R"(
kafka:
  brokers: embedded
  topic: events
  partitions: 1
  bootstrap_file: $DIR/bootstrap
http: {listen: "127.0.0.1:$PORT"$TOKEN}
grpc: {listen: "127.0.0.1:0"}
clock: event
windows: [1h]
retention: 1d
processes:
  - id: sales
    stages: [{id: lead, sla: 1h}, {id: quote, sla: 1d}]
  - id: support
    stages: [{id: open, sla: 1h}]
rules: ["rules/*.yaml"]
)";

std::string Stage(const std::string& family, const std::string& process, const std::string& stage) {
  return absl::StrCat(family, "{process=\"", process, "\",stage=\"", stage, "\"}");
}
std::string Dropped(const std::string& what) {
  return absl::StrCat("kpid_reload_dropped_total{what=\"", what, "\"}");
}

TEST_F(ReloadTest, StagesAndProcessesChangedLiveKeepEveryKeptCountExactly) {
  ASSERT_NO_FATAL_FAILURE(Start({{"q.yaml", Rule("QuoteBacklog", "quote", ">")}}));
  WriteConfig(kTwoProcesses);
  ASSERT_EQ(HttpPost(port_, "/-/reload").status, 200);  // support added: a reshape too
  const std::string brokers(absl::StripSuffix(ReadFileOrEmpty(dir_ + "/bootstrap"), "\n"));
  TestProducer producer(brokers);
  int sent = 0;
  auto send = [&](const std::string& process, const std::string& case_id, const std::string& stage,
                  int64_t t) {
    ProcessEvent e;
    e.set_event_id(absl::StrCat("e", ++sent));
    e.set_process(process);
    e.set_case_id(case_id);
    e.set_kind(ProcessEvent::STAGE_ENTERED);
    e.set_stage(stage);
    e.mutable_occurred_at()->set_seconds(kT0 + t);
    producer.Send("events", {case_id, e.SerializeAsString(), {}, -1});
    ASSERT_EQ(producer.Flush(kWait), 0);
  };
  send("sales", "C1", "lead", 0);
  send("sales", "C2", "lead", 10);
  send("sales", "C1", "quote", 100);
  send("support", "S1", "open", 200);
  // A stage the running config does not have: rejected (unknown_stage).
  send("sales", "C9", "won", 250);
  ASSERT_TRUE(WaitForMetric(Stage("kpid_stage_entered_total", "support", "open"), 1)) << Log();
  ASSERT_TRUE(WaitForMetric("kpid_events_rejected_total{reason=\"unknown_stage\"}", 1)) << Log();
  // C1 in quote; the rules evaluate on their own thread, after the event.
  ASSERT_TRUE(WaitForMetric(Firing("QuoteBacklog", "quote"), 1)) << Log();
  MetricSamples m = Metrics();
  EXPECT_EQ(Sample(m, Stage("kpid_stage_entered_total", "sales", "lead")), 2);   // C1 C2
  EXPECT_EQ(Sample(m, Stage("kpid_stage_entered_total", "sales", "quote")), 1);  // C1

  // SIGHUP: stage won added, process support removed (S1 open in it).
  WriteConfig(absl::StrReplaceAll(
      kTwoProcesses, {{"{id: quote, sla: 1d}]", "{id: quote, sla: 1d}, {id: won, sla: 1h}]"},
                      {"  - id: support\n    stages: [{id: open, sla: 1h}]\n", ""}}));
  kpid_->Signal(SIGHUP);
  ASSERT_TRUE(WaitForMetric("kpid_config_reloads_total{result=\"success\"}", 2)) << Log();
  m = Metrics();
  // Kept exactly.
  EXPECT_EQ(Sample(m, Stage("kpid_stage_entered_total", "sales", "lead")), 2);
  EXPECT_EQ(Sample(m, Stage("kpid_stage_entered_total", "sales", "quote")), 1);
  EXPECT_EQ(Sample(m, "kpid_process_open_cases{process=\"sales\"}"), 2);  // C1 C2
  // New: starts at 0.
  EXPECT_EQ(Sample(m, Stage("kpid_stage_entered_total", "sales", "won")), 0);
  // Removed: gone, and counted: the process, S1, support's one series
  // (no dimensions configured: the all-empty combination).
  EXPECT_EQ(Sample(m, Stage("kpid_stage_entered_total", "support", "open")), -1);
  EXPECT_EQ(Sample(m, "kpid_process_open_cases{process=\"support\"}"), -1);
  EXPECT_EQ(Sample(m, Dropped("process")), 1);
  EXPECT_EQ(Sample(m, Dropped("stage")), 0);
  EXPECT_EQ(Sample(m, Dropped("open_cases")), 1);
  EXPECT_EQ(Sample(m, Dropped("series")), 1);
  // Ingest's counts carry over: 5 messages, 4 accepted, 1 rejected.
  EXPECT_EQ(Sample(m, "kpid_events_consumed_total"), 4);
  EXPECT_EQ(Sample(m, Firing("QuoteBacklog", "quote")), 1);  // the rule is kept firing

  // Events after the reload: the new stage counts them.
  send("sales", "C1", "won", 300);
  send("sales", "C3", "lead", 400);
  ASSERT_TRUE(WaitForMetric(Stage("kpid_stage_entered_total", "sales", "won"), 1)) << Log();
  ASSERT_TRUE(WaitForMetric(Stage("kpid_stage_entered_total", "sales", "lead"), 3)) << Log();
  EXPECT_EQ(Metric("kpid_process_open_cases{process=\"sales\"}"), 3);  // C1 (won) C2 C3 (lead)

  // POST /-/reload: stage lead removed while C2 and C3 are open in it.
  WriteConfig(absl::StrReplaceAll(kTwoProcesses,
                                  {{"[{id: lead, sla: 1h}, {id: quote, sla: 1d}]",
                                    "[{id: quote, sla: 1d}, {id: won, sla: 1h}]"},
                                   {"  - id: support\n    stages: [{id: open, sla: 1h}]\n", ""}}));
  HttpResponse reply = HttpPost(port_, "/-/reload");
  ASSERT_EQ(reply.status, 200) << reply.body;
  m = Metrics();
  EXPECT_EQ(Sample(m, Stage("kpid_stage_entered_total", "sales", "lead")), -1);
  EXPECT_EQ(Sample(m, Stage("kpid_stage_entered_total", "sales", "quote")), 1);
  EXPECT_EQ(Sample(m, Stage("kpid_stage_entered_total", "sales", "won")), 1);
  EXPECT_EQ(Sample(m, "kpid_process_open_cases{process=\"sales\"}"), 1);  // C1
  EXPECT_EQ(Sample(m, Dropped("process")), 1);
  EXPECT_EQ(Sample(m, Dropped("stage")), 1);       // lead
  EXPECT_EQ(Sample(m, Dropped("open_cases")), 3);  // S1, then C2 and C3
  EXPECT_EQ(Sample(m, "kpid_config_last_reload_successful"), 1);

  // Refused: a restart-only key. Nothing changes, the gauge is 0.
  const std::string running = ReadFileOrEmpty(dir_ + "/kpid.yaml");
  WriteFileOrDie(dir_ + "/kpid.yaml",
                 absl::StrReplaceAll(running, {{"windows: [1h]", "windows: [2h]"},
                                               {"{id: won, sla: 1h}", "{id: lost, sla: 1h}"}}));
  reply = HttpPost(port_, "/-/reload");
  EXPECT_EQ(reply.status, 400);
  EXPECT_THAT(reply.body, HasSubstr("windows changed: restart kpid to apply"));
  m = Metrics();
  EXPECT_EQ(Sample(m, "kpid_config_last_reload_successful"), 0);
  EXPECT_EQ(Sample(m, Stage("kpid_stage_entered_total", "sales", "won")), 1);
  EXPECT_EQ(Sample(m, Stage("kpid_stage_entered_total", "sales", "lost")), -1);
  EXPECT_EQ(Sample(m, Dropped("stage")), 1);
}

TEST_F(ReloadTest, AnAlertmanagerAddedByReloadGetsTheFiringAlertAndItsResolve) {
  ASSERT_NO_FATAL_FAILURE(Start({{"a.yaml", Rule("Old", "lead", ">=")}}));
  ASSERT_TRUE(WaitForMetric(Firing("Old", "lead"), 1)) << Log();
  Webhook webhook;
  AlertmanagerProcess alertmanager(dir_, webhook.port());
  std::string why;
  ASSERT_TRUE(alertmanager.Start(&why)) << why;

  // The notifier is rebuilt and the firing alert re-sent at once (the resend
  // interval is a minute: without the re-send it would come later).
  WriteConfig(absl::StrCat(kConfig, "alertmanagers: [\"", alertmanager.url(), "\"]\n"));
  HttpResponse reply = HttpPost(port_, "/-/reload");
  ASSERT_EQ(reply.status, 200) << reply.body;
  const std::map<std::string, std::string> labels = {
      {"alertname", "Old"}, {"process", "sales"}, {"stage", "lead"}};
  ASSERT_TRUE(WaitFor([&] { return webhook.Find("firing", labels) != nullptr; }, kWait))
      << Log() << alertmanager.Log();

  // The rule removed: its firing alert is resolved in Alertmanager now, not
  // when its endsAt (4 minutes ahead) runs out.
  ASSERT_EQ(std::remove((dir_ + "/rules/a.yaml").c_str()), 0);
  kpid_->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return webhook.Find("resolved", labels) != nullptr; }, kWait))
      << Log() << alertmanager.Log();
  EXPECT_EQ(webhook.Count("firing", labels), 1);
  EXPECT_EQ(
      Metric("kpid_notifications_total{receiver=\"" + alertmanager.url() + "\",result=\"sent\"}"),
      2);  // the re-send and the resolve
}

TEST_F(ReloadTest, HttpReloadNeedsTheBearerTokenWhenConfigured) {
  ASSERT_NO_FATAL_FAILURE(Start({{"a.yaml", Rule("Old", "lead", ">=")}}, "s3cret"));
  HttpResponse reply = HttpPost(port_, "/-/reload");
  EXPECT_EQ(reply.status, 401);
  EXPECT_EQ(HttpPost(port_, "/-/reload", {{"Authorization", "Bearer s3creT"}}).status, 401);
  EXPECT_EQ(HttpPost(port_, "/-/reload", {{"Authorization", "Basic czNjcmV0"}}).status, 401);
  // Refused before any reload was tried.
  EXPECT_EQ(Metric("kpid_config_reloads_total{result=\"success\"}"), 0);
  EXPECT_EQ(Metric("kpid_config_reloads_total{result=\"failure\"}"), 0);

  reply = HttpPost(port_, "/-/reload", {{"Authorization", "Bearer s3cret"}});
  EXPECT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(Metric("kpid_config_reloads_total{result=\"success\"}"), 1);
  // SIGHUP needs no token: whoever can signal kpid can restart it anyway.
  kpid_->Signal(SIGHUP);
  ASSERT_TRUE(WaitForMetric("kpid_config_reloads_total{result=\"success\"}", 2)) << Log();
}

}  // namespace
}  // namespace kpid::testing

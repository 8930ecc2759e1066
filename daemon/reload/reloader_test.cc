#include "daemon/reload/reloader.h"

#include <filesystem>
#include <fstream>
#include <optional>

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kpid::reload {
namespace {

using ::testing::HasSubstr;

constexpr char kConfig[] = R"(
kafka: {brokers: embedded, topic: events, partitions: 1}
http: {listen: "127.0.0.1:9464"$TOKEN}
windows: [1h]
retention: 1d
processes:
  - id: sales
    stages: [{id: lead, sla: 1h}, {id: quote, sla: 1d}]
rules: ["*.rules.yaml"]
)";

constexpr char kRules[] = R"(groups:
  - name: g
    rules:
      - {alert: LeadBacklog, process: sales, stage: lead, kpi: backlog, op: ">", threshold: 5}
)";

class ReloaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/reloader_test_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::create_directories(dir_);
  }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
  }
  void WriteConfig(const std::string& token_key = "") {
    Write("kpid.yaml", absl::StrReplaceAll(kConfig, {{"$TOKEN", token_key}}));
  }

  // `can_reshape`: the daemon's hook that reshapes the engines is given.
  void Start(bool can_reshape = true) {
    absl::StatusOr<LoadedConfig> loaded = LoadConfigAndRules(dir_ + "/kpid.yaml");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    Reloader::Options options{
        .config_path = dir_ + "/kpid.yaml",
        .running = *std::move(loaded),
        .replace_rules =
            [this](alert::RuleSet rules) {
              steps_.push_back("rules");
              applied_ = std::move(rules);
              return alert::RuleReplacement{};
            },
        .replace_alerting =
            [this](const model::Config& next) {
              steps_.push_back("alerting");
              alerting_calls_.push_back(next.alertmanagers);
              return alerting_status_;
            },
        .now = [this] { return now_; },
    };
    if (can_reshape) {
      options.reshape_engines = [this](std::shared_ptr<const model::Config> next) {
        steps_.push_back("reshape");
        reshaped_to_.push_back(std::move(next));
        return reshape_status_;
      };
    }
    reloader_ = std::make_unique<Reloader>(std::move(options));
  }

  // The value of a sample of Collect(); nullopt when absent.
  std::optional<double> Metric(const std::string& name, const std::string& result = "") {
    for (const auto& family : reloader_->Collect()) {
      if (family.name != name) continue;
      for (const auto& m : family.metric) {
        if (!result.empty() && (m.label.empty() || m.label[0].value != result)) continue;
        return family.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
      }
    }
    return std::nullopt;
  }

  std::string dir_;
  absl::Time now_ = absl::FromUnixSeconds(1800000000);
  std::optional<alert::RuleSet> applied_;
  std::vector<std::vector<std::string>> alerting_calls_;
  absl::Status alerting_status_;
  std::vector<std::shared_ptr<const model::Config>> reshaped_to_;
  absl::Status reshape_status_;
  std::vector<std::string> steps_;  // the hooks called, in order
  std::unique_ptr<Reloader> reloader_;
};

TEST_F(ReloaderTest, AValidRuleChangeIsApplied) {
  WriteConfig();
  Write("a.rules.yaml", kRules);
  Start();
  // The start counts as the first successful load.
  EXPECT_EQ(Metric("kpid_config_last_reload_successful"), 1);
  EXPECT_EQ(Metric("kpid_config_last_reload_success_timestamp_seconds"), 1800000000);

  Write("b.rules.yaml", R"(groups:
  - name: h
    rules:
      - {alert: QuoteBacklog, process: sales, stage: quote, kpi: backlog, op: ">", threshold: 5}
)");
  now_ += absl::Seconds(30);
  ASSERT_TRUE(reloader_->Reload("test").ok());
  ASSERT_TRUE(applied_.has_value());
  EXPECT_EQ(applied_->rule_count(), 2u);
  EXPECT_EQ(Metric("kpid_config_last_reload_successful"), 1);
  EXPECT_EQ(Metric("kpid_config_last_reload_success_timestamp_seconds"), 1800000030);
  EXPECT_EQ(Metric("kpid_config_reloads_total", "success"), 1);
  EXPECT_EQ(Metric("kpid_config_reloads_total", "failure"), 0);
}

TEST_F(ReloaderTest, AnInvalidRuleFileIsRefusedWithItsLocation) {
  WriteConfig();
  Write("a.rules.yaml", kRules);
  Start();
  // Line 4 of the rules file; column 93, where its threshold value starts.
  Write("a.rules.yaml", absl::StrReplaceAll(kRules, {{"threshold: 5", "threshold: five"}}));
  now_ += absl::Seconds(30);
  absl::Status status = reloader_->Reload("test");
  EXPECT_THAT(std::string(status.message()), HasSubstr("a.rules.yaml:4:93: "));
  EXPECT_FALSE(applied_.has_value());
  EXPECT_EQ(Metric("kpid_config_last_reload_successful"), 0);
  EXPECT_EQ(Metric("kpid_config_last_reload_success_timestamp_seconds"), 1800000000);
  EXPECT_EQ(Metric("kpid_config_reloads_total", "failure"), 1);

  // Fixed: applied, the gauge back to 1.
  Write("a.rules.yaml", kRules);
  ASSERT_TRUE(reloader_->Reload("test").ok());
  EXPECT_EQ(Metric("kpid_config_last_reload_successful"), 1);
  EXPECT_EQ(Metric("kpid_config_last_reload_success_timestamp_seconds"), 1800000030);
}

TEST_F(ReloaderTest, ARestartOnlyChangeIsRefusedNamingTheKeys) {
  WriteConfig();
  Write("a.rules.yaml", kRules);
  Start();
  Write("kpid.yaml", absl::StrReplaceAll(kConfig, {{"$TOKEN", ""},
                                                   {"windows: [1h]", "windows: [1h, 1d]"},
                                                   {"topic: events", "topic: other"}}));
  absl::Status status = reloader_->Reload("test");
  EXPECT_EQ(status.message(),
            dir_ + "/kpid.yaml: kafka.topic, windows changed: restart kpid to apply");
  EXPECT_FALSE(applied_.has_value());
  EXPECT_TRUE(steps_.empty());
  EXPECT_EQ(Metric("kpid_config_last_reload_successful"), 0);
  // Reverted: the running config is still the original, so this applies.
  WriteConfig();
  EXPECT_TRUE(reloader_->Reload("test").ok());
  EXPECT_TRUE(reshaped_to_.empty());
}

TEST_F(ReloaderTest, AProcessChangeReshapesTheEnginesBeforeTheRulesAreReplaced) {
  WriteConfig();
  Write("a.rules.yaml", kRules);
  Start();
  // SLA changed, a stage added: applied live.
  Write("kpid.yaml", absl::StrReplaceAll(kConfig, {{"$TOKEN", ""},
                                                   {"{id: quote, sla: 1d}",
                                                    "{id: quote, sla: 2d}, {id: won, sla: 1h}"}}));
  ASSERT_TRUE(reloader_->Reload("test").ok());
  EXPECT_EQ(steps_, (std::vector<std::string>{"reshape", "rules"}));
  ASSERT_EQ(reshaped_to_.size(), 1u);
  ASSERT_EQ(reshaped_to_[0]->processes[0].stages.size(), 3u);
  EXPECT_EQ(reshaped_to_[0]->processes[0].stages[1].sla, absl::Hours(48));
  EXPECT_EQ(Metric("kpid_config_last_reload_successful"), 1);
  // The same config again: the engines keep their shape.
  ASSERT_TRUE(reloader_->Reload("test").ok());
  EXPECT_EQ(reshaped_to_.size(), 1u);

  // A reshape that fails refuses the reload; the rules stay.
  applied_.reset();
  reshape_status_ = absl::UnavailableError("kafka ingest is stopping");
  WriteConfig();
  absl::Status status = reloader_->Reload("test");
  EXPECT_EQ(status.message(), "reshaping the engines for processes: kafka ingest is stopping");
  EXPECT_FALSE(applied_.has_value());
  EXPECT_EQ(Metric("kpid_config_last_reload_successful"), 0);
}

TEST_F(ReloaderTest, WithoutAReshapeHookAProcessChangeNeedsARestart) {
  WriteConfig();
  Write("a.rules.yaml", kRules);
  Start(/*can_reshape=*/false);
  Write("kpid.yaml", absl::StrReplaceAll(kConfig, {{"$TOKEN", ""}, {"sla: 1d", "sla: 2d"}}));
  absl::Status status = reloader_->Reload("test");
  EXPECT_EQ(status.message(), dir_ + "/kpid.yaml: processes changed: restart kpid to apply");
  EXPECT_FALSE(applied_.has_value());
}

TEST_F(ReloaderTest, AlertDeliveryIsRebuiltOnlyWhenItChanged) {
  WriteConfig();
  Write("a.rules.yaml", kRules);
  Start();
  ASSERT_TRUE(reloader_->Reload("test").ok());
  EXPECT_TRUE(alerting_calls_.empty());  // unchanged: the notifier stays

  const std::string with_am = absl::StrReplaceAll(
      kConfig,
      {{"$TOKEN", ""}, {"rules: [", "alertmanagers: [\"http://127.0.0.1:9093\"]\nrules: ["}});
  Write("kpid.yaml", with_am);
  ASSERT_TRUE(reloader_->Reload("test").ok());
  ASSERT_EQ(alerting_calls_.size(), 1u);
  EXPECT_EQ(alerting_calls_[0], std::vector<std::string>{"http://127.0.0.1:9093"});
  ASSERT_TRUE(reloader_->Reload("test").ok());
  EXPECT_EQ(alerting_calls_.size(), 1u);  // the same again: not rebuilt

  // A delivery that cannot start refuses the reload before the rules.
  applied_.reset();
  alerting_status_ = absl::InternalError("cannot start");
  Write("kpid.yaml", absl::StrReplaceAll(with_am, {{"9093", "9094"}}));
  Write("b.rules.yaml", absl::StrReplaceAll(kRules, {{"LeadBacklog", "Other"}}));
  absl::Status status = reloader_->Reload("test");
  EXPECT_EQ(status.message(), "alert delivery: cannot start");
  EXPECT_FALSE(applied_.has_value());
  EXPECT_EQ(Metric("kpid_config_last_reload_successful"), 0);
  // The running config is still the one with 9093: retried on the next reload.
  alerting_status_ = absl::OkStatus();
  ASSERT_TRUE(reloader_->Reload("test").ok());
  EXPECT_EQ(alerting_calls_.size(), 3u);
  ASSERT_TRUE(applied_.has_value());
  EXPECT_EQ(applied_->rule_count(), 2u);
}

TEST_F(ReloaderTest, HttpNeedsTheBearerTokenWhenOneIsConfigured) {
  WriteConfig(", reload_token_file: token");
  Write("token", "s3cret\n");
  Write("a.rules.yaml", kRules);
  Start();
  EXPECT_EQ(reloader_->HandleHttp("").status, 401);
  EXPECT_EQ(reloader_->HandleHttp("Bearer wrong!").status, 401);
  EXPECT_FALSE(applied_.has_value());  // not even tried
  http::HttpReply ok = reloader_->HandleHttp("Bearer s3cret");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "ok\n");

  // A reload reads the token file again: the old token stops working.
  Write("token", "n3w\n");
  ASSERT_EQ(reloader_->HandleHttp("Bearer s3cret").status, 200);
  EXPECT_EQ(reloader_->HandleHttp("Bearer s3cret").status, 401);
  EXPECT_EQ(reloader_->HandleHttp("Bearer n3w").status, 200);

  // A refused reload answers 400 with the reason.
  Write("a.rules.yaml", "groups: [");
  http::HttpReply refused = reloader_->HandleHttp("Bearer n3w");
  EXPECT_EQ(refused.status, 400);
  EXPECT_THAT(refused.body, HasSubstr("a.rules.yaml:1:"));
}

TEST_F(ReloaderTest, WithoutATokenHttpNeedsNone) {
  WriteConfig();
  Write("a.rules.yaml", kRules);
  Start();
  EXPECT_EQ(reloader_->HandleHttp("").status, 200);
}

}  // namespace
}  // namespace kpid::reload

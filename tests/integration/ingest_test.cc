// End to end through real processes: kpid on its embedded broker, fed by
// kpi-loadgen and by a producer of bad messages; checked over HTTP (/metrics,
// /readyz) and by reading the dead-letter topic back.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "kpid/v1/event.pb.h"
#include "tests/testing/kafka_client.h"
#include "tests/testing/kpid_process.h"
#include "tests/testing/process.h"

namespace kpid::testing {
namespace {

using kpid::v1::ProcessEvent;

constexpr char kConfigTemplate[] = R"(
kafka:
  brokers: embedded
  topic: events
  group_id: kpid-it
  partitions: 4
  bootstrap_file: $DIR/bootstrap
  dead_letter_topic: events-dlq
  max_message_bytes: 2048
http: {listen: "127.0.0.1:$PORT"}
grpc: {listen: "127.0.0.1:0"}
clock: event
dimensions: {names: [region]}
processes:
  - id: lead_to_cash
    stages:
      - {id: lead, sla: 1h}
      - {id: quote, sla: 2d}
    simulate:
      arrivals_per_hour: 600
      attributes: {region: [emea, amer]}
)";

std::string GoodJson(const std::string& id) {
  return absl::StrCat(
      R"({"eventId":")", id, R"(","process":"lead_to_cash","caseId":"c-)", id,
      R"(","kind":"STAGE_ENTERED","stage":"lead","occurredAt":"2026-01-01T00:00:00Z"})");
}

ProcessEvent GoodProto(const std::string& id) {
  ProcessEvent e;
  e.set_event_id(id);
  e.set_process("lead_to_cash");
  e.set_case_id("c-" + id);
  e.set_kind(ProcessEvent::STAGE_ENTERED);
  e.set_stage("lead");
  e.mutable_occurred_at()->set_seconds(1767225600);
  return e;
}

// One kind of bad message: the reason kpid must give, how many, and how to
// make the i-th one.
struct BadKind {
  std::string reason;
  int count;
  std::function<KafkaRecord(int)> make;
};

std::vector<BadKind> BadKinds() {
  auto value = [](std::string v) {
    KafkaRecord r;
    r.value = std::move(v);
    return r;
  };
  return {
      {"empty", 11, [&](int) { return value(""); }},
      {"oversized", 7,
       [&](int i) {
         return value(absl::StrCat(GoodJson(absl::StrCat("big", i)), std::string(3000, ' ')));
       }},
      {"malformed_protobuf", 53,
       [&](int i) { return value(absl::StrCat("\xff\xfe garbage ", i, "\x07\x01")); }},
      {"malformed_json", 41,
       [&](int i) {
         switch (i % 5) {
           case 0:
             return value(absl::StrCat("{\"eventId\": ", i, "}"));  // wrong type
           case 1:
             return value("{\"eventId\": \"x\", ");  // truncated
           case 2: {
             // A protobuf value declared JSON by its header.
             KafkaRecord r = value(GoodProto(absl::StrCat("hdr", i)).SerializeAsString());
             r.headers["content-type"] = "application/json";
             return r;
           }
           case 3: {
             // A good protobuf value whose first bytes read "\n{" (event_id,
             // 123 bytes long): its first non-blank byte is `{`, so it is
             // JSON, whatever its content-type says.
             std::string id = absl::StrCat("pb7b", i);
             id.resize(123, 'x');
             KafkaRecord r = value(GoodProto(id).SerializeAsString());
             EXPECT_EQ(r.value.substr(0, 2), "\n{");
             EXPECT_TRUE(ProcessEvent().ParseFromString(r.value));
             r.headers["content-type"] = "application/x-protobuf";
             return r;
           }
           default: {
             // A good protobuf value after an empty group of field 15, whose
             // start tag is 0x7b, `{`: protobuf would skip the group.
             KafkaRecord r = value(
                 absl::StrCat("\x7b\x7c", GoodProto(absl::StrCat("grp", i)).SerializeAsString()));
             EXPECT_TRUE(ProcessEvent().ParseFromString(r.value));
             if (i % 2 == 0) r.headers["content-type"] = "application/x-protobuf";
             return r;
           }
         }
       }},
      {"missing_field", 29,
       [&](int i) {
         ProcessEvent e = GoodProto(absl::StrCat("mf", i));
         if (i % 2 == 0)
           e.clear_case_id();
         else
           e.clear_occurred_at();
         return value(e.SerializeAsString());
       }},
      {"unknown_kind", 5,
       [&](int i) {
         ProcessEvent e = GoodProto(absl::StrCat("uk", i));
         e.set_kind(static_cast<ProcessEvent::Kind>(9));
         return value(e.SerializeAsString());
       }},
      {"invalid_timestamp", 6,
       [&](int i) {
         ProcessEvent e = GoodProto(absl::StrCat("ts", i));
         e.mutable_occurred_at()->set_nanos(2000000000);
         return value(e.SerializeAsString());
       }},
      {"invalid_value", 4,
       [&](int i) {
         return value(absl::StrCat(
             R"({"eventId":"nan)", i,
             R"(","process":"lead_to_cash","caseId":"c","kind":"COST","amount":"NaN","occurredAt":"2026-01-01T00:00:00Z"})"));
       }},
      {"unknown_process", 23,
       [&](int i) {
         ProcessEvent e = GoodProto(absl::StrCat("up", i));
         e.set_process("payroll");
         return value(i % 2 ? e.SerializeAsString()
                            : absl::StrReplaceAll(GoodJson(absl::StrCat("up", i)),
                                                  {{"lead_to_cash", "payroll"}}));
       }},
      {"unknown_stage", 17,
       [&](int i) {
         ProcessEvent e = GoodProto(absl::StrCat("us", i));
         e.set_stage("negotiation");
         return value(e.SerializeAsString());
       }},
  };
}

class IngestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kpid_ = std::make_unique<KpidProcess>(KPID_BINARY, MakeTempDir("ingest"), kConfigTemplate);
    ASSERT_TRUE(kpid_->Start()) << kpid_->Log();
    brokers_ = kpid_->EmbeddedBrokers();
    port_ = kpid_->http_port();
  }

  MetricSamples Scrape() { return kpid_->Metrics(); }

  std::unique_ptr<KpidProcess> kpid_;
  int port_ = 0;
  std::string brokers_;
};

TEST_F(IngestTest, CountsEveryGoodEventAndDeadLettersEveryBadOne) {
  EXPECT_EQ(HttpGet(port_, "/healthz").status, 200);

  // Good traffic: the load generator, once as protobuf and once as JSON.
  constexpr int kProtoEvents = 3000, kJsonEvents = 1500;
  std::string out;
  ASSERT_EQ(RunCommand({LOADGEN_BINARY, "--config", kpid_->config_path(), "--brokers", brokers_,
                        "--events", absl::StrCat(kProtoEvents), "--seed", "11"},
                       &out),
            0)
      << out;
  ASSERT_EQ(RunCommand({LOADGEN_BINARY, "--config", kpid_->config_path(), "--brokers", brokers_,
                        "--events", absl::StrCat(kJsonEvents), "--seed", "12", "--format", "json",
                        "--start", "2026-01-02T00:00:00Z"},
                       &out),
            0)
      << out;

  // JSON values with a protobuf content-type: JSON by their first byte.
  constexpr int kJsonProtoHeaderEvents = 9;
  {
    TestProducer producer(brokers_);
    for (int i = 0; i < kJsonProtoHeaderEvents; ++i) {
      KafkaRecord record;
      record.key = absl::StrCat("json-pb-header-", i);
      record.value = GoodJson(record.key);
      record.headers["content-type"] = "application/x-protobuf";
      producer.Send("events", record);
    }
    ASSERT_EQ(producer.Flush(absl::Seconds(30)), 0);
  }
  constexpr int kGoodEvents = kProtoEvents + kJsonEvents + kJsonProtoHeaderEvents;

  // Bad traffic, each message keyed so its dead letter can be matched.
  std::map<std::string, std::pair<std::string, std::string>> sent_bad;  // key -> (reason, value)
  std::map<std::string, int> expected_by_reason;
  {
    TestProducer producer(brokers_);
    for (const BadKind& kind : BadKinds()) {
      for (int i = 0; i < kind.count; ++i) {
        KafkaRecord record = kind.make(i);
        record.key = absl::StrCat("bad-", kind.reason, "-", i);
        producer.Send("events", record);
        sent_bad[record.key] = {kind.reason, record.value};
      }
      expected_by_reason[kind.reason] = kind.count;
    }
    ASSERT_EQ(producer.Flush(absl::Seconds(30)), 0);
  }
  const int bad_total = static_cast<int>(sent_bad.size());

  MetricSamples m;
  const bool drained = WaitFor(
      [&] {
        m = Scrape();
        double rejected = 0;
        for (const auto& [reason, n] : expected_by_reason) {
          rejected += std::max(
              0.0, Sample(m, absl::StrCat("kpid_events_rejected_total{reason=\"", reason, "\"}")));
        }
        return Sample(m, "kpid_events_consumed_total") >= kGoodEvents && rejected >= bad_total &&
               Sample(m, "kpid_dead_letter_messages_total{result=\"delivered\"}") >= bad_total;
      },
      absl::Seconds(60));
  ASSERT_TRUE(drained) << kpid_->Log();
  // Settle, then check nothing more than expected arrived.
  absl::SleepFor(absl::Milliseconds(500));
  m = Scrape();

  EXPECT_EQ(Sample(m, "kpid_events_consumed_total"), kGoodEvents);
  for (const auto& [reason, n] : expected_by_reason) {
    EXPECT_EQ(Sample(m, absl::StrCat("kpid_events_rejected_total{reason=\"", reason, "\"}")), n)
        << reason;
  }
  // Reasons that belong to the case tracker did not fire.
  for (const char* reason : {"same_stage", "unknown_case", "case_closed"}) {
    EXPECT_EQ(Sample(m, absl::StrCat("kpid_events_rejected_total{reason=\"", reason, "\"}")), 0);
  }
  EXPECT_EQ(Sample(m, "kpid_dead_letter_messages_total{result=\"delivered\"}"), bad_total);
  EXPECT_EQ(Sample(m, "kpid_dead_letter_messages_total{result=\"failed\"}"), 0);
  EXPECT_EQ(Sample(m, "kpid_build_info{version=\"0.1.0\"}"), 1);
  // The JSON run starts a day after the protobuf one (and lasts well under a
  // day of event time), so the watermark is on 2026-01-02. (Not a month
  // later: with clock: event, one worker reading a partition that is a month
  // ahead of its other partition would expire that one's cases; see
  // docs/engine.md, "Clocks".)
  EXPECT_GT(Sample(m, "kpid_watermark_timestamp_seconds"), 1767312000);  // 2026-01-02
  EXPECT_LT(Sample(m, "kpid_watermark_timestamp_seconds"), 1767398400);  // 2026-01-03
  for (int p = 0; p < 4; ++p) {
    const std::string lag =
        absl::StrCat("kpid_consumer_lag_messages{partition=\"", p, "\",topic=\"events\"}");
    EXPECT_TRUE(WaitFor([&] { return Sample(Scrape(), lag) == 0; }, absl::Seconds(10))) << lag;
  }

  // Every bad message is on the dead-letter topic, byte for byte, with its reason.
  std::vector<KafkaRecord> dead = ReadTopic(brokers_, "events-dlq", bad_total, absl::Seconds(30));
  ASSERT_EQ(static_cast<int>(dead.size()), bad_total);
  std::set<std::string> seen;
  for (const KafkaRecord& r : dead) {
    auto it = sent_bad.find(r.key);
    ASSERT_NE(it, sent_bad.end()) << "unexpected dead letter " << r.key;
    EXPECT_TRUE(seen.insert(r.key).second) << "dead-lettered twice: " << r.key;
    EXPECT_EQ(r.headers.at("kpid-reject-reason"), it->second.first) << r.key;
    EXPECT_FALSE(r.headers.at("kpid-reject-detail").empty());
    EXPECT_TRUE(absl::StartsWith(r.headers.at("kpid-source"), "events/"));
    EXPECT_EQ(r.value, it->second.second) << r.key;
  }

  EXPECT_TRUE(kpid_->Stop()) << kpid_->Log();
}

TEST(CheckConfig, ExitsZeroOnGoodAndOneWithLocatedErrors) {
  const std::string dir = MakeTempDir("check");
  std::string out;
  EXPECT_EQ(RunCommand({KPID_BINARY, "check-config", EXAMPLES_DIR "/lead_to_cash.yaml"}, &out), 0)
      << out;
  WriteFileOrDie(
      dir + "/bad.yaml",
      "kafka:\n  topik: x\nprocesses:\n  - id: p\n    stages:\n      - {id: s, sla: 5 minutes}\n");
  EXPECT_EQ(RunCommand({KPID_BINARY, "check-config", dir + "/bad.yaml"}, &out), 1);
  EXPECT_NE(out.find(dir + "/bad.yaml:2:3: unknown key \"kafka.topik\"; did you mean \"topic\"?"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find(dir + "/bad.yaml:6:22: "), std::string::npos) << out;
  EXPECT_EQ(RunCommand({KPID_BINARY, "check-config", dir + "/missing.yaml"}, &out), 1);
  // check-rules: the example rules pass against the example config; a bad
  // one fails with its location.
  EXPECT_EQ(RunCommand({KPID_BINARY, "check-rules", "--config", EXAMPLES_DIR "/lead_to_cash.yaml",
                        EXAMPLES_DIR "/../rules/lead_to_cash.yaml"},
                       &out),
            0)
      << out;
  WriteFileOrDie(dir + "/bad-rules.yaml",
                 "groups:\n  - name: g\n    rules:\n      - {alert: A, process: lead_to_cash, "
                 "kpi: conversion, window: 2h, op: '<', threshold: 1}\n");
  EXPECT_EQ(RunCommand({KPID_BINARY, "check-rules", "--config", EXAMPLES_DIR "/lead_to_cash.yaml",
                        dir + "/bad-rules.yaml"},
                       &out),
            1);
  EXPECT_NE(out.find(dir + "/bad-rules.yaml:4:68: alert A: window 2h is not one of the "
                           "configured windows (5m, 1h, 1d, 7d)"),
            std::string::npos)
      << out;
  EXPECT_EQ(RunCommand({KPID_BINARY, "--version"}, &out), 0);
  EXPECT_NE(out.find("kpid 0.1.0"), std::string::npos) << out;
}

TEST(DaemonStartup, RefusesABadConfigAndAnOccupiedPort) {
  const std::string dir = MakeTempDir("startup");
  std::string out;
  WriteFileOrDie(dir + "/bad.yaml", "processes: []\n");
  EXPECT_EQ(RunCommand({KPID_BINARY, "--config", dir + "/bad.yaml"}, &out), 1);
  EXPECT_NE(out.find("bad.yaml:1:12: processes: expected a non-empty list"), std::string::npos)
      << out;

  // Someone else holds the HTTP port: a clear error and exit 1, not a hang.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  WriteFileOrDie(dir + "/busy.yaml",
                 absl::StrCat("kafka: {brokers: embedded}\nhttp: {listen: \"127.0.0.1:", port,
                              "\"}\nprocesses:\n  - id: p\n    stages: [{id: s, sla: 1h}]\n"));
  EXPECT_EQ(RunCommand({KPID_BINARY, "--config", dir + "/busy.yaml"}, &out, absl::Seconds(20)), 1);
  EXPECT_NE(out.find(absl::StrCat("http: cannot listen on 127.0.0.1:", port)), std::string::npos)
      << out;
  ::close(fd);
}

}  // namespace
}  // namespace kpid::testing

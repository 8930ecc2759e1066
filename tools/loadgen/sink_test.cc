#include "tools/loadgen/sink.h"

#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tools/loadgen/kafka_test_util.h"
#include "tools/loadgen/simulator.h"

namespace kpid::loadgen {
namespace {

using kpid::v1::ProcessEvent;
using ::testing::HasSubstr;

constexpr absl::string_view kConfig = R"yaml(
kafka: {brokers: "127.0.0.1:9092", topic: events}
dimensions: {names: [region]}
processes:
  - id: p
    stages: [{id: a, sla: 1h}, {id: b, sla: 1h}]
    simulate: {arrivals_per_hour: 3600, cost_per_case: 5, feedback_odds: 0.5}
)yaml";

std::vector<ProcessEvent> Events(int n) {
  absl::StatusOr<model::Config> config = model::ParseConfig(kConfig, "test.yaml");
  EXPECT_TRUE(config.ok()) << config.status();
  SimulatorOptions options;
  options.max_events = n;
  Simulator sim(*config, options);
  std::vector<ProcessEvent> out;
  ProcessEvent e;
  while (sim.Next(&e)) out.push_back(e);
  return out;
}

std::string Bytes(const ProcessEvent& e) {
  std::string s;
  SerializeDeterministic(e, &s);
  return s;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string TempPath(absl::string_view name) {
  return absl::StrCat(::testing::TempDir(), "/sink_test_", name);
}

TEST(SinkTest, ParseFormat) {
  EXPECT_EQ(*ParseFormat("protobuf"), Format::kProtobuf);
  EXPECT_EQ(*ParseFormat("json"), Format::kJson);
  EXPECT_FALSE(ParseFormat("xml").ok());
}

TEST(SinkTest, ProtobufFileRoundTrips) {
  const std::vector<ProcessEvent> events = Events(2000);
  const std::string path = TempPath("events.bin");
  absl::StatusOr<std::unique_ptr<EventSink>> sink = OpenFileSink(path, Format::kProtobuf);
  ASSERT_TRUE(sink.ok()) << sink.status();
  for (const ProcessEvent& e : events) ASSERT_TRUE((*sink)->Write(e).ok());
  ASSERT_TRUE((*sink)->Close().ok());

  absl::StatusOr<std::vector<ProcessEvent>> back = ReadDelimitedEvents(ReadAll(path));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), events.size());
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(Bytes((*back)[i]), Bytes(events[i]));
}

TEST(SinkTest, JsonFileHasOneParsableObjectPerLine) {
  const std::vector<ProcessEvent> events = Events(500);
  const std::string path = TempPath("events.json");
  absl::StatusOr<std::unique_ptr<EventSink>> sink = OpenFileSink(path, Format::kJson);
  ASSERT_TRUE(sink.ok()) << sink.status();
  for (const ProcessEvent& e : events) ASSERT_TRUE((*sink)->Write(e).ok());
  ASSERT_TRUE((*sink)->Close().ok());

  const std::string text = ReadAll(path);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), events.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    ProcessEvent parsed;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[i], &parsed).ok()) << lines[i];
    EXPECT_EQ(Bytes(parsed), Bytes(events[i])) << lines[i];
  }
  EXPECT_THAT(lines[0], HasSubstr(R"("kind":"STAGE_ENTERED")"));
}

TEST(SinkTest, ReadDelimitedEventsRejectsTruncatedInput) {
  std::string one;
  SerializeDeterministic(Events(1)[0], &one);
  std::string framed = absl::StrCat(std::string(1, static_cast<char>(one.size())), one);
  EXPECT_TRUE(ReadDelimitedEvents(framed).ok());
  framed.pop_back();
  EXPECT_FALSE(ReadDelimitedEvents(framed).ok());
}

TEST(SinkTest, FileSinkReportsUnwritablePath) {
  absl::StatusOr<std::unique_ptr<EventSink>> sink =
      OpenFileSink("/nonexistent-dir/events.bin", Format::kProtobuf);
  ASSERT_FALSE(sink.ok());
  EXPECT_THAT(std::string(sink.status().message()), HasSubstr("/nonexistent-dir/events.bin"));
}

TEST(SinkTest, ReadBootstrapFileWaitsForTheFile) {
  const std::string path = TempPath("bootstrap");
  std::remove(path.c_str());
  std::thread writer([&] {
    absl::SleepFor(absl::Milliseconds(300));
    std::ofstream(path) << "127.0.0.1:12345\n";
  });
  absl::StatusOr<std::string> address = ReadBootstrapFile(path, absl::Seconds(10));
  writer.join();
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(*address, "127.0.0.1:12345");
}

TEST(SinkTest, ReadBootstrapFileTimesOut) {
  const std::string path = TempPath("no-bootstrap");
  std::remove(path.c_str());
  absl::StatusOr<std::string> address = ReadBootstrapFile(path, absl::Milliseconds(200));
  ASSERT_FALSE(address.ok());
  EXPECT_EQ(address.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(address.status().message()), HasSubstr(path));
}

TEST(SinkTest, KafkaSinkProducesKeyedMessages) {
  testing::MockKafka kafka("events", 3);
  const std::vector<ProcessEvent> events = Events(300);
  for (Format format : {Format::kProtobuf, Format::kJson}) {
    KafkaSinkOptions options;
    options.brokers = kafka.bootstraps();
    options.topic = "events";
    options.format = format;
    options.timeout = absl::Seconds(10);
    absl::StatusOr<std::unique_ptr<EventSink>> sink = OpenKafkaSink(options);
    ASSERT_TRUE(sink.ok()) << sink.status();
    for (const ProcessEvent& e : events) ASSERT_TRUE((*sink)->Write(e).ok());
    ASSERT_TRUE((*sink)->Close().ok());
  }
  std::vector<testing::MockKafka::Message> got = kafka.Consume(600, absl::Seconds(20));
  ASSERT_EQ(got.size(), 600u);
  std::map<std::string, std::set<int32_t>> partitions_of_case;
  std::multiset<std::string> want, seen;
  for (const ProcessEvent& e : events) want.insert(Bytes(e));
  int json = 0;
  for (const testing::MockKafka::Message& m : got) {
    ProcessEvent e;
    if (m.content_type == "application/json") {
      ++json;
      ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(m.value, &e).ok()) << m.value;
    } else {
      EXPECT_EQ(m.content_type, "");
      ASSERT_TRUE(e.ParseFromString(m.value));
    }
    EXPECT_EQ(m.key, e.case_id());
    partitions_of_case[m.key].insert(m.partition);
    seen.insert(Bytes(e));
  }
  EXPECT_EQ(json, 300);
  std::multiset<std::string> want_twice = want;
  want_twice.insert(want.begin(), want.end());
  EXPECT_EQ(seen, want_twice);
  for (const auto& [key, partitions] : partitions_of_case) {
    EXPECT_EQ(partitions.size(), 1u) << key << " spread over partitions";
  }
}

TEST(SinkTest, KafkaSinkReportsFailedDeliveries) {
  testing::MockKafka kafka("events", 1);
  KafkaSinkOptions options;
  options.brokers = kafka.bootstraps();
  options.topic = "events";
  options.timeout = absl::Seconds(10);
  absl::StatusOr<std::unique_ptr<EventSink>> sink = OpenKafkaSink(options);
  ASSERT_TRUE(sink.ok()) << sink.status();
  // Every produce request fails with a permanent error (ApiKey 0 = Produce).
  std::vector<rd_kafka_resp_err_t> errors(50, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  rd_kafka_mock_push_request_errors_array(kafka.cluster(), 0, errors.size(), errors.data());
  for (const ProcessEvent& e : Events(20)) {
    if (!(*sink)->Write(e).ok()) break;
  }
  absl::Status closed = (*sink)->Close();
  ASSERT_FALSE(closed.ok());
  EXPECT_THAT(std::string(closed.message()), HasSubstr("not delivered"));
}

TEST(SinkTest, KafkaSinkFailsClearlyWithoutBroker) {
  KafkaSinkOptions options;
  options.brokers = "127.0.0.1:1";
  options.topic = "events";
  options.timeout = absl::Seconds(1);
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<EventSink>> sink = OpenKafkaSink(options);
  ASSERT_FALSE(sink.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(sink.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(sink.status().message()),
              HasSubstr("cannot reach kafka brokers 127.0.0.1:1 within 1s"));
}

}  // namespace
}  // namespace kpid::loadgen

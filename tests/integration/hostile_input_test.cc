// Issue 7, "bounded under attack": a producer sends 100,000 messages mixing
// every reject reason of daemon/model/reject_reason.h (and duplicates) with
// good events, in a seeded random order. kpid (real binary, embedded broker)
// stays up; every good event is counted exactly, every bad one exactly by
// reason and found on the dead-letter topic byte for byte; its RSS stays
// under a stated bound throughout.
//
// Expected counts are known by construction: each message pattern below
// contributes fixed numbers (written next to it); the test adds up the
// patterns it drew, never what kpid reports. Events of one case share a key
// (its case id), so they are on one partition, in the order sent, as the
// case-level verdicts (same_stage, case_closed, duplicates) need.

#include <array>
#include <atomic>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "daemon/model/reject_reason.h"
#include "gtest/gtest.h"
#include "kpid/v1/event.pb.h"
#include "tests/testing/kafka_client.h"
#include "tests/testing/kpid_process.h"
#include "tests/testing/process.h"

namespace kpid::testing {
namespace {

using kpid::v1::ProcessEvent;
using model::RejectReason;

// Wall clock (the future/past checks are against it); horizons and bounds
// at their defaults, so nothing here is forgotten or evicted and every
// verdict is exact. max_message_bytes is small so "oversized" is cheap.
constexpr char kConfigTemplate[] = R"(
kafka:
  brokers: embedded
  topic: events
  group_id: kpid-hostile
  partitions: 4
  bootstrap_file: $DIR/bootstrap
  dead_letter_topic: events-dlq
  max_message_bytes: 2048
http: {listen: "127.0.0.1:$PORT"}
grpc: {listen: "127.0.0.1:0"}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
      - {id: quote, sla: 1d}
)";

constexpr int kMessages = 100'000;
// kpid, its embedded broker holding every message of both topics, peaked at
// 83 MB of RSS in this run (2026-11-27); 200 MB leaves room for allocator
// noise but not for memory that grows with the input: a kilobyte kept per
// message would add 100 MB.
constexpr int64_t kMaxRssKib = 200 * 1024;

// VmRSS of `pid` in KiB, or -1.
int64_t RssKib(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    absl::string_view v(line);
    if (!absl::ConsumePrefix(&v, "VmRSS:")) continue;
    int64_t kib = -1;
    return absl::SimpleAtoi(absl::StripSuffix(absl::StripAsciiWhitespace(v), " kB"), &kib) ? kib
                                                                                           : -1;
  }
  return -1;
}

// The expected outcome of everything sent.
struct Expected {
  int64_t consumed = 0;
  int64_t duplicate = 0;
  std::array<int64_t, model::kRejectReasonCount> rejected{};
  // Dead letters by key: the reason and the exact value sent.
  std::map<std::string, std::pair<std::string, std::string>> dead;
  int64_t sent = 0;
};

class HostileProducer {
 public:
  HostileProducer(const std::string& brokers, int64_t base_seconds)
      : producer_(brokers), base_(base_seconds) {}

  void Good(const KafkaRecord& r) {
    Send(r);
    ++expected_.consumed;
  }
  void Bad(const KafkaRecord& r, RejectReason reason) {
    Send(r);
    ++expected_.rejected[static_cast<size_t>(reason)];
    const auto [it, inserted] =
        expected_.dead.emplace(r.key, std::pair(std::string(RejectReasonName(reason)), r.value));
    ASSERT_TRUE(inserted) << "dead letters must have unique keys: " << r.key;
  }
  void Duplicate(const KafkaRecord& r) {
    Send(r);
    ++expected_.duplicate;
  }

  // A binary event of case `case_id` (also the key), a fresh event id.
  KafkaRecord Event(const std::string& case_id, ProcessEvent::Kind kind,
                    const std::string& stage = "", int64_t offset_s = 0) {
    ProcessEvent e;
    e.set_event_id(absl::StrCat("e", next_event_++));
    e.set_process("sales");
    e.set_case_id(case_id);
    e.set_kind(kind);
    e.set_stage(stage);
    e.set_amount(100);
    e.mutable_occurred_at()->set_seconds(base_ + offset_s);
    return Record(case_id, e);
  }
  KafkaRecord Record(const std::string& key, const ProcessEvent& e) {
    KafkaRecord r;
    r.key = key;
    r.value = e.SerializeAsString();
    return r;
  }
  KafkaRecord Json(const std::string& key, const std::string& json) {
    KafkaRecord r;
    r.key = key;
    r.value = json;
    return r;
  }
  std::string NewCase() { return absl::StrCat("case-", next_case_++); }
  std::string NewKey() { return absl::StrCat("bad-", next_bad_++); }
  int64_t base() const { return base_; }

  int Flush() { return producer_.Flush(absl::Seconds(30)); }
  const Expected& expected() const { return expected_; }

 private:
  void Send(const KafkaRecord& r) {
    producer_.Send("events", r);
    ++expected_.sent;
  }

  TestProducer producer_;
  const int64_t base_;
  Expected expected_;
  int64_t next_event_ = 0, next_case_ = 0, next_bad_ = 0;
};

// One pattern: sends its messages and states what each must do.
using Pattern = std::function<void(HostileProducer&, int)>;

// The first kGoodPatterns are drawn kGoodWeight times as often as the rest,
// so most traffic is good: per 3 x 16 + 18 = 66 draws, 16 x (3 + 2 + 1) =
// 96 messages of good-only patterns and 2 + 1 + 3 + 2 + 14 = 22 of the
// others (17 bad): about 100k x 17 / 118 = 14k bad messages, each of the 18
// other patterns drawn about 100k / 118 = 850 times.
constexpr size_t kGoodPatterns = 3;
constexpr double kGoodWeight = 16;

std::vector<Pattern> Patterns() {
  using K = ProcessEvent;
  std::vector<Pattern> p;
  // ---- Good and case-level: keyed by the case id.
  // lead, quote, completed: 3 good.
  p.push_back([](HostileProducer& h, int) {
    const std::string c = h.NewCase();
    h.Good(h.Event(c, K::STAGE_ENTERED, "lead", 0));
    h.Good(h.Event(c, K::STAGE_ENTERED, "quote", 1));
    h.Good(h.Event(c, K::CASE_COMPLETED, "", 2));
  });
  // lead (as JSON), fallout: 2 good.
  p.push_back([](HostileProducer& h, int) {
    const std::string c = h.NewCase();
    h.Good(
        h.Json(c, absl::StrCat(R"({"eventId":"j-)", c, R"(","process":"sales","caseId":")", c,
                               R"(","kind":"STAGE_ENTERED","stage":"lead","occurredAt":")",
                               absl::FormatTime(absl::RFC3339_full, absl::FromUnixSeconds(h.base()),
                                                absl::UTCTimeZone()),
                               R"("})")));
    h.Good(h.Event(c, K::CASE_FALLOUT, "", 1));
  });
  // COST of a case kpid does not know: counted, 1 good.
  p.push_back([](HostileProducer& h, int) { h.Good(h.Event(h.NewCase(), K::COST)); });
  // lead, lead again: 1 good, 1 same_stage.
  p.push_back([](HostileProducer& h, int) {
    const std::string c = h.NewCase();
    h.Good(h.Event(c, K::STAGE_ENTERED, "lead"));
    h.Bad(h.Event(c, K::STAGE_ENTERED, "lead", 1), RejectReason::kSameStage);
  });
  // completed, never started: 1 unknown_case.
  p.push_back([](HostileProducer& h, int) {
    h.Bad(h.Event(h.NewCase(), K::CASE_COMPLETED), RejectReason::kUnknownCase);
  });
  // lead, completed, quote after closing: 2 good, 1 case_closed.
  p.push_back([](HostileProducer& h, int) {
    const std::string c = h.NewCase();
    h.Good(h.Event(c, K::STAGE_ENTERED, "lead"));
    h.Good(h.Event(c, K::CASE_COMPLETED, "", 1));
    h.Bad(h.Event(c, K::STAGE_ENTERED, "quote", 2), RejectReason::kCaseClosed);
  });
  // lead, the same message again: 1 good, 1 duplicate (not rejected).
  p.push_back([](HostileProducer& h, int) {
    const KafkaRecord r = h.Event(h.NewCase(), K::STAGE_ENTERED, "lead");
    h.Good(r);
    h.Duplicate(r);
  });

  // ---- Bad at decoding, one message each, keyed "bad-N".
  auto bad_event = [](RejectReason reason, std::function<void(ProcessEvent&, int)> spoil) {
    return [reason, spoil](HostileProducer& h, int i) {
      const std::string key = h.NewKey();
      ProcessEvent e;
      e.set_event_id(key);
      e.set_process("sales");
      e.set_case_id(key);
      e.set_kind(K::STAGE_ENTERED);
      e.set_stage("lead");
      e.mutable_occurred_at()->set_seconds(h.base());
      spoil(e, i);
      h.Bad(h.Record(key, e), reason);
    };
  };
  auto bad_value = [](RejectReason reason, std::function<std::string(HostileProducer&, int)> make) {
    return [reason, make](HostileProducer& h, int i) {
      h.Bad(h.Json(h.NewKey(), make(h, i)), reason);
    };
  };
  p.push_back(bad_value(RejectReason::kEmpty, [](HostileProducer&, int) { return ""; }));
  p.push_back(bad_value(RejectReason::kOversized, [](HostileProducer&, int i) {
    return absl::StrCat(R"({"eventId":"big)", i, R"(", "pad":")", std::string(3000, 'x'), "\"}");
  }));
  p.push_back(bad_value(RejectReason::kMalformedProtobuf, [](HostileProducer&, int i) {
    return absl::StrCat("\xff\xfe\x07 not a protobuf ", i);
  }));
  p.push_back(bad_value(RejectReason::kMalformedJson, [](HostileProducer&, int i) {
    return i % 2 ? absl::StrCat(R"({"eventId": )", i, "}")  // wrong type
                 : std::string(R"({"eventId": "x", )");     // truncated
  }));
  p.push_back(bad_value(RejectReason::kJsonTooDeep, [](HostileProducer&, int) {
    return absl::StrCat(R"({"eventId":)", std::string(40, '['), std::string(40, ']'), "}");
  }));
  p.push_back(bad_event(RejectReason::kMissingField, [](ProcessEvent& e, int i) {
    if (i % 2)
      e.clear_case_id();
    else
      e.clear_stage();
  }));
  p.push_back(bad_event(RejectReason::kUnknownKind, [](ProcessEvent& e, int) {
    e.set_kind(static_cast<ProcessEvent::Kind>(42));
  }));
  p.push_back(bad_event(RejectReason::kInvalidTimestamp, [](ProcessEvent& e, int) {
    e.mutable_occurred_at()->set_nanos(2'000'000'000);
  }));
  p.push_back(bad_event(RejectReason::kInvalidValue, [](ProcessEvent& e, int i) {
    e.set_kind(K::COST);
    e.set_amount(i % 2 ? std::numeric_limits<double>::quiet_NaN()
                       : -std::numeric_limits<double>::infinity());
  }));
  p.push_back(bad_event(RejectReason::kAbsurdValue, [](ProcessEvent& e, int i) {
    e.set_kind(K::CASE_COMPLETED);
    e.set_amount(i % 2 ? 1e15 : -1e300);
  }));
  p.push_back(bad_event(RejectReason::kUnknownProcess,
                        [](ProcessEvent& e, int) { e.set_process("payroll"); }));
  p.push_back(
      bad_event(RejectReason::kUnknownStage, [](ProcessEvent& e, int) { e.set_stage("kyc"); }));
  // A day ahead of the wall clock (max_future_skew 1h).
  p.push_back(bad_event(RejectReason::kFutureTimestamp, [](ProcessEvent& e, int) {
    e.mutable_occurred_at()->set_seconds(absl::ToUnixSeconds(absl::Now()) + 86400);
  }));
  // 1970-01-02: beyond max_past_age (3650d) behind the wall clock.
  p.push_back(bad_event(RejectReason::kPastTimestamp,
                        [](ProcessEvent& e, int) { e.mutable_occurred_at()->set_seconds(86400); }));
  return p;
}

TEST(HostileInputTest, StaysUpCountsExactlyDeadLettersEveryBadOneAndStaysBounded) {
  KpidProcess kpid(KPID_BINARY, MakeTempDir("hostile"), kConfigTemplate);
  ASSERT_TRUE(kpid.Start()) << kpid.Log();
  const int port = kpid.http_port();
  const std::string brokers = kpid.EmbeddedBrokers();

  // RSS, sampled every 50 ms for the whole run.
  std::atomic<bool> stop_sampling{false};
  std::atomic<int64_t> max_rss_kib{0};
  std::thread sampler([&] {
    while (!stop_sampling.load()) {
      max_rss_kib.store(std::max(max_rss_kib.load(), RssKib(kpid.process().pid())));
      absl::SleepFor(absl::Milliseconds(50));
    }
  });
  // Joined on every way out (a failed ASSERT returns early).
  struct Joiner {
    std::atomic<bool>* stop;
    std::thread* thread;
    ~Joiner() {
      stop->store(true);
      if (thread->joinable()) thread->join();
    }
  } join_sampler{&stop_sampling, &sampler};

  // Half an hour ago: well inside the wall clock's past and future bounds,
  // and every case stays within its SLA and case_ttl during the test.
  auto producer =
      std::make_unique<HostileProducer>(brokers, absl::ToUnixSeconds(absl::Now()) - 1800);
  const std::vector<Pattern> patterns = Patterns();
  std::mt19937 random(7);
  std::vector<double> weights(patterns.size(), 1);
  std::fill(weights.begin(), weights.begin() + kGoodPatterns, kGoodWeight);
  std::discrete_distribution<size_t> pick(weights.begin(), weights.end());
  std::vector<int> drawn(patterns.size(), 0);
  while (producer->expected().sent < kMessages) {
    const size_t k = pick(random);
    patterns[k](*producer, drawn[k]++);
  }
  ASSERT_EQ(producer->Flush(), 0);
  const Expected expected = producer->expected();
  producer.reset();  // disconnected before kpid's broker stops
  // Every pattern was drawn often (about 850 times at least, see above).
  for (size_t k = 0; k < patterns.size(); ++k) EXPECT_GT(drawn[k], 400) << "pattern " << k;
  int64_t bad_total = 0;
  for (size_t r = 0; r < model::kRejectReasonCount; ++r) {
    EXPECT_GT(expected.rejected[r], 0) << "no " << model::kRejectReasonNames[r];
    bad_total += expected.rejected[r];
  }
  ASSERT_EQ(expected.consumed + expected.duplicate + bad_total, expected.sent);

  // Read the dead-letter topic while kpid still works through the input
  // (reading the mock broker is the slow part), once it exists.
  const std::string delivered = "kpid_dead_letter_messages_total{result=\"delivered\"}";
  ASSERT_TRUE(
      WaitFor([&] { return Sample(ParseMetrics(HttpGet(port, "/metrics").body), delivered) > 0; },
              absl::Seconds(30)));
  std::future<std::vector<KafkaRecord>> dead_letters = std::async(std::launch::async, [&] {
    return ReadTopic(brokers, "events-dlq", static_cast<size_t>(bad_total), absl::Seconds(50));
  });

  auto rejected = [](const MetricSamples& m, size_t r) {
    return Sample(m, absl::StrCat("kpid_events_rejected_total{reason=\"",
                                  model::kRejectReasonNames[r], "\"}"));
  };
  MetricSamples m;
  const bool drained = WaitFor(
      [&] {
        m = ParseMetrics(HttpGet(port, "/metrics").body);
        double seen =
            Sample(m, "kpid_events_consumed_total") + Sample(m, "kpid_events_duplicate_total");
        for (size_t r = 0; r < model::kRejectReasonCount; ++r) seen += rejected(m, r);
        return seen >= static_cast<double>(expected.sent) &&
               Sample(m, "kpid_dead_letter_messages_total{result=\"delivered\"}") >=
                   static_cast<double>(bad_total);
      },
      absl::Seconds(45));
  ASSERT_TRUE(drained) << kpid.Log();
  // Settle, then nothing more than expected may have arrived.
  absl::SleepFor(absl::Milliseconds(300));
  m = ParseMetrics(HttpGet(port, "/metrics").body);
  EXPECT_EQ(Sample(m, "kpid_events_consumed_total"), expected.consumed);
  EXPECT_EQ(Sample(m, "kpid_events_duplicate_total"), expected.duplicate);
  for (size_t r = 0; r < model::kRejectReasonCount; ++r) {
    EXPECT_EQ(rejected(m, r), expected.rejected[r]) << model::kRejectReasonNames[r];
  }
  EXPECT_EQ(Sample(m, "kpid_dead_letter_messages_total{result=\"delivered\"}"), bad_total);
  EXPECT_EQ(Sample(m, "kpid_dead_letter_messages_total{result=\"failed\"}"), 0);
  // Within the defaults nothing was evicted nor forgotten early.
  EXPECT_EQ(Sample(m, "kpid_process_cases_evicted_total{process=\"sales\"}"), 0);
  EXPECT_EQ(Sample(m, "kpid_dedup_forgotten_total{set=\"event_ids\"}"), 0);
  EXPECT_EQ(Sample(m, "kpid_dedup_forgotten_total{set=\"closed_cases\"}"), 0);

  // The dead-letter topic holds exactly the bad messages: as many as
  // delivered (above), each expected once, byte for byte, with its reason.
  const std::vector<KafkaRecord> dead = dead_letters.get();
  ASSERT_EQ(static_cast<int64_t>(dead.size()), bad_total);
  std::set<std::string> seen;
  for (const KafkaRecord& r : dead) {
    auto it = expected.dead.find(r.key);
    ASSERT_NE(it, expected.dead.end()) << "unexpected dead letter " << r.key;
    ASSERT_TRUE(seen.insert(r.key).second) << "dead-lettered twice: " << r.key;
    ASSERT_EQ(r.headers.at("kpid-reject-reason"), it->second.first) << r.key;
    ASSERT_EQ(r.value, it->second.second) << r.key;
  }

  stop_sampling.store(true);
  sampler.join();
  EXPECT_GT(max_rss_kib.load(), 0);
  EXPECT_LT(max_rss_kib.load(), kMaxRssKib) << "peak VmRSS " << max_rss_kib.load() << " KiB";
  std::cout << "peak VmRSS " << max_rss_kib.load() << " KiB, " << expected.sent << " messages ("
            << expected.consumed << " good, " << bad_total << " bad, " << expected.duplicate
            << " duplicates)\n";

  EXPECT_TRUE(kpid.running());
  EXPECT_TRUE(kpid.Stop()) << kpid.Log();
}

}  // namespace
}  // namespace kpid::testing

#include "daemon/ingest/event_decoder.h"

#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace kpid::ingest {
namespace {

using kpid::v1::ProcessEvent;
using model::RejectReason;

constexpr char kConfig[] = R"(
kafka: {max_message_bytes: 4096}
processes:
  - id: lead_to_cash
    stages:
      - {id: lead, sla: 1h}
      - {id: quote, sla: 2d}
  - id: onboarding
    stages:
      - {id: kyc, sla: 4h}
)";

class EventDecoderTest : public ::testing::Test {
 protected:
  EventDecoderTest() : config_(*model::ParseConfig(kConfig, "test.yaml")), decoder_(config_) {}

  static ProcessEvent ValidEvent() {
    ProcessEvent e;
    e.set_event_id("e-1");
    e.set_process("lead_to_cash");
    e.set_case_id("L-1");
    e.set_kind(ProcessEvent::STAGE_ENTERED);
    e.set_stage("quote");
    e.mutable_occurred_at()->set_seconds(1772355600);  // 2026-03-01T09:00:00Z
    e.mutable_occurred_at()->set_nanos(500000000);
    (*e.mutable_attributes())["region"] = "emea";
    return e;
  }

  std::optional<Rejection> DecodeProto(const ProcessEvent& e) {
    return decoder_.Decode(e.SerializeAsString(), false, &out_);
  }

  std::optional<RejectReason> ReasonOf(absl::string_view value, bool json_header = false) {
    std::optional<Rejection> r = decoder_.Decode(value, json_header, &out_);
    if (!r) return std::nullopt;
    return r->reason;
  }

  model::Config config_;
  EventDecoder decoder_;
  DecodedEvent out_;
};

TEST_F(EventDecoderTest, DecodesBinaryProtobufAndResolvesIndexes) {
  ASSERT_EQ(DecodeProto(ValidEvent()), std::nullopt);
  EXPECT_EQ(out_.proto.case_id(), "L-1");
  EXPECT_EQ(out_.process_index, 0);
  EXPECT_EQ(out_.stage_index, 1);  // quote is the second stage
  EXPECT_EQ(out_.occurred_at, absl::FromUnixMillis(1772355600500));
  EXPECT_EQ(out_.proto.attributes().at("region"), "emea");
}

TEST_F(EventDecoderTest, DecodesJsonByFirstByte) {
  const char* json =
      R"(  {"eventId":"e-2","process":"onboarding","caseId":"O-7","kind":"STAGE_ENTERED",
      "stage":"kyc","occurredAt":"2026-03-01T09:00:00Z","attributes":{"region":"apac"}})";
  ASSERT_EQ(ReasonOf(json), std::nullopt);
  EXPECT_EQ(out_.process_index, 1);
  EXPECT_EQ(out_.stage_index, 0);
  EXPECT_EQ(out_.occurred_at, absl::FromUnixSeconds(1772355600));
  EXPECT_EQ(out_.proto.attributes().at("region"), "apac");
}

TEST_F(EventDecoderTest, JsonAcceptsSnakeCaseEnumNumbersAndIgnoresUnknownFields) {
  const char* json = R"({"event_id":"e-3","process":"lead_to_cash","case_id":"L-9","kind":2,
      "amount":1250.5,"occurred_at":"2026-03-01T10:00:00.250Z","new_field":{"x":[1,2]}})";
  ASSERT_EQ(ReasonOf(json), std::nullopt);
  EXPECT_EQ(out_.proto.kind(), ProcessEvent::CASE_COMPLETED);
  EXPECT_DOUBLE_EQ(out_.proto.amount(), 1250.5);
  EXPECT_EQ(out_.stage_index, -1);
  EXPECT_EQ(out_.occurred_at, absl::FromUnixMillis(1772359200250));
}

TEST_F(EventDecoderTest, ContentTypeHeaderSelectsJson) {
  EXPECT_TRUE(EventDecoder::IsJsonContentType("application/json"));
  EXPECT_TRUE(EventDecoder::IsJsonContentType("Application/JSON; charset=utf-8"));
  EXPECT_FALSE(EventDecoder::IsJsonContentType("application/x-protobuf"));
  // With the header, a value that is not JSON is a JSON error, not a protobuf one.
  EXPECT_EQ(ReasonOf(ValidEvent().SerializeAsString(), true), RejectReason::kMalformedJson);
}

// What lets the ingest loop skip a message's headers: a value it calls JSON
// is decoded as JSON whatever the header says.
TEST_F(EventDecoderTest, ValueThatLooksLikeJsonIsJsonWithoutTheHeader) {
  EXPECT_TRUE(EventDecoder::LooksLikeJson("{}"));
  EXPECT_TRUE(EventDecoder::LooksLikeJson(" \t\r\n{"));
  EXPECT_FALSE(EventDecoder::LooksLikeJson(""));
  EXPECT_FALSE(EventDecoder::LooksLikeJson(" \n"));
  EXPECT_FALSE(EventDecoder::LooksLikeJson("x{"));
  EXPECT_FALSE(EventDecoder::LooksLikeJson("\v{"));
  // A valid binary event whose event_id is 123 bytes long begins "\n{".
  ProcessEvent event = ValidEvent();
  event.set_event_id(std::string(123, 'e'));
  const std::string binary = event.SerializeAsString();
  ASSERT_EQ(binary.substr(0, 2), "\n{");
  EXPECT_TRUE(EventDecoder::LooksLikeJson(binary));
  EXPECT_EQ(ReasonOf(binary, false), RejectReason::kMalformedJson);
  EXPECT_EQ(ReasonOf(binary, true), RejectReason::kMalformedJson);
}

TEST_F(EventDecoderTest, ReusesTheOutputWithoutLeakingFieldsBetweenEvents) {
  ASSERT_EQ(DecodeProto(ValidEvent()), std::nullopt);
  ProcessEvent second = ValidEvent();
  second.clear_attributes();
  second.set_kind(ProcessEvent::CASE_FALLOUT);
  second.clear_stage();
  ASSERT_EQ(DecodeProto(second), std::nullopt);
  EXPECT_TRUE(out_.proto.attributes().empty());
  EXPECT_EQ(out_.stage_index, -1);
}

// The decoder keeps the previous event's Timestamp for the next one; an
// event without occurred_at must still be missing it, and one at the epoch
// (present, both fields zero) must still have it.
TEST_F(EventDecoderTest, AReusedTimestampNeitherInventsNorLosesOccurredAt) {
  ASSERT_EQ(DecodeProto(ValidEvent()), std::nullopt);
  ProcessEvent missing = ValidEvent();
  missing.clear_occurred_at();
  std::optional<Rejection> r = DecodeProto(missing);
  ASSERT_NE(r, std::nullopt);
  EXPECT_EQ(r->reason, RejectReason::kMissingField);
  EXPECT_EQ(r->detail, "occurred_at is missing");

  ASSERT_EQ(DecodeProto(ValidEvent()), std::nullopt);
  ProcessEvent epoch = ValidEvent();
  epoch.mutable_occurred_at()->Clear();
  // No wall clock set: no past limit, so the epoch is accepted.
  ASSERT_EQ(DecodeProto(epoch), std::nullopt);
  EXPECT_TRUE(out_.proto.has_occurred_at());
  EXPECT_EQ(out_.occurred_at, absl::UnixEpoch());

  ProcessEvent whole_second = ValidEvent();
  whole_second.mutable_occurred_at()->set_nanos(0);
  ASSERT_EQ(DecodeProto(ValidEvent()), std::nullopt);
  ASSERT_EQ(DecodeProto(whole_second), std::nullopt);
  EXPECT_EQ(out_.occurred_at, absl::FromUnixSeconds(1772355600));
}

// Events of every shape, some rejected, some JSON, and now and then one with
// thousands of attributes, decoded one after another into one reused event
// must come out exactly as a new decoder decodes each into a new event; and
// the hostile events' memory must not stay with the reused event.
TEST(EventDecoderReuseTest, ManyEventsInARowDecodeAsFreshParsesAndHugeOnesAreReleased) {
  const model::Config config = *model::ParseConfig(R"(
kafka: {max_message_bytes: 1048576}
processes:
  - id: lead_to_cash
    stages: [{id: lead, sla: 1h}, {id: quote, sla: 2d}]
)",
                                                   "reuse.yaml");
  // An ordinary event here is a ProcessEvent (~150 bytes), three strings of
  // under 40 bytes, a Timestamp (~30) and a map of at most 3 short entries
  // (~8 buckets of 8 bytes, nodes of ~100): under 1 KiB, so 4 KiB is ample.
  // A 5000-attribute event's map alone has 5000 nodes of over 64 bytes; the
  // huge string is 400000 bytes.
  constexpr size_t kBound = 4096;
  constexpr size_t kHuge = 5000 * 64;
  EventDecoder reused(config);
  DecodedEvent out;
  std::mt19937_64 rng(7);
  int hostile = 0, rejected = 0, json = 0;
  for (int i = 0; i < 3000; ++i) {
    ProcessEvent e;
    if (rng() % 10 != 0) e.set_event_id(absl::StrCat("event-id-longer-than-sso-", i));
    e.set_process(rng() % 20 == 0 ? "unknown_process" : "lead_to_cash");
    e.set_case_id(absl::StrCat("case-", rng() % 1000));
    e.set_kind(rng() % 2 == 0 ? ProcessEvent::STAGE_ENTERED : ProcessEvent::CASE_COMPLETED);
    if (e.kind() == ProcessEvent::STAGE_ENTERED) e.set_stage(rng() % 2 == 0 ? "lead" : "quote");
    if (e.kind() == ProcessEvent::CASE_COMPLETED) e.set_amount(static_cast<double>(rng() % 5000));
    // occurred_at missing, whole seconds, with nanos, or present but {0, 0}
    // (the epoch): the decoder keeps the reused Timestamp, and must still
    // tell "missing" from "the epoch" as ParseFromArray does.
    switch (rng() % 8) {
      case 0:
        break;
      case 1:
        e.mutable_occurred_at();
        break;
      case 2:
        e.mutable_occurred_at()->set_nanos(static_cast<int32_t>(rng() % 1000000000));
        break;
      default:
        e.mutable_occurred_at()->set_seconds(1772355600 + i);
        if (rng() % 2 == 0) e.mutable_occurred_at()->set_nanos(static_cast<int32_t>(rng() % 1000));
    }
    // Hostile events alternate: thousands of attributes, or one huge string
    // (a string keeps its capacity when the message is reused).
    const bool huge = i % 500 == 250;
    const bool huge_string = huge && (i / 500) % 2 == 1;
    if (huge_string) e.set_case_id(std::string(400000, 'c'));
    const int attributes = huge && !huge_string ? 5000 : static_cast<int>(rng() % 4);
    for (int a = 0; a < attributes; ++a) {
      (*e.mutable_attributes())[absl::StrCat("attribute-", a)] = absl::StrCat("value-", rng());
    }
    std::string value;
    if (rng() % 10 == 0) {
      ASSERT_TRUE(google::protobuf::util::MessageToJsonString(e, &value).ok());
      ++json;
    } else {
      value = e.SerializeAsString();
      if (rng() % 10 == 0) value += "\x98\x06\x01";  // field 99 = 1: unknown, kept as such
      if (rng() % 10 == 0) {
        // occurred_at a second time: the parser merges it into the first.
        google::protobuf::Timestamp again;
        again.set_nanos(static_cast<int32_t>(rng() % 2));
        absl::StrAppend(&value, "\x32", std::string(1, static_cast<char>(again.ByteSizeLong())),
                        again.SerializeAsString());
      }
    }
    if (!huge && rng() % 50 == 0) value.resize(value.size() / 2);  // truncated

    std::optional<Rejection> r = reused.Decode(value, false, &out);
    if (value[0] != '{') {
      // Binary: the reused message holds exactly what protobuf's own parse
      // of the value gives, whatever the verdict after it.
      ProcessEvent parsed;
      const bool parses = parsed.ParseFromArray(value.data(), static_cast<int>(value.size()));
      ASSERT_EQ(parses, !r || r->reason != RejectReason::kMalformedProtobuf) << i;
      if (parses) {
        EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(out.proto, parsed))
            << i << ": " << out.proto.ShortDebugString() << " vs " << parsed.ShortDebugString();
      }
    }
    EventDecoder fresh_decoder(config);
    DecodedEvent fresh;
    std::optional<Rejection> fresh_r = fresh_decoder.Decode(value, false, &fresh);
    ASSERT_EQ(r.has_value(), fresh_r.has_value()) << i;
    if (r) {
      EXPECT_EQ(r->reason, fresh_r->reason) << i;
      EXPECT_EQ(r->detail, fresh_r->detail) << i;
      ++rejected;
    } else {
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(out.proto, fresh.proto))
          << i << ": " << out.proto.ShortDebugString();
      EXPECT_EQ(out.process_index, fresh.process_index) << i;
      EXPECT_EQ(out.stage_index, fresh.stage_index) << i;
      EXPECT_EQ(out.occurred_at, fresh.occurred_at) << i;
    }
    const size_t held = out.proto.SpaceUsedLong();
    if (huge) {
      ++hostile;
      EXPECT_GT(held, kHuge) << i;  // else the release below proves nothing
    } else {
      EXPECT_LE(held, kBound) << i;
    }
  }
  // The mix the loop was meant to cover did occur.
  EXPECT_EQ(hostile, 6);
  EXPECT_GT(rejected, 100);
  EXPECT_GT(json, 100);
}

TEST_F(EventDecoderTest, RejectsEmptyAndOversized) {
  EXPECT_EQ(ReasonOf(""), RejectReason::kEmpty);
  EXPECT_EQ(ReasonOf(std::string(4097, 'x')), RejectReason::kOversized);
  // Exactly at the limit is decoded (and here fails as protobuf, not size).
  EXPECT_EQ(ReasonOf(std::string(4096, '\xff')), RejectReason::kMalformedProtobuf);
  // Bytes that happen to be valid unknown protobuf fields ('x' = field 15,
  // varint) decode to an event without its fields.
  EXPECT_EQ(ReasonOf(std::string(4096, 'x')), RejectReason::kMissingField);
}

TEST_F(EventDecoderTest, RejectsGarbageAndTruncatedProtobuf) {
  EXPECT_EQ(ReasonOf("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
            RejectReason::kMalformedProtobuf);
  const std::string bytes = ValidEvent().SerializeAsString();
  // Cutting inside a length-delimited field makes the parse fail.
  EXPECT_EQ(ReasonOf(absl::string_view(bytes).substr(0, bytes.size() - 3)),
            RejectReason::kMalformedProtobuf);
  // Wire type 7 does not exist.
  EXPECT_EQ(ReasonOf("\x0f"), RejectReason::kMalformedProtobuf);
}

TEST_F(EventDecoderTest, RejectsBadJson) {
  EXPECT_EQ(ReasonOf("{"), RejectReason::kMalformedJson);
  EXPECT_EQ(ReasonOf(R"({"eventId": 5})"), RejectReason::kMalformedJson);  // wrong type
  EXPECT_EQ(ReasonOf(R"({"occurredAt":"yesterday"})"), RejectReason::kMalformedJson);
  EXPECT_EQ(ReasonOf(R"({"amount":"lots"})"), RejectReason::kMalformedJson);
  EXPECT_EQ(ReasonOf(R"({"attributes":["a"]})"), RejectReason::kMalformedJson);
  EXPECT_EQ(ReasonOf(R"({"eventId":"a"} trailing)"), RejectReason::kMalformedJson);
}

TEST_F(EventDecoderTest, RejectsMissingFields) {
  for (auto clear : std::vector<void (*)(ProcessEvent*)>{
           [](ProcessEvent* e) { e->clear_event_id(); },
           [](ProcessEvent* e) { e->clear_process(); }, [](ProcessEvent* e) { e->clear_case_id(); },
           [](ProcessEvent* e) { e->clear_kind(); },
           [](ProcessEvent* e) { e->clear_occurred_at(); },
           [](ProcessEvent* e) { e->clear_stage(); },  // STAGE_ENTERED needs a stage
       }) {
    ProcessEvent e = ValidEvent();
    clear(&e);
    std::optional<Rejection> r = DecodeProto(e);
    ASSERT_TRUE(r.has_value()) << e.DebugString();
    EXPECT_EQ(r->reason, RejectReason::kMissingField) << r->detail;
  }
}

TEST_F(EventDecoderTest, JsonKindNameNotKnownReadsAsUnspecified) {
  // With unknown fields ignored, Protobuf's JSON parser also drops enum names
  // it does not know, so a misspelt kind surfaces as a missing kind.
  std::optional<Rejection> r = decoder_.Decode(
      R"({"eventId":"e","process":"lead_to_cash","caseId":"c","kind":"STAGE_EXITED",
          "occurredAt":"2026-03-01T09:00:00Z"})",
      false, &out_);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->reason, RejectReason::kMissingField);
  EXPECT_EQ(r->detail, "kind is KIND_UNSPECIFIED or not a known kind name");
}

TEST_F(EventDecoderTest, StageIsOnlyRequiredForStageEntered) {
  ProcessEvent e = ValidEvent();
  e.set_kind(ProcessEvent::COST);
  e.clear_stage();
  e.set_amount(12);
  EXPECT_EQ(DecodeProto(e), std::nullopt);
}

TEST_F(EventDecoderTest, RejectsUnknownKindProcessAndStage) {
  ProcessEvent e = ValidEvent();
  e.set_kind(static_cast<ProcessEvent::Kind>(42));
  EXPECT_EQ(DecodeProto(e)->reason, RejectReason::kUnknownKind);

  e = ValidEvent();
  e.set_process("fulfillment");
  EXPECT_EQ(DecodeProto(e)->reason, RejectReason::kUnknownProcess);

  e = ValidEvent();
  e.set_stage("kyc");  // a stage of another process
  std::optional<Rejection> r = DecodeProto(e);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->reason, RejectReason::kUnknownStage);
  EXPECT_EQ(r->detail, "stage \"kyc\" is not a stage of process \"lead_to_cash\"");
}

TEST_F(EventDecoderTest, RejectsOutOfRangeTimestamps) {
  ProcessEvent e = ValidEvent();
  e.mutable_occurred_at()->set_nanos(1000000000);
  EXPECT_EQ(DecodeProto(e)->reason, RejectReason::kInvalidTimestamp);
  e = ValidEvent();
  e.mutable_occurred_at()->set_seconds(253402300800);  // 10000-01-01
  EXPECT_EQ(DecodeProto(e)->reason, RejectReason::kInvalidTimestamp);
  e = ValidEvent();
  e.mutable_occurred_at()->set_nanos(-1);
  EXPECT_EQ(DecodeProto(e)->reason, RejectReason::kInvalidTimestamp);
}

TEST_F(EventDecoderTest, RejectsEventsTooFarAheadOfTheWallClock) {
  ProcessEvent e = ValidEvent();  // 2026-03-01T09:00:00.5Z
  // Not checked until the worker tells the decoder the time.
  EXPECT_EQ(DecodeProto(e), std::nullopt);
  // max_future_skew defaults to 1h: up to 10:00:00.5 is fine, beyond is not.
  decoder_.SetWallNow(absl::FromUnixSeconds(1772355600));
  EXPECT_EQ(DecodeProto(e), std::nullopt);
  e.mutable_occurred_at()->set_seconds(1772355600 + 3600);
  e.mutable_occurred_at()->set_nanos(0);
  EXPECT_EQ(DecodeProto(e), std::nullopt);
  e.mutable_occurred_at()->set_nanos(1000);
  std::optional<Rejection> r = DecodeProto(e);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->reason, RejectReason::kFutureTimestamp);
  EXPECT_EQ(model::RejectReasonName(r->reason), "future_timestamp");
}

TEST_F(EventDecoderTest, RejectsEventsTooFarBehindTheWallClock) {
  ProcessEvent e = ValidEvent();
  e.mutable_occurred_at()->set_seconds(0);  // a zeroed producer clock: 1970
  e.mutable_occurred_at()->set_nanos(0);
  EXPECT_EQ(DecodeProto(e), std::nullopt);  // not checked before the worker sets the time
  // max_past_age defaults to 3650d: wall clock 2026-03-01T09:00:00Z = 1772355600,
  // so the limit is 1772355600 - 3650 * 86400 = 1456995600 (2016-03-03T09:00:00Z).
  decoder_.SetWallNow(absl::FromUnixSeconds(1772355600));
  std::optional<Rejection> r = DecodeProto(e);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->reason, RejectReason::kPastTimestamp);
  EXPECT_EQ(model::RejectReasonName(r->reason), "past_timestamp");
  e.mutable_occurred_at()->set_seconds(1456995600);  // exactly at the limit: kept
  EXPECT_EQ(DecodeProto(e), std::nullopt);
  e.mutable_occurred_at()->set_seconds(1456995599);
  EXPECT_EQ(DecodeProto(e)->reason, RejectReason::kPastTimestamp);
}

TEST_F(EventDecoderTest, RejectsAbsurdValues) {
  // max_abs_value defaults to 1e12: a refund of -1e12 is fine, beyond is not.
  ProcessEvent e = ValidEvent();
  e.set_amount(-1e12);
  EXPECT_EQ(DecodeProto(e), std::nullopt);
  e.set_amount(1.5e12);
  std::optional<Rejection> r = DecodeProto(e);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->reason, RejectReason::kAbsurdValue);
  EXPECT_EQ(model::RejectReasonName(r->reason), "absurd_value");
  e = ValidEvent();
  e.set_score(-1e300);
  EXPECT_EQ(DecodeProto(e)->reason, RejectReason::kAbsurdValue);
  EXPECT_EQ(ReasonOf(R"({"eventId":"e","process":"lead_to_cash","caseId":"c","kind":"COST",
      "occurredAt":"2026-03-01T09:00:00Z","amount":1e200})"),
            RejectReason::kAbsurdValue);
}

TEST_F(EventDecoderTest, RejectsJsonNestedTooDeep) {
  // Unknown fields are skipped, but not at any depth: 32 levels at most.
  std::string nested = R"({"eventId":"e","process":"lead_to_cash","caseId":"c","kind":"COST",
      "occurredAt":"2026-03-01T09:00:00Z","junk":)";
  const auto with_depth = [&](int levels) {  // junk adds `levels` below the event's own
    std::string s = nested;
    for (int i = 0; i < levels; ++i) s += "[";
    s += R"("[{\"]")";  // brackets and an escaped quote inside a string do not count
    for (int i = 0; i < levels; ++i) s += "]";
    return s + "}";
  };
  EXPECT_EQ(ReasonOf(with_depth(31)), std::nullopt);  // 1 + 31 = 32 levels
  EXPECT_EQ(ReasonOf(with_depth(32)), RejectReason::kJsonTooDeep);
  std::string deep = R"({"eventId":"e","process":"lead_to_cash","caseId":"c","kind":"COST",
      "occurredAt":"2026-03-01T09:00:00Z","junk":)";
  // 1500 levels (3 KB, within max_message_bytes 4096) against the parser's 100.
  for (int i = 0; i < 1500; ++i) deep += "[";
  for (int i = 0; i < 1500; ++i) deep += "]";
  deep += "}";
  EXPECT_EQ(ReasonOf(deep), RejectReason::kJsonTooDeep);
}

TEST_F(EventDecoderTest, RejectsNonFiniteValues) {
  for (double bad :
       {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
        -std::numeric_limits<double>::infinity()}) {
    ProcessEvent e = ValidEvent();
    e.set_amount(bad);
    EXPECT_EQ(DecodeProto(e)->reason, RejectReason::kInvalidValue);
    e = ValidEvent();
    e.set_score(bad);
    EXPECT_EQ(DecodeProto(e)->reason, RejectReason::kInvalidValue);
  }
  EXPECT_EQ(ReasonOf(R"({"eventId":"e","process":"lead_to_cash","caseId":"c","kind":"COST",
      "occurredAt":"2026-03-01T09:00:00Z","amount":"NaN"})"),
            RejectReason::kInvalidValue);
}

TEST(RejectReasonNames, AreUniqueSnakeCaseLabels) {
  std::set<absl::string_view> seen;
  for (absl::string_view name : model::kRejectReasonNames) {
    EXPECT_TRUE(seen.insert(name).second) << name;
    EXPECT_FALSE(name.empty());
    for (char c : name) EXPECT_TRUE((c >= 'a' && c <= 'z') || c == '_') << name;
  }
  EXPECT_EQ(model::RejectReasonName(RejectReason::kCaseClosed), "case_closed");
}

}  // namespace
}  // namespace kpid::ingest

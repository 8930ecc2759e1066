#include "daemon/ingest/event_decoder.h"

#include <cstdlib>
#include <limits>
#include <new>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/common/unix_time.h"
#include "daemon/ingest/event_view_testing.h"
#include "google/protobuf/descriptor.h"
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

  // The decoded event's attribute `key`; "(missing)" if it has none.
  std::string Attribute(absl::string_view key) const {
    const std::string* value = FindAttribute(out_.attributes, key);
    return value != nullptr ? *value : "(missing)";
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
  EXPECT_EQ(Attribute("region"), "emea");
}

TEST_F(EventDecoderTest, DecodesJsonByFirstByte) {
  const char* json =
      R"(  {"eventId":"e-2","process":"onboarding","caseId":"O-7","kind":"STAGE_ENTERED",
      "stage":"kyc","occurredAt":"2026-03-01T09:00:00Z","attributes":{"region":"apac"}})";
  ASSERT_EQ(ReasonOf(json), std::nullopt);
  EXPECT_EQ(out_.process_index, 1);
  EXPECT_EQ(out_.stage_index, 0);
  EXPECT_EQ(out_.occurred_at, absl::FromUnixSeconds(1772355600));
  EXPECT_EQ(Attribute("region"), "apac");
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
  EXPECT_TRUE(out_.attributes.empty());
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
  // An ordinary event here is a ProcessEventView (~150 bytes), three
  // strings of under 40 bytes, a Timestamp (~30) and at most 3 short
  // attribute entries (~50 bytes and two strings of ~32 each), or the
  // cleared entries of earlier events, kept (a handful of ~120 bytes):
  // under 1 KiB, so 4 KiB is ample. A 5000-attribute event's entries alone
  // take 5000 times over 64 bytes; the huge string is 400000 bytes.
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
      if (rng() % 10 == 0 && attributes > 0) {
        // attribute-0 a second time: the last entry of a key counts.
        kpid::internal::ProcessEventView again;
        AddAttributeEntry(&again, "attribute-0", absl::StrCat("again-", rng()));
        value += again.SerializeAsString();
      }
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
    // The reused message holds exactly what protobuf's own parse of the
    // value into a ProcessEvent gives, whatever the verdict after it.
    const bool json = value[0] == '{';
    ProcessEvent parsed;
    const bool parses = ParseAsContract(value, json, &parsed);
    ASSERT_EQ(parses, !r || r->reason != (json ? RejectReason::kMalformedJson
                                               : RejectReason::kMalformedProtobuf))
        << i;
    if (parses) {
      EXPECT_TRUE(SameEvent(parsed, out))
          << i << ": " << out.proto.ShortDebugString() << " vs " << parsed.ShortDebugString();
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
      EXPECT_TRUE(SameEvent(parsed, fresh)) << i;
      EXPECT_EQ(out.process_index, fresh.process_index) << i;
      EXPECT_EQ(out.stage_index, fresh.stage_index) << i;
      EXPECT_EQ(out.occurred_at, fresh.occurred_at) << i;
    }
    const size_t held = HeldBytes(out);
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

// occurred_at is the Timestamp's instant over the whole range the decoder
// accepts (no wall clock set: no future or past limit), inside the years
// 1677-2262, where it is built from nanoseconds, and beyond them, where that
// would overflow; UnixMillis (the ingest loop's watermark) floors it to
// milliseconds.
TEST_F(EventDecoderTest, OccurredAtIsTheTimestampsInstantOverItsWholeRange) {
  struct Case {
    int64_t seconds;
    int32_t nanos;
    const char* rfc3339;
    int64_t unix_millis;
  };
  const Case cases[] = {
      {1772355600, 123456789, "2026-03-01T09:00:00.123456789+00:00", 1772355600123},
      {-1, 500000000, "1969-12-31T23:59:59.5+00:00", -500},
      {-1, 999999, "1969-12-31T23:59:59.000999999+00:00", -1000},
      {0, 1000000, "1970-01-01T00:00:00.001+00:00", 1},
      // The last second whose nanoseconds fit an int64 with room for the
      // nanos, and the first that takes the other way, on both sides.
      {9223372035, 999999999, "2262-04-11T23:47:15.999999999+00:00", 9223372035999},
      {9223372036, 1, "2262-04-11T23:47:16.000000001+00:00", 9223372036000},
      {-9223372035, 1, "1677-09-21T00:12:45.000000001+00:00", -9223372035000},
      {-9223372036, 0, "1677-09-21T00:12:44+00:00", -9223372036000},
      {253402300799, 999999999, "9999-12-31T23:59:59.999999999+00:00", 253402300799999},
      {-62135596800, 0, "1-01-01T00:00:00+00:00", -62135596800000},  // absl prints year 1 so
  };
  for (const Case& c : cases) {
    ProcessEvent e = ValidEvent();
    e.mutable_occurred_at()->set_seconds(c.seconds);
    e.mutable_occurred_at()->set_nanos(c.nanos);
    ASSERT_EQ(DecodeProto(e), std::nullopt) << c.seconds;
    EXPECT_EQ(absl::FormatTime(absl::RFC3339_full, out_.occurred_at, absl::UTCTimeZone()),
              c.rfc3339);
    EXPECT_EQ(out_.occurred_at, absl::FromUnixSeconds(c.seconds) + absl::Nanoseconds(c.nanos));
    EXPECT_EQ(UnixMillis(out_.occurred_at), c.unix_millis) << c.rfc3339;
    EXPECT_EQ(UnixMillis(out_.occurred_at), absl::ToUnixMillis(out_.occurred_at)) << c.rfc3339;
  }
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

// The view (kpid/internal/event_view.proto) reads the contract's bytes only
// while it declares every ProcessEvent field as ProcessEvent does; the map
// must be the repeated {key = 1, value = 2} entry it is on the wire (its
// bytes, which the decoder parses as an AttributeEntry), and a
// string is bytes (the same wire form; the decoder checks UTF-8 itself).
google::protobuf::FieldDescriptor::Type ViewType(google::protobuf::FieldDescriptor::Type type) {
  return type == google::protobuf::FieldDescriptor::TYPE_STRING
             ? google::protobuf::FieldDescriptor::TYPE_BYTES
             : type;
}

TEST(ProcessEventViewTest, DeclaresEveryProcessEventFieldAlike) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Descriptor* contract = ProcessEvent::descriptor();
  const google::protobuf::Descriptor* view = kpid::internal::ProcessEventView::descriptor();
  ASSERT_EQ(view->field_count(), contract->field_count());
  for (int i = 0; i < contract->field_count(); ++i) {
    const FieldDescriptor* want = contract->field(i);
    const FieldDescriptor* got = view->FindFieldByNumber(want->number());
    ASSERT_NE(got, nullptr) << want->name();
    EXPECT_EQ(got->name(), want->name());
    if (want->is_map()) {
      // Each occurrence's bytes, parsed by the decoder as an AttributeEntry.
      EXPECT_TRUE(got->is_repeated()) << want->name();
      EXPECT_EQ(got->type(), FieldDescriptor::TYPE_BYTES) << want->name();
      const google::protobuf::Descriptor* entry = kpid::internal::AttributeEntry::descriptor();
      ASSERT_EQ(entry->field_count(), 2);
      for (int f = 0; f < 2; ++f) {
        const FieldDescriptor* want_f = want->message_type()->field(f);
        const FieldDescriptor* got_f = entry->FindFieldByNumber(want_f->number());
        ASSERT_NE(got_f, nullptr) << want_f->name();
        EXPECT_EQ(got_f->type(), ViewType(want_f->type())) << want_f->name();
        EXPECT_EQ(got_f->label(), want_f->label()) << want_f->name();
      }
      continue;
    }
    EXPECT_EQ(got->type(), ViewType(want->type())) << want->name();
    EXPECT_EQ(got->label(), want->label()) << want->name();
    EXPECT_EQ(got->message_type(), want->message_type()) << want->name();
    EXPECT_EQ(got->enum_type(), want->enum_type()) << want->name();
  }
}

// ValidEvent without attributes, then the given entries as they come on the
// wire (the view serializes them as the map entries they are).
std::string WithEntries(ProcessEvent e, std::vector<std::pair<const char*, const char*>> entries) {
  e.clear_attributes();
  kpid::internal::ProcessEventView view;
  for (const auto& [key, value] : entries) {
    kpid::internal::AttributeEntry entry;
    if (key != nullptr) entry.set_key(key);
    if (value != nullptr) entry.set_value(value);
    *view.add_attributes() = entry.SerializeAsString();
  }
  return e.SerializeAsString() + view.SerializeAsString();
}

TEST_F(EventDecoderTest, ADuplicatedAttributeKeyReadsAsItsLastEntry) {
  const std::string value =
      WithEntries(ValidEvent(),
                  {{"region", "emea"}, {"channel", "web"}, {"region", "apac"}, {"region", "amer"}});
  // What the contract's map makes of these bytes: the last entry.
  ProcessEvent contract;
  ASSERT_TRUE(contract.ParseFromString(value));
  ASSERT_EQ(contract.attributes().size(), 2u);
  EXPECT_EQ(contract.attributes().at("region"), "amer");
  ASSERT_EQ(decoder_.Decode(value, false, &out_), std::nullopt);
  EXPECT_EQ(Attribute("region"), "amer");
  EXPECT_EQ(Attribute("channel"), "web");
  EXPECT_EQ(Attribute("carrier"), "(missing)");
  EXPECT_TRUE(SameEvent(contract, out_));
}

TEST_F(EventDecoderTest, AnEntryWithoutKeyOrValueIsTheEmptyKeyOrValue) {
  const std::string value =
      WithEntries(ValidEvent(), {{nullptr, "no key"}, {"no value", nullptr}, {"", ""}, {"x", ""}});
  ProcessEvent contract;
  ASSERT_TRUE(contract.ParseFromString(value));
  // {nullptr, "no key"} and {"", ""} are both key "": the latter counts.
  ASSERT_EQ(contract.attributes().size(), 3u);
  EXPECT_EQ(contract.attributes().at(""), "");
  ASSERT_EQ(decoder_.Decode(value, false, &out_), std::nullopt);
  EXPECT_EQ(Attribute(""), "");
  EXPECT_EQ(Attribute("no value"), "");
  EXPECT_EQ(Attribute("x"), "");
  EXPECT_TRUE(SameEvent(contract, out_));
}

// Proto3 strings must be UTF-8, map keys and values included: the contract's
// parse rejects the value, and so does the decoder.
TEST_F(EventDecoderTest, AnAttributeThatIsNotUtf8IsMalformed) {
  for (const auto& entry :
       std::vector<std::pair<const char*, const char*>>{{"\xff", "emea"}, {"region", "\xc3\x28"}}) {
    const std::string value = WithEntries(ValidEvent(), {{"region", "emea"}, entry});
    ProcessEvent contract;
    EXPECT_FALSE(contract.ParseFromString(value));
    EXPECT_EQ(ReasonOf(value), RejectReason::kMalformedProtobuf);
  }
}

// Every contract string field (found from the descriptor, so a field added
// later is covered), set in a valid event to `text` through the view.
std::vector<std::pair<std::string, std::string>> EachStringFieldSetTo(const ProcessEvent& valid,
                                                                      const std::string& text) {
  using google::protobuf::FieldDescriptor;
  std::vector<std::pair<std::string, std::string>> values;  // {field, value}
  const google::protobuf::Descriptor* contract = ProcessEvent::descriptor();
  for (int i = 0; i < contract->field_count(); ++i) {
    const FieldDescriptor* field = contract->field(i);
    kpid::internal::ProcessEventView view;
    EXPECT_TRUE(view.ParseFromString(valid.SerializeAsString()));
    if (field->is_map()) {
      AddAttributeEntry(&view, text, "");
      values.emplace_back("attributes key", view.SerializeAsString());
      view.mutable_attributes()->RemoveLast();
      AddAttributeEntry(&view, "channel", text);
      values.emplace_back("attributes value", view.SerializeAsString());
    } else if (field->type() == FieldDescriptor::TYPE_STRING) {
      view.GetReflection()->SetString(
          &view, view.GetDescriptor()->FindFieldByNumber(field->number()), text);
      values.emplace_back(field->name(), view.SerializeAsString());
    }
  }
  EXPECT_EQ(values.size(), 7u);  // event_id, process, case_id, stage, reason, key, value
  return values;
}

TEST_F(EventDecoderTest, EveryStringFieldThatIsNotUtf8IsMalformed) {
  for (const std::string bad : {"\xff", "ok\xc3\x28", "e-\xed\xa0\x80", "0123456789abcdef\x80"}) {
    for (const auto& [field, value] : EachStringFieldSetTo(ValidEvent(), bad)) {
      ProcessEvent contract;
      EXPECT_FALSE(contract.ParseFromString(value)) << field;
      EXPECT_EQ(ReasonOf(value), RejectReason::kMalformedProtobuf) << field;
    }
  }
}

TEST_F(EventDecoderTest, EveryStringFieldTakesUtf8BeyondAscii) {
  for (const std::string good :
       {"Z\xc3\xbcrich", "\xe2\x9c\x93 ok", "\xf0\x9f\x9a\x80 0123456789"}) {
    for (const auto& [field, value] : EachStringFieldSetTo(ValidEvent(), good)) {
      ProcessEvent contract;
      ASSERT_TRUE(contract.ParseFromString(value)) << field;
      // Accepted, or rejected for what the text means (an unknown process
      // or stage), never as malformed.
      std::optional<Rejection> r = decoder_.Decode(value, false, &out_);
      if (field == "process") {
        ASSERT_TRUE(r.has_value());
        EXPECT_EQ(r->reason, RejectReason::kUnknownProcess);
      } else if (field == "stage") {
        ASSERT_TRUE(r.has_value());
        EXPECT_EQ(r->reason, RejectReason::kUnknownStage);
      } else {
        EXPECT_EQ(r, std::nullopt) << field;
        EXPECT_TRUE(SameEvent(contract, out_)) << field;
      }
    }
  }
}

// The decoder reads ASCII a word at a time: one byte that is not ASCII, at
// any position of any length, still counts.
TEST_F(EventDecoderTest, ANonAsciiByteAnywhereInAStringIsChecked) {
  for (size_t length = 1; length <= 33; ++length) {
    ProcessEvent e = ValidEvent();
    e.set_event_id(std::string(length, 'a'));
    ASSERT_EQ(DecodeProto(e), std::nullopt) << length;
    for (size_t at = 0; at < length; ++at) {
      std::string id(length, 'a');
      id[at] = '\xff';
      kpid::internal::ProcessEventView view;
      ASSERT_TRUE(view.ParseFromString(ValidEvent().SerializeAsString()));
      view.set_event_id(id);
      EXPECT_EQ(ReasonOf(view.SerializeAsString()), RejectReason::kMalformedProtobuf)
          << length << " " << at;
    }
  }
}

// A field sent twice (as concatenated messages have it) reads as its last
// occurrence, but the contract's parse checks the first one too.
TEST_F(EventDecoderTest, AnOverwrittenStringThatIsNotUtf8IsMalformed) {
  for (const auto& [field, first] : EachStringFieldSetTo(ValidEvent(), "\xff")) {
    const std::string value = first + ValidEvent().SerializeAsString();
    ProcessEvent contract;
    EXPECT_FALSE(contract.ParseFromString(value)) << field;
    EXPECT_EQ(ReasonOf(value), RejectReason::kMalformedProtobuf) << field;
  }
  // Both occurrences UTF-8: the last one counts.
  ProcessEvent later = ValidEvent();
  later.set_event_id("e-2");
  const std::string value = ValidEvent().SerializeAsString() + later.SerializeAsString();
  ASSERT_EQ(decoder_.Decode(value, false, &out_), std::nullopt);
  EXPECT_EQ(out_.proto.event_id(), "e-2");
}

// Unknown fields are not checked by the contract's parse, whatever they hold.
TEST_F(EventDecoderTest, BytesThatAreNotUtf8InAnUnknownFieldAreAccepted) {
  // Field 15, length-delimited, 2 bytes.
  const std::string value = ValidEvent().SerializeAsString() + std::string("\x7a\x02\xff\xfe", 4);
  ProcessEvent contract;
  ASSERT_TRUE(contract.ParseFromString(value));
  ASSERT_EQ(decoder_.Decode(value, false, &out_), std::nullopt);
  EXPECT_TRUE(SameEvent(contract, out_));
}

TEST_F(EventDecoderTest, ManyAttributesAreAllRead) {
  ProcessEvent e = ValidEvent();
  e.clear_attributes();
  for (int a = 0; a < 100; ++a) (*e.mutable_attributes())[absl::StrCat("k", a)] = absl::StrCat(a);
  ASSERT_LT(e.ByteSizeLong(), EventDecoder::kLargeValueBytes);
  ASSERT_EQ(DecodeProto(e), std::nullopt);
  EXPECT_EQ(out_.proto.attributes_size(), 100);
  EXPECT_EQ(out_.attributes.size(), 100u);
  for (int a = 0; a < 100; ++a) EXPECT_EQ(Attribute(absl::StrCat("k", a)), absl::StrCat(a));
  // The next event's fewer attributes leave none of these behind.
  ASSERT_EQ(DecodeProto(ValidEvent()), std::nullopt);
  EXPECT_EQ(out_.proto.attributes_size(), 1);
  EXPECT_EQ(out_.attributes.size(), 1u);
  EXPECT_EQ(Attribute("k0"), "(missing)");
  EXPECT_EQ(Attribute("region"), "emea");
}

// ValidEvent without attributes, then each of `entries` (an entry's bytes)
// as an attribute entry.
std::string WithEntryBytes(ProcessEvent e, std::vector<std::string> entries) {
  e.clear_attributes();
  kpid::internal::ProcessEventView view;
  for (std::string& entry : entries) *view.add_attributes() = std::move(entry);
  return e.SerializeAsString() + view.SerializeAsString();
}

// An entry's bytes: key = 1, value = 2, each length-delimited.
std::string EntryBytes(absl::string_view key, absl::string_view value) {
  kpid::internal::AttributeEntry entry;
  entry.set_key(std::string(key));
  entry.set_value(std::string(value));
  return entry.SerializeAsString();
}

// The attributes as (key, value) pairs in their order.
std::vector<std::pair<std::string, std::string>> Pairs(const DecodedEvent& event) {
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const ingest::Attribute& a : event.attributes) pairs.emplace_back(*a.key, *a.value);
  return pairs;
}

using PairList = std::vector<std::pair<std::string, std::string>>;

// The second decode of the same entries is a memo hit (the very strings of
// the first), with the same attributes; an entry of the same length that
// differs in one byte is its own entry.
TEST_F(EventDecoderTest, AMemoHitGivesTheAttributesOfAMiss) {
  const std::string value = WithEntries(ValidEvent(), {{"region", "emea"}, {"channel", "web"}});
  DecodedEvent first, second;
  ASSERT_EQ(decoder_.Decode(value, false, &first), std::nullopt);
  ASSERT_EQ(decoder_.Decode(value, false, &second), std::nullopt);
  EXPECT_EQ(Pairs(first), (PairList{{"region", "emea"}, {"channel", "web"}}));
  EXPECT_EQ(Pairs(second), Pairs(first));
  ASSERT_EQ(second.attributes.size(), 2u);
  EXPECT_EQ(second.attributes[0].value, first.attributes[0].value);  // the memo's string
  EXPECT_TRUE(second.owned_entries.empty());
  ProcessEvent contract;
  ASSERT_TRUE(contract.ParseFromString(value));
  EXPECT_TRUE(SameEvent(contract, second));

  const std::string other = WithEntries(ValidEvent(), {{"region", "amer"}, {"channel", "web"}});
  ASSERT_EQ(decoder_.Decode(other, false, &second), std::nullopt);
  EXPECT_EQ(Pairs(second), (PairList{{"region", "amer"}, {"channel", "web"}}));
  EXPECT_EQ(Pairs(first), (PairList{{"region", "emea"}, {"channel", "web"}}));
  // JSON's entries are the same bytes: hits too.
  ASSERT_EQ(ReasonOf(R"({"eventId":"e-1","process":"lead_to_cash","caseId":"L-1",
      "kind":"STAGE_ENTERED","stage":"quote","occurredAt":"2026-03-01T09:00:00Z",
      "attributes":{"region":"amer"}})"),
            std::nullopt);
  EXPECT_EQ(Pairs(out_), (PairList{{"region", "amer"}}));
  EXPECT_EQ(out_.attributes[0].value, second.attributes[0].value);
}

// Only entries the contract accepts are memoized: bytes that differ from a
// memoized entry's in one byte that makes them not UTF-8 are rejected, in
// the key or the value, every time.
TEST_F(EventDecoderTest, AnEntryThatIsNotUtf8IsRejectedAfterAValidOneWasMemoized) {
  ASSERT_EQ(
      decoder_.Decode(WithEntryBytes(ValidEvent(), {EntryBytes("region", "emea")}), false, &out_),
      std::nullopt);
  EXPECT_EQ(Attribute("region"), "emea");
  for (const std::string& bad : {EntryBytes("region",
                                            "em\xff"
                                            "a"),
                                 EntryBytes("reg\xc3"
                                            "on",
                                            "emea")}) {
    const std::string value = WithEntryBytes(ValidEvent(), {bad});
    ProcessEvent contract;
    ASSERT_FALSE(contract.ParseFromString(value));
    for (int again = 0; again < 2; ++again) {
      EXPECT_EQ(ReasonOf(value), RejectReason::kMalformedProtobuf);
      EXPECT_EQ(ReasonOf(WithEntryBytes(ValidEvent(), {EntryBytes("region", "emea"), bad})),
                RejectReason::kMalformedProtobuf);
    }
  }
  ASSERT_EQ(
      decoder_.Decode(WithEntryBytes(ValidEvent(), {EntryBytes("region", "emea")}), false, &out_),
      std::nullopt);
  EXPECT_EQ(Attribute("region"), "emea");
}

// Inside an entry, as in the contract's map entry parse: the last key and
// the last value count, unknown fields are skipped, and an overwritten
// occurrence must still be UTF-8.
TEST_F(EventDecoderTest, AnEntryWithAFieldSentTwiceOrAnUnknownFieldReadsAsTheContractsParse) {
  const std::string twice = EntryBytes("abc", "old") + EntryBytes("region", "emea");
  const std::string unknown = EntryBytes("channel", "web") + "\x1a\x02xy" + "\x20\x05";
  const std::string value = WithEntryBytes(ValidEvent(), {twice, unknown});
  ProcessEvent contract;
  ASSERT_TRUE(contract.ParseFromString(value));
  ASSERT_EQ(contract.attributes().size(), 2u);
  for (int round = 0; round < 3; ++round) {  // miss, then hits
    ASSERT_EQ(decoder_.Decode(value, false, &out_), std::nullopt) << round;
    EXPECT_EQ(Attribute("region"), "emea");
    EXPECT_EQ(Attribute("channel"), "web");
    EXPECT_EQ(Attribute("abc"), "(missing)");
    EXPECT_TRUE(SameEvent(contract, out_)) << round;
  }
  const std::string bad_first = EntryBytes("\xff", "old") + EntryBytes("region", "emea");
  const std::string bad_value_first = EntryBytes("region", "\xff") + EntryBytes("", "emea");
  for (const std::string& entry : {bad_first, bad_value_first}) {
    const std::string bad = WithEntryBytes(ValidEvent(), {EntryBytes("region", "emea"), entry});
    ASSERT_FALSE(contract.ParseFromString(bad));
    for (int again = 0; again < 2; ++again)
      EXPECT_EQ(ReasonOf(bad), RejectReason::kMalformedProtobuf);
  }
}

// More distinct entries than the memo holds, and entries too long for it,
// all decode right; beyond the cap (and above the size cap) an entry is the
// event's own, not memoized.
TEST_F(EventDecoderTest, EntriesBeyondTheMemosCapsDecodeRightAsTheEventsOwn) {
  const size_t n = EventDecoder::kMemoEntries + 50;
  for (size_t i = 0; i < n; ++i) {
    const std::string value =
        WithEntries(ValidEvent(), {{"region", "emea"}, {"id", absl::StrCat("v", i).c_str()}});
    ASSERT_EQ(decoder_.Decode(value, false, &out_), std::nullopt);
    ASSERT_EQ(Pairs(out_), (PairList{{"region", "emea"}, {"id", absl::StrCat("v", i)}})) << i;
    // "region" and the first kMemoEntries - 1 ids fill the memo.
    EXPECT_EQ(out_.owned_entries.size(), i + 1 < EventDecoder::kMemoEntries ? 0 : 1) << i;
  }
  // Once full, StartRun empties the memo: new entries are memoized again,
  // but for one longer than kMemoEntryBytes (here 136 bytes).
  decoder_.StartRun();
  const std::string long_value(EventDecoder::kMemoEntryBytes, 'x');
  for (int again = 0; again < 2; ++again) {
    ASSERT_EQ(
        decoder_.Decode(WithEntries(ValidEvent(), {{"id", "v-new"}, {"long", long_value.c_str()}}),
                        false, &out_),
        std::nullopt);
    EXPECT_EQ(Pairs(out_), (PairList{{"id", "v-new"}, {"long", long_value}}));
    EXPECT_EQ(out_.owned_entries.size(), 1);
    EXPECT_EQ(out_.attributes[1].value, &out_.owned_entries.Get(0).value());
  }
}

// The events of one run (between StartRun calls) may all be read after the
// run is decoded, even when the memo fills within it; a copy of an event
// owns its attributes and outlives the decoder.
TEST_F(EventDecoderTest, ARunsEventsKeepTheirAttributesWhenTheMemoFillsWithinIt) {
  const size_t n = EventDecoder::kMemoEntries + 100;
  for (int run = 0; run < 2; ++run) {
    decoder_.StartRun();
    std::vector<DecodedEvent> events(n);
    for (size_t i = 0; i < n; ++i) {
      const std::string id = absl::StrCat("run", run, "-", i);
      ASSERT_EQ(decoder_.Decode(WithEntries(ValidEvent(), {{"id", id.c_str()}, {"region", "emea"}}),
                                false, &events[i]),
                std::nullopt);
    }
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(Pairs(events[i]),
                (PairList{{"id", absl::StrCat("run", run, "-", i)}, {"region", "emea"}}))
          << run << " " << i;
    }
  }
  DecodedEvent copy;
  {
    EventDecoder gone(config_);
    DecodedEvent original;
    ASSERT_EQ(gone.Decode(ValidEvent().SerializeAsString(), false, &original), std::nullopt);
    copy = original;
    EXPECT_NE(copy.attributes[0].value, original.attributes[0].value);
  }
  EXPECT_EQ(Pairs(copy), (PairList{{"region", "emea"}}));
}

// The same event as JSON (the contract's canonical mapping, whose
// attributes are an object) and as binary decodes to the same event.
TEST_F(EventDecoderTest, JsonAndBinaryOfAnEventDecodeAlike) {
  for (int variant = 0; variant < 4; ++variant) {
    ProcessEvent e = ValidEvent();
    if (variant >= 1) (*e.mutable_attributes())["channel"] = "web";
    if (variant >= 2) (*e.mutable_attributes())[""] = "empty key";
    if (variant == 3) {
      e.clear_attributes();
      e.set_kind(ProcessEvent::CASE_COMPLETED);
      e.set_amount(-12.25);
      e.set_reason("lost");
    }
    std::string json;
    ASSERT_TRUE(google::protobuf::util::MessageToJsonString(e, &json).ok());
    DecodedEvent from_json, from_binary;
    ASSERT_EQ(decoder_.Decode(json, false, &from_json), std::nullopt) << json;
    ASSERT_EQ(decoder_.Decode(e.SerializeAsString(), false, &from_binary), std::nullopt);
    EXPECT_TRUE(SameEvent(e, from_json)) << json;
    EXPECT_TRUE(SameEvent(e, from_binary)) << variant;
    EXPECT_EQ(from_json.process_index, from_binary.process_index);
    EXPECT_EQ(from_json.stage_index, from_binary.stage_index);
    EXPECT_EQ(from_json.occurred_at, from_binary.occurred_at);
  }
}

// JSON goes through Protobuf's JSON parser for ProcessEvent: accepted and
// rejected as JsonStringToMessage accepts and rejects it, with its message,
// and an accepted value decodes as the binary of what it parsed to.
TEST_F(EventDecoderTest, JsonIsJudgedAsJsonStringToMessageJudgesIt) {
  const std::string head =
      R"({"eventId":"e","process":"lead_to_cash","caseId":"c","kind":"STAGE_ENTERED",)"
      R"("stage":"lead","occurredAt":"2026-03-01T09:00:00Z")";
  for (const std::string& json : std::vector<std::string>{
           head + "}",
           head + R"(,"attributes":{"region":"emea","channel":"web"}})",
           head + R"(,"attributes":{"region":"emea","region":"apac"}})",
           head + R"(,"attributes":{}})",
           head + R"(,"attributes":null})",
           head + R"(,"attributes":{"region":null}})",
           head + R"(,"attributes":{"region":5}})",
           head + R"(,"attributes":{"region":"\u00e9\ud83d\ude00"}})",
           head + ",\"attributes\":{\"region\":\"\xff\"}}",
           head + ",\"attributes\":{\"\xc3\x28\":\"x\"}}",
           head + R"(,"attributes":{"":""}})",
           head + R"(,"attributes":[{"key":"region","value":"emea"}]})",
           head + R"(,"unknown":{"attributes":{"a":"b"}}})",
           head + R"(,"amount":1e400})",
           head + R"(,"kind":"COST","amount":"12.5"})",
           R"({"caseId":"c"})",
           R"({"eventId":"e",})",
       }) {
    ProcessEvent contract;
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;
    const auto status = google::protobuf::util::JsonStringToMessage(json, &contract, options);
    std::optional<Rejection> r = decoder_.Decode(json, false, &out_);
    if (!status.ok()) {
      ASSERT_TRUE(r.has_value()) << json;
      EXPECT_EQ(r->reason, RejectReason::kMalformedJson) << json;
      EXPECT_EQ(r->detail,
                absl::StrCat("invalid ProcessEvent JSON: ", status.message().as_string()))
          << json;
      continue;
    }
    EXPECT_TRUE(SameEvent(contract, out_)) << json;
    DecodedEvent binary;
    std::optional<Rejection> binary_r =
        decoder_.Decode(contract.SerializeAsString(), false, &binary);
    ASSERT_EQ(r.has_value(), binary_r.has_value()) << json;
    if (r) {
      EXPECT_EQ(r->detail, binary_r->detail) << json;
    }
  }
}

// A value over kLargeValueBytes may grow the reused event far beyond an
// ordinary one; the next event, binary or JSON, starts from a small one.
TEST(EventDecoderLargeValueTest, ALargeValueThenASmallOneLeavesASmallEvent) {
  const model::Config config = *model::ParseConfig(R"(
kafka: {max_message_bytes: 1048576}
processes:
  - id: p
    stages: [{id: s, sla: 1h}]
)",
                                                   "large.yaml");
  EventDecoder decoder(config);
  DecodedEvent out;
  ProcessEvent small;
  small.set_event_id("e");
  small.set_process("p");
  small.set_case_id("c");
  small.set_kind(ProcessEvent::STAGE_ENTERED);
  small.set_stage("s");
  small.mutable_occurred_at()->set_seconds(1772355600);
  (*small.mutable_attributes())["region"] = "emea";
  ASSERT_EQ(decoder.Decode(small.SerializeAsString(), false, &out), std::nullopt);
  const size_t ordinary = HeldBytes(out);
  for (const bool json : {false, true}) {
    for (const bool many : {false, true}) {
      ProcessEvent large = small;
      if (many) {
        for (int a = 0; a < 2000; ++a) (*large.mutable_attributes())[absl::StrCat("k", a)] = "v";
      } else {
        large.set_case_id(std::string(100000, 'c'));
      }
      std::string value;
      if (json) {
        ASSERT_TRUE(google::protobuf::util::MessageToJsonString(large, &value).ok());
      } else {
        value = large.SerializeAsString();
      }
      ASSERT_GT(value.size(), EventDecoder::kLargeValueBytes);
      std::optional<Rejection> r = decoder.Decode(value, false, &out);
      ASSERT_FALSE(r.has_value()) << r->detail;
      ASSERT_GT(HeldBytes(out), 20 * ordinary);  // else this proves nothing
      ASSERT_EQ(decoder.Decode(small.SerializeAsString(), false, &out), std::nullopt);
      EXPECT_LE(HeldBytes(out), ordinary) << json << many;
      EXPECT_EQ(*FindAttribute(out.attributes, "region"), "emea");
    }
  }
}

}  // namespace

// Allocations on this thread, counted by the operator new below.
thread_local int64_t allocations = 0;

namespace {

// The point of the view: once warm, a binary event allocates nothing (the
// attribute entries, their strings and the Timestamp are reused), where
// ProcessEvent's map allocated a node per attribute every event.
TEST(EventDecoderAllocationTest, AWarmDecoderAllocatesNothingForBinaryEvents) {
  const model::Config config = *model::ParseConfig(R"(
processes:
  - id: lead_to_cash
    stages: [{id: lead, sla: 1h}, {id: quote, sla: 2d}]
)",
                                                   "alloc.yaml");
  std::vector<std::string> values;
  std::mt19937_64 rng(11);
  for (int i = 0; i < 256; ++i) {
    ProcessEvent e;
    e.set_event_id(absl::StrCat("event-id-longer-than-sso-", rng()));
    e.set_process("lead_to_cash");
    e.set_case_id(absl::StrCat("lead_to_cash-case-", rng() % 100000));
    e.set_kind(i % 3 == 0 ? ProcessEvent::CASE_COMPLETED : ProcessEvent::STAGE_ENTERED);
    if (e.kind() == ProcessEvent::STAGE_ENTERED) e.set_stage(i % 2 == 0 ? "lead" : "quote");
    e.set_amount(static_cast<double>(rng() % 1000));
    e.mutable_occurred_at()->set_seconds(1772355600 + i);
    const int attributes = static_cast<int>(rng() % 4);
    for (int a = 0; a < attributes; ++a) {
      (*e.mutable_attributes())[absl::StrCat("dimension-name-", a)] =
          absl::StrCat("a-value-longer-than-sso-", rng() % 10);
    }
    values.push_back(e.SerializeAsString());
  }
  EventDecoder decoder(config);
  DecodedEvent out;
  ProcessEvent contract;
  for (const std::string& value : values) {
    ASSERT_EQ(decoder.Decode(value, false, &out), std::nullopt);
    ASSERT_TRUE(contract.ParseFromString(value));
  }
  int64_t before = allocations;
  for (int round = 0; round < 3; ++round) {
    for (const std::string& value : values) {
      ASSERT_EQ(decoder.Decode(value, false, &out), std::nullopt);
    }
  }
  EXPECT_EQ(allocations - before, 0);
  // What the contract's message allocates in the same parses: a map node per
  // attribute (~1.5 per event here), and so what the count above would see.
  before = allocations;
  for (const std::string& value : values) ASSERT_TRUE(contract.ParseFromString(value));
  EXPECT_GT(allocations - before, static_cast<int64_t>(values.size()));
}

}  // namespace
}  // namespace kpid::ingest

// Counts allocations for EventDecoderAllocationTest; otherwise malloc's.
// GCC takes free() of what a new-expression returned for a mismatch, not
// seeing that operator new is malloc here. Every form the deletes below
// free is replaced, the nothrow ones too: AddressSanitizer's own nothrow
// new (libprotobuf's std::stable_sort buffers use it) freed here would be
// an alloc-dealloc mismatch.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t size, const std::nothrow_t&) noexcept {
  ++kpid::ingest::allocations;
  return std::malloc(size == 0 ? 1 : size);
}
void* operator new(size_t size) {
  if (void* p = operator new(size, std::nothrow)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t size) { return operator new(size); }
void* operator new[](size_t size, const std::nothrow_t&) noexcept {
  return operator new(size, std::nothrow);
}
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

// Fuzzes EventDecoder::Decode: any bytes, either content type. The decoder
// must return a verdict for everything and never crash or leak; a binary
// value must leave in the reused event exactly what protobuf's own
// ParseFromArray makes of it (the decoder keeps parts of the previous event).
#include <cstddef>
#include <cstdint>

#include "daemon/ingest/event_decoder.h"
#include "google/protobuf/util/field_comparator.h"
#include "google/protobuf/util/message_differencer.h"

namespace {

const kpid::model::Config& FuzzConfig() {
  static const kpid::model::Config* config = new kpid::model::Config(*kpid::model::ParseConfig(
      R"(
kafka: {max_message_bytes: 4096}
processes:
  - id: lead_to_cash
    stages: [{id: lead, sla: 1h}, {id: quote, sla: 2d}]
)",
      "fuzz.yaml"));
  return *config;
}

// Equal as protobuf messages, where a NaN amount equals a NaN amount (the
// default comparison, like ==, finds NaN unequal to itself).
bool SameEvent(const kpid::v1::ProcessEvent& a, const kpid::v1::ProcessEvent& b) {
  static google::protobuf::util::DefaultFieldComparator* comparator = [] {
    auto* c = new google::protobuf::util::DefaultFieldComparator();
    c->set_treat_nan_as_equal(true);
    return c;
  }();
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(comparator);
  return differencer.Compare(a, b);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kpid::ingest::EventDecoder* decoder = new kpid::ingest::EventDecoder(FuzzConfig());
  static kpid::ingest::DecodedEvent* event = new kpid::ingest::DecodedEvent();
  if (size == 0) return 0;
  // The first byte picks the content-type header; the rest is the value.
  const bool json_header = data[0] & 1;
  const absl::string_view value(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::optional<kpid::ingest::Rejection> rejection = decoder->Decode(value, json_header, event);
  using kpid::model::RejectReason;
  const size_t first = value.find_first_not_of(" \t\r\n");
  const bool binary = !json_header && (first == absl::string_view::npos || value[first] != '{');
  if (binary && !(rejection && (rejection->reason == RejectReason::kEmpty ||
                                rejection->reason == RejectReason::kOversized))) {
    kpid::v1::ProcessEvent parsed;
    const bool parses = parsed.ParseFromArray(value.data(), static_cast<int>(value.size()));
    if (parses != !(rejection && rejection->reason == RejectReason::kMalformedProtobuf)) {
      __builtin_trap();
    }
    if (parses && !SameEvent(parsed, event->proto)) {
      __builtin_trap();
    }
  }
  if (!rejection) {
    // An accepted event is fully resolved.
    if (event->process_index < 0) __builtin_trap();
    if (event->proto.kind() == kpid::v1::ProcessEvent::STAGE_ENTERED && event->stage_index < 0) {
      __builtin_trap();
    }
  }
  return 0;
}

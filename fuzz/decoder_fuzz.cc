// Fuzzes EventDecoder::Decode: any bytes, either content type. The decoder
// must return a verdict for everything and never crash or leak; a value must
// leave in the reused event exactly what protobuf's own parse of it into the
// contract's ProcessEvent makes of it (ParseFromArray for binary,
// JsonStringToMessage for JSON, accepted and rejected alike), though the
// decoder parses into its own view and keeps parts of the previous event.
#include <cstddef>
#include <cstdint>

#include "daemon/ingest/event_decoder.h"
#include "daemon/ingest/event_view_testing.h"

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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kpid::ingest::EventDecoder* decoder = new kpid::ingest::EventDecoder(FuzzConfig());
  static kpid::ingest::DecodedEvent* event = new kpid::ingest::DecodedEvent();
  static uint64_t inputs = 0;
  if (size == 0) return 0;
  // Runs of 64 values, as the worker's: the memo fills across inputs (hits
  // of entries memoized by earlier ones) and is emptied once full.
  if (++inputs % 64 == 0) decoder->StartRun();
  // The first byte picks the content-type header; the rest is the value.
  const bool json_header = data[0] & 1;
  const absl::string_view value(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::optional<kpid::ingest::Rejection> rejection = decoder->Decode(value, json_header, event);
  using kpid::model::RejectReason;
  const size_t first = value.find_first_not_of(" \t\r\n");
  const bool binary = !json_header && (first == absl::string_view::npos || value[first] != '{');
  const bool parsed_at_all = !(rejection && (rejection->reason == RejectReason::kEmpty ||
                                             rejection->reason == RejectReason::kOversized ||
                                             rejection->reason == RejectReason::kJsonTooDeep));
  if (parsed_at_all) {
    kpid::v1::ProcessEvent parsed;
    const bool parses = kpid::ingest::ParseAsContract(value, /*json=*/!binary, &parsed);
    const RejectReason malformed =
        binary ? RejectReason::kMalformedProtobuf : RejectReason::kMalformedJson;
    if (parses != !(rejection && rejection->reason == malformed)) __builtin_trap();
    if (parses && !kpid::ingest::SameEvent(parsed, *event)) __builtin_trap();
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

// Fuzzes EventDecoder::Decode: any bytes, either content type. The decoder
// must return a verdict for everything and never crash or leak.
#include <cstddef>
#include <cstdint>

#include "daemon/ingest/event_decoder.h"

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
  if (size == 0) return 0;
  // The first byte picks the content-type header; the rest is the value.
  const bool json_header = data[0] & 1;
  const absl::string_view value(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::optional<kpid::ingest::Rejection> rejection = decoder->Decode(value, json_header, event);
  if (!rejection) {
    // An accepted event is fully resolved.
    if (event->process_index < 0) __builtin_trap();
    if (event->proto.kind() == kpid::v1::ProcessEvent::STAGE_ENTERED && event->stage_index < 0) {
      __builtin_trap();
    }
  }
  return 0;
}

// Turns a Kafka message value into a validated ProcessEvent with its process
// and stage resolved against the config, or says why it cannot.
//
//   EventDecoder decoder(config);
//   DecodedEvent event;
//   if (std::optional<Rejection> r = decoder.Decode(value, is_json_header, &event)) {
//     ... count r->reason, dead-letter the message with r->detail ...
//   }
//
// A value is JSON (proto3 canonical mapping, parsed by Protobuf's own JSON
// parser) when the content-type header says so or its first non-blank byte is
// `{`; otherwise binary protobuf. Single-threaded: one decoder per worker; it
// reuses `event`'s memory from one message to the next, except after a value
// over kLargeValueBytes, whose memory it drops at the next Decode.
#pragma once

#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "daemon/model/config.h"
#include "daemon/model/reject_reason.h"
#include "kpid/v1/event.pb.h"

namespace kpid::ingest {

struct DecodedEvent {
  kpid::v1::ProcessEvent proto;
  int process_index = -1;  // into Config::processes
  int stage_index = -1;    // into ProcessConfig::stages; STAGE_ENTERED only
  absl::Time occurred_at;
};

struct Rejection {
  model::RejectReason reason;
  std::string detail;  // human-readable, for logs and the dead-letter header
};

class EventDecoder {
 public:
  // `config` must outlive the decoder.
  explicit EventDecoder(const model::Config& config);

  // Fills `out` and returns nullopt, or returns why the value is rejected.
  std::optional<Rejection> Decode(absl::string_view value, bool json_content_type,
                                  DecodedEvent* out);

  // The wall clock for the future- and past-timestamp checks; the worker sets
  // it once per batch. Until set, no event is too far ahead or behind.
  void SetWallNow(absl::Time now) {
    future_limit_ = now + config_.max_future_skew;
    past_limit_ = now - config_.max_past_age;
  }

  // A value above this size may leave the reused message holding far more
  // than an ordinary event needs (a map of thousands of attributes keeps its
  // grown bucket table, which every later Clear() walks; strings keep their
  // capacity), so the next Decode starts from a new message.
  static constexpr size_t kLargeValueBytes = 4096;

  // True for a content-type header value that names JSON
  // ("application/json", any case, parameters allowed).
  static bool IsJsonContentType(absl::string_view header_value);

 private:
  std::optional<Rejection> Validate(DecodedEvent* out) const;

  struct ProcessIndex {
    int index;
    absl::flat_hash_map<std::string, int> stages;
  };

  const model::Config& config_;
  absl::flat_hash_map<std::string, ProcessIndex> processes_;
  absl::Time future_limit_ = absl::InfiniteFuture();
  absl::Time past_limit_ = absl::InfinitePast();
  bool replace_message_ = false;  // the last value was over kLargeValueBytes
};

}  // namespace kpid::ingest

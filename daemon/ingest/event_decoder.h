// Turns a Kafka message value into a validated event (a ProcessEvent as
// kpid/internal/event_view.proto reads it) with its process and stage
// resolved against the config, or says why it cannot.
//
//   EventDecoder decoder(config);
//   DecodedEvent event;
//   if (std::optional<Rejection> r = decoder.Decode(value, is_json_header, &event)) {
//     ... count r->reason, dead-letter the message with r->detail ...
//   }
//
// A value is JSON (proto3 canonical mapping, parsed by Protobuf's own JSON
// parser, for ProcessEvent, then read as binary) when the content-type header
// says so or its first non-blank byte is `{`; otherwise binary protobuf.
// Single-threaded: one decoder per worker; it reuses `event`'s memory from
// one message to the next (an ordinary binary event allocates nothing once
// the memory is there), except after a value over kLargeValueBytes, whose
// memory it drops at the next Decode.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "daemon/model/config.h"
#include "daemon/model/reject_reason.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "google/protobuf/util/type_resolver.h"
#include "kpid/internal/event_view.pb.h"
#include "kpid/v1/event.pb.h"

namespace kpid::ingest {

// An event's attributes in wire order, where a key may come more than once.
using Attributes = google::protobuf::RepeatedPtrField<kpid::internal::AttributeEntry>;

// The value of attribute `key`, or nullptr: the last entry of that key, as
// protobuf's parse of ProcessEvent's map keeps it. Events carry a handful of
// attributes, so a scan costs less than hashing the key.
inline const std::string* FindAttribute(const Attributes& attributes, absl::string_view key) {
  for (int i = attributes.size() - 1; i >= 0; --i) {
    const kpid::internal::AttributeEntry& entry = attributes.Get(i);
    if (entry.key() == key) return &entry.value();
  }
  return nullptr;
}

struct DecodedEvent {
  // Every field of the ProcessEvent, under ProcessEvent's accessor names;
  // attributes through FindAttribute.
  kpid::internal::ProcessEventView proto;
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
  // than an ordinary event needs (thousands of cleared attribute entries;
  // strings keep their capacity), so the next Decode starts from a new
  // message.
  static constexpr size_t kLargeValueBytes = 4096;

  // True for a content-type header value that names JSON
  // ("application/json", any case, parameters allowed).
  static bool IsJsonContentType(absl::string_view header_value);

  // True when the value's first non-blank byte is `{`: JSON whatever the
  // content-type header says, so a caller need not read the header.
  static bool LooksLikeJson(absl::string_view value);

 private:
  // Names (process ids, or one process's stage ids) to their index in the
  // config. A config has a handful of each, and every event looks up one of
  // each: comparing lengths and bytes down a short list costs a fraction of
  // hashing the name; a long list is hashed.
  class NameIndex {
   public:
    void Add(const std::string& name, int index);
    int Find(absl::string_view name) const;  // -1: not there

   private:
    static constexpr size_t kScannedAtMost = 8;
    std::vector<std::pair<std::string, int>> scanned_;
    absl::flat_hash_map<std::string, int> hashed_;  // once past kScannedAtMost
  };

  // ParseFromArray into the reused message, keeping its Timestamp; true
  // exactly when the contract's ParseFromArray accepts the value (the view's
  // strings are bytes: their UTF-8 is checked here).
  bool ParseBinary(absl::string_view value, kpid::internal::ProcessEventView* event);
  // Protobuf's JSON parser for ProcessEvent, into `event`; nullopt if the
  // value is a ProcessEvent's JSON, else why not.
  std::optional<Rejection> ParseJson(absl::string_view value,
                                     kpid::internal::ProcessEventView* event);
  std::optional<Rejection> Validate(DecodedEvent* out) const;

  const model::Config& config_;
  // For the JSON parser: ProcessEvent's type, and the binary it makes of a
  // value (reused).
  std::unique_ptr<google::protobuf::util::TypeResolver> type_resolver_;
  std::string json_type_url_;
  std::string json_binary_;
  // The contract's parse, for the rare value whose every string occurrence
  // the view cannot show (ParseBinary).
  kpid::v1::ProcessEvent contract_;
  NameIndex processes_;
  std::vector<NameIndex> stages_;  // by process index
  absl::Time future_limit_ = absl::InfiniteFuture();
  absl::Time past_limit_ = absl::InfinitePast();
  bool replace_message_ = false;  // the last value was over kLargeValueBytes
};

}  // namespace kpid::ingest

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
// the memory is there and its attribute entries are memoized), except after
// a value over kLargeValueBytes, whose memory it drops at the next Decode.
//
// Attribute entries are memoized by their bytes (AttributeMemo): an event's
// attributes may point into the decoder, valid until its next StartRun(),
// so a caller that reads several events together (the worker's run) calls
// StartRun() before decoding them, and an event kept beyond that is copied
// or calls OwnAttributes().
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "daemon/model/config.h"
#include "daemon/model/reject_reason.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "google/protobuf/util/type_resolver.h"
#include "kpid/internal/event_view.pb.h"
#include "kpid/v1/event.pb.h"

namespace kpid::ingest {

// One attribute entry of an event: its key and value as the contract's parse
// of the entry's bytes makes them (the last occurrence of each, unknown
// fields skipped). The strings belong to the decoder's memo or to the event
// (DecodedEvent::attributes says how long they live).
struct Attribute {
  const std::string* key;
  const std::string* value;
};

// An event's attributes in wire order, where a key may come more than once.
using Attributes = absl::Span<const Attribute>;

// The value of attribute `key`, or nullptr: the last entry of that key, as
// protobuf's parse of ProcessEvent's map keeps it. Events carry a handful of
// attributes, so a scan costs less than hashing the key.
inline const std::string* FindAttribute(Attributes attributes, absl::string_view key) {
  for (size_t i = attributes.size(); i-- > 0;) {
    if (*attributes[i].key == key) return attributes[i].value;
  }
  return nullptr;
}

struct DecodedEvent {
  DecodedEvent() = default;
  // A copy owns its attributes' strings (OwnAttributes), whatever the
  // original's refer to: it may outlive the decoder and its runs.
  DecodedEvent(const DecodedEvent& other);
  DecodedEvent& operator=(const DecodedEvent& other);
  // A move keeps the references (the owned entries keep their addresses).
  DecodedEvent(DecodedEvent&&) = default;
  DecodedEvent& operator=(DecodedEvent&&) = default;

  // Every field of the ProcessEvent, under ProcessEvent's accessor names,
  // but attributes: proto.attributes() are the entries' bytes as they came;
  // read `attributes` instead.
  kpid::internal::ProcessEventView proto;
  // The entries of proto.attributes(), parsed, in the same order; read them
  // with FindAttribute. An entry's strings are the decoder's (its memo) or
  // the event's own (`owned_entries`). The decoder's stay valid as long as
  // the decoder lives and until its next StartRun(): events decoded between
  // two StartRun calls (the worker's run, kafka_ingest.cc) may be read
  // together. An event kept longer calls OwnAttributes() (or is copied).
  absl::InlinedVector<Attribute, 4> attributes;
  int process_index = -1;  // into Config::processes
  int stage_index = -1;    // into ProcessConfig::stages; STAGE_ENTERED only
  absl::Time occurred_at;

  // Copies every attribute into owned_entries, so that the event no longer
  // refers to the decoder's memory.
  void OwnAttributes();
  // Drops the memory a large value left (thousands of entries, strings with
  // their capacity): the next decode into this event starts afresh.
  void ReleaseMemory();

  // The entries the memo does not hold (too long, the memo full, or
  // attributes taken from the contract's parse), reused from event to event.
  google::protobuf::RepeatedPtrField<kpid::internal::AttributeEntry> owned_entries;
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

  // Starts a run: events decoded from here to the next StartRun may be read
  // together, so their attributes' strings (the memo's) stay put until then.
  // The memo is emptied here, and only here, once it holds kMemoEntries.
  // A caller that never calls it keeps the first kMemoEntries distinct
  // entries memoized, and every other entry in its event.
  void StartRun() {
    if (memo_.full()) memo_.Clear();
  }

  // The memo's bounds: entries of at most kMemoEntryBytes (an entry's bytes:
  // key and value with their tags and lengths), at most kMemoEntries of
  // them (under 1 MiB per decoder with their strings).
  static constexpr size_t kMemoEntryBytes = 128;
  static constexpr size_t kMemoEntries = 1024;

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

  // Attribute entries' bytes to what the contract's parse makes of them,
  // for the entries it accepts. An entry's parse is a pure function of its
  // bytes, and producers send the same few (region=emea) over and over:
  // a hit costs a hash of the bytes, where a parse costs a nested message
  // parse, its size and two UTF-8 checks (bench/RESULTS.md §36). Entries
  // never move (each is allocated once and reused after a Clear), so the
  // events of a run may point at their strings; nothing is evicted, the
  // memo is only emptied whole (StartRun).
  class AttributeMemo {
   public:
    struct Entry {
      std::string bytes;  // the index's key
      std::string key;
      std::string value;
    };

    const Entry* Find(absl::string_view bytes) const {
      auto it = index_.find(bytes);
      return it == index_.end() ? nullptr : it->second;
    }
    // The new entry, or nullptr when the memo is full or `bytes` too long.
    const Entry* Insert(absl::string_view bytes, const kpid::internal::AttributeEntry& parsed);
    bool full() const { return used_ == kMemoEntries; }
    void Clear();  // keeps the entries' memory for reuse

   private:
    absl::flat_hash_map<absl::string_view, const Entry*> index_;
    std::vector<std::unique_ptr<Entry>> entries_;  // [0, used_) are in the index
    size_t used_ = 0;
  };

  // What parsing the attribute entries said.
  enum class EntriesParse {
    kValid,    // every entry is one the contract accepts, in `attributes`
    kInvalid,  // an entry the contract rejects
    kUnsure,   // an entry whose every occurrence the parse cannot show
  };

  // ParseFromArray into the reused message, keeping its Timestamp, then the
  // attribute entries into out->attributes; true exactly when the
  // contract's ParseFromArray accepts the value (the view's strings are
  // bytes: their UTF-8 is checked here).
  bool ParseBinary(absl::string_view value, DecodedEvent* out);
  EntriesParse ParseAttributes(DecodedEvent* out);
  // Protobuf's JSON parser for ProcessEvent, into `out`; nullopt if the
  // value is a ProcessEvent's JSON, else why not.
  std::optional<Rejection> ParseJson(absl::string_view value, DecodedEvent* out);
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
  AttributeMemo memo_;
  NameIndex processes_;
  std::vector<NameIndex> stages_;  // by process index
  absl::Time future_limit_ = absl::InfiniteFuture();
  absl::Time past_limit_ = absl::InfinitePast();
  bool replace_message_ = false;  // the last value was over kLargeValueBytes
};

}  // namespace kpid::ingest

#include "daemon/ingest/event_decoder.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/byte_load.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/stubs/common.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "google/protobuf/util/type_resolver_util.h"

namespace kpid::ingest {
namespace {

using kpid::internal::ProcessEventView;
using kpid::v1::ProcessEvent;
using model::RejectReason;

Rejection Reject(RejectReason reason, std::string detail) {
  return Rejection{reason, std::move(detail)};
}

// A ProcessEvent is nested two deep ({"attributes": {...}}); producers may add
// fields kpid does not know yet, so allow some room, but not the thousands of
// levels a hostile message can carry.
constexpr int kMaxJsonDepth = 32;

// What JsonStringToMessage names types by.
constexpr char kTypeUrlPrefix[] = "type.googleapis.com";

// True when `json` nests objects/arrays deeper than kMaxJsonDepth. Only
// brackets outside strings count; the parser still judges everything else.
bool NestedTooDeep(absl::string_view json) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxJsonDepth) return true;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return false;
}

// Every byte below 0x80. ASCII is UTF-8 to any validator, and almost every
// string of an event is ASCII: a few overlapping word loads cost ~10
// instructions where protobuf's validator costs ~80 per string (§30).
bool IsAscii(const std::string& s) {
  const char* p = s.data();
  const size_t n = s.size();
  if (n >= 8) {
    uint64_t bytes = LoadLittleEndian64(p + n - 8);
    for (size_t i = 0; i + 8 < n; i += 8) bytes |= LoadLittleEndian64(p + i);
    return (bytes & 0x8080808080808080u) == 0;
  }
  if (n >= 4) return ((LoadLittleEndian32(p) | LoadLittleEndian32(p + n - 4)) & 0x80808080u) == 0;
  unsigned bytes = 0;
  for (size_t i = 0; i < n; ++i) bytes |= static_cast<unsigned char>(p[i]);
  return (bytes & 0x80u) == 0;
}

// What protobuf's parse requires of a proto3 string field, by the validator
// it uses for it.
inline bool IsUtf8(const std::string& s) {
  return IsAscii(s) ||
         google::protobuf::internal::IsStructurallyValidUTF8(s.data(), static_cast<int>(s.size()));
}

// The view's bytes fields that are strings in the contract (the
// DeclaresEveryProcessEventFieldAlike test lists them from the descriptors).
// (The attribute entries' are checked as each entry is parsed.)
bool StringsAreUtf8(const ProcessEventView& e) {
  return IsUtf8(e.event_id()) && IsUtf8(e.process()) && IsUtf8(e.case_id()) && IsUtf8(e.stage()) &&
         IsUtf8(e.reason());
}

}  // namespace

DecodedEvent::DecodedEvent(const DecodedEvent& other)
    : proto(other.proto),
      attributes(other.attributes),
      process_index(other.process_index),
      stage_index(other.stage_index),
      occurred_at(other.occurred_at) {
  OwnAttributes();
}

DecodedEvent& DecodedEvent::operator=(const DecodedEvent& other) {
  if (this != &other) {
    proto = other.proto;
    attributes = other.attributes;
    process_index = other.process_index;
    stage_index = other.stage_index;
    occurred_at = other.occurred_at;
    OwnAttributes();
  }
  return *this;
}

void DecodedEvent::OwnAttributes() {
  // The strings may be owned_entries' own: copy them all out first.
  google::protobuf::RepeatedPtrField<kpid::internal::AttributeEntry> owned;
  owned.Reserve(static_cast<int>(attributes.size()));
  for (const Attribute& attribute : attributes) {
    kpid::internal::AttributeEntry* entry = owned.Add();
    entry->set_key(*attribute.key);
    entry->set_value(*attribute.value);
  }
  owned_entries.Swap(&owned);
  for (size_t i = 0; i < attributes.size(); ++i) {
    const kpid::internal::AttributeEntry& entry = owned_entries.Get(static_cast<int>(i));
    attributes[i] = Attribute{&entry.key(), &entry.value()};
  }
}

void DecodedEvent::ReleaseMemory() {
  proto = ProcessEventView();
  attributes.clear();
  attributes.shrink_to_fit();  // back inline
  owned_entries = google::protobuf::RepeatedPtrField<kpid::internal::AttributeEntry>();
}

const EventDecoder::AttributeMemo::Entry* EventDecoder::AttributeMemo::Insert(
    absl::string_view bytes, const kpid::internal::AttributeEntry& parsed) {
  if (full() || bytes.size() > kMemoEntryBytes) return nullptr;
  if (used_ == entries_.size()) entries_.push_back(std::make_unique<Entry>());
  Entry& entry = *entries_[used_++];
  entry.bytes.assign(bytes.data(), bytes.size());
  entry.key = parsed.key();
  entry.value = parsed.value();
  index_.emplace(entry.bytes, &entry);
  return &entry;
}

void EventDecoder::AttributeMemo::Clear() {
  index_.clear();
  used_ = 0;
}

void EventDecoder::NameIndex::Add(const std::string& name, int index) {
  scanned_.emplace_back(name, index);
  hashed_.emplace(name, index);
}

int EventDecoder::NameIndex::Find(absl::string_view name) const {
  if (scanned_.size() > kScannedAtMost) {
    auto it = hashed_.find(name);
    return it == hashed_.end() ? -1 : it->second;
  }
  for (const auto& [known, index] : scanned_) {
    if (known == name) return index;
  }
  return -1;
}

EventDecoder::EventDecoder(const model::Config& config)
    : config_(config),
      type_resolver_(google::protobuf::util::NewTypeResolverForDescriptorPool(
          kTypeUrlPrefix, google::protobuf::DescriptorPool::generated_pool())),
      json_type_url_(absl::StrCat(kTypeUrlPrefix, "/", ProcessEvent::descriptor()->full_name())) {
  stages_.resize(config.processes.size());
  for (size_t p = 0; p < config.processes.size(); ++p) {
    processes_.Add(config.processes[p].id, static_cast<int>(p));
    const auto& stages = config.processes[p].stages;
    for (size_t s = 0; s < stages.size(); ++s) stages_[p].Add(stages[s].id, static_cast<int>(s));
  }
}

// ParseFromArray clears the message first, and Clear() deletes the
// occurred_at Timestamp that the parse then allocates again: a new and a
// delete per event. Here the Timestamp is kept (cleared) and the value merged
// into the otherwise cleared message, which parses every field as
// ParseFromArray does. One case differs: a kept Timestamp still reads {0, 0}
// when the value has no occurred_at, where ParseFromArray leaves none (the
// event is then missing_field); so {0, 0} (no occurred_at, or the epoch,
// which max_past_age rejects by default) is parsed again the plain way.
bool EventDecoder::ParseBinary(absl::string_view value, DecodedEvent* out) {
  ProcessEventView* event = &out->proto;
  google::protobuf::Timestamp* kept =
      event->has_occurred_at() ? event->release_occurred_at() : nullptr;
  event->Clear();
  if (kept != nullptr) {
    kept->Clear();
    event->set_allocated_occurred_at(kept);
  }
  // ProcessEventView has no required fields, so "partial" skips nothing.
  if (!event->ParseFrom<ProcessEventView::kMergePartial>(
          google::protobuf::StringPiece(value.data(), value.size()))) {
    return false;
  }
  if (kept != nullptr && kept->seconds() == 0 && kept->nanos() == 0 &&
      !event->ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return false;
  }
  const EntriesParse entries = ParseAttributes(out);
  if (entries == EntriesParse::kInvalid) return false;
  // The contract's parse also rejects a value with a string occurrence that
  // is not UTF-8, and the view's strings are bytes. Re-serialized, a parsed
  // message is never longer than the bytes it came from (unknown fields are
  // kept, varints shortest, an overwritten occurrence or a default value
  // written out is gone), and as long only when every occurrence is in it:
  // then checking the view's strings is checking every occurrence (the
  // attribute entries' bytes are all there; ParseAttributes checked each).
  // Else an occurrence may be gone (a field sent twice, as concatenated
  // messages have it), so the contract's own parse decides.
  if (entries == EntriesParse::kValid && event->ByteSizeLong() == value.size()) {
    return StringsAreUtf8(*event);
  }
  if (!contract_.ParseFromArray(value.data(), static_cast<int>(value.size()))) return false;
  if (entries == EntriesParse::kUnsure) {
    // The attributes as the contract's map holds them: one entry per key,
    // its last, which is what FindAttribute reads of the wire order.
    out->attributes.clear();
    out->owned_entries.Clear();
    for (const auto& [key, attribute_value] : contract_.attributes()) {
      kpid::internal::AttributeEntry* entry = out->owned_entries.Add();
      entry->set_key(key);
      entry->set_value(attribute_value);
      out->attributes.push_back(Attribute{&entry->key(), &entry->value()});
    }
  }
  return true;
}

// Each entry's bytes from the memo, or parsed by protobuf as an
// AttributeEntry: as the contract's parse of a map entry, the last
// occurrence of key and of value counts and unknown fields are skipped
// (kept here, which the size check below needs). The same size argument as
// for the whole value (ParseBinary) says when the parsed entry shows every
// occurrence of its strings, and so when their UTF-8 is the entry's; only
// such entries are memoized, so a hit is always one the contract accepts.
EventDecoder::EntriesParse EventDecoder::ParseAttributes(DecodedEvent* out) {
  out->attributes.clear();
  out->owned_entries.Clear();
  EntriesParse parse = EntriesParse::kValid;
  for (const std::string& bytes : out->proto.attributes()) {
    if (const AttributeMemo::Entry* hit = memo_.Find(bytes)) {
      out->attributes.push_back(Attribute{&hit->key, &hit->value});
      continue;
    }
    kpid::internal::AttributeEntry* entry = out->owned_entries.Add();
    if (!entry->ParseFromString(bytes)) return EntriesParse::kUnsure;
    if (entry->ByteSizeLong() != bytes.size()) {
      parse = EntriesParse::kUnsure;
    } else if (!IsUtf8(entry->key()) || !IsUtf8(entry->value())) {
      return EntriesParse::kInvalid;
    } else if (const AttributeMemo::Entry* added = memo_.Insert(bytes, *entry)) {
      out->owned_entries.RemoveLast();  // kept, cleared, for the next Add
      out->attributes.push_back(Attribute{&added->key, &added->value});
      continue;
    }
    out->attributes.push_back(Attribute{&entry->key(), &entry->value()});
  }
  return parse;
}

bool EventDecoder::LooksLikeJson(absl::string_view value) {
  for (char c : value) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    return c == '{';
  }
  return false;
}

bool EventDecoder::IsJsonContentType(absl::string_view header_value) {
  absl::string_view type = header_value.substr(0, header_value.find(';'));
  return absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(type), "application/json");
}

std::optional<Rejection> EventDecoder::Decode(absl::string_view value, bool json_content_type,
                                              DecodedEvent* out) {
  if (value.empty()) return Reject(RejectReason::kEmpty, "empty message value");
  if (static_cast<int64_t>(value.size()) > config_.kafka.max_message_bytes) {
    return Reject(RejectReason::kOversized,
                  absl::StrCat("value of ", value.size(), " bytes exceeds max_message_bytes ",
                               config_.kafka.max_message_bytes));
  }
  if (replace_message_) {
    out->ReleaseMemory();
    std::string().swap(json_binary_);
  }
  replace_message_ = value.size() > kLargeValueBytes;
  if (json_content_type || LooksLikeJson(value)) {
    if (std::optional<Rejection> rejection = ParseJson(value, out)) return rejection;
  } else if (!ParseBinary(value, out)) {
    return Reject(RejectReason::kMalformedProtobuf, "value is not a binary ProcessEvent");
  }
  return Validate(out);
}

// JsonStringToMessage(value, &process_event) in protobuf 3.21 is this
// transcoding to binary (which judges the JSON) and a parse of the binary;
// here the binary is parsed into the view instead, so JSON is accepted and
// rejected exactly as JsonStringToMessage does, with its messages, and
// decodes to what the same event in binary decodes to.
std::optional<Rejection> EventDecoder::ParseJson(absl::string_view value, DecodedEvent* out) {
  if (NestedTooDeep(value)) {
    return Reject(RejectReason::kJsonTooDeep,
                  absl::StrCat("JSON nested deeper than ", kMaxJsonDepth, " levels"));
  }
  google::protobuf::util::JsonParseOptions options;
  // Binary protobuf skips unknown fields; JSON must agree, so producers can
  // add fields before kpid learns them.
  options.ignore_unknown_fields = true;
  json_binary_.clear();  // the transcoder appends
  auto status = google::protobuf::util::JsonToBinaryString(
      type_resolver_.get(), json_type_url_,
      google::protobuf::StringPiece(value.data(), value.size()), &json_binary_, options);
  if (status.ok() && !ParseBinary(json_binary_, out)) {
    status = google::protobuf::util::InvalidArgumentError(
        "JSON transcoder produced invalid protobuf output.");
  }
  if (!status.ok()) {
    return Reject(RejectReason::kMalformedJson,
                  absl::StrCat("invalid ProcessEvent JSON: ", status.message().as_string()));
  }
  return std::nullopt;
}

std::optional<Rejection> EventDecoder::Validate(DecodedEvent* out) const {
  const ProcessEventView& e = out->proto;
  if (e.event_id().empty()) return Reject(RejectReason::kMissingField, "event_id is empty");
  if (e.process().empty()) return Reject(RejectReason::kMissingField, "process is empty");
  if (e.case_id().empty()) return Reject(RejectReason::kMissingField, "case_id is empty");
  if (e.kind() == ProcessEvent::KIND_UNSPECIFIED) {
    return Reject(RejectReason::kMissingField, "kind is KIND_UNSPECIFIED or not a known kind name");
  }
  if (!ProcessEvent::Kind_IsValid(e.kind())) {
    return Reject(RejectReason::kUnknownKind, absl::StrCat("kind ", e.kind(), " is not known"));
  }
  if (!e.has_occurred_at()) return Reject(RejectReason::kMissingField, "occurred_at is missing");
  using google::protobuf::util::TimeUtil;
  const auto& ts = e.occurred_at();
  if (ts.seconds() < TimeUtil::kTimestampMinSeconds ||
      ts.seconds() > TimeUtil::kTimestampMaxSeconds || ts.nanos() < 0 || ts.nanos() > 999999999) {
    return Reject(RejectReason::kInvalidTimestamp,
                  absl::StrCat("occurred_at {", e.occurred_at().seconds(), "s, ",
                               e.occurred_at().nanos(), "ns} is out of range"));
  }
  if (!std::isfinite(e.amount()) || !std::isfinite(e.score())) {
    return Reject(RejectReason::kInvalidValue, "amount or score is NaN or infinite");
  }
  if (std::abs(e.amount()) > config_.max_abs_value || std::abs(e.score()) > config_.max_abs_value) {
    return Reject(RejectReason::kAbsurdValue,
                  absl::StrCat("amount ", e.amount(), " or score ", e.score(),
                               " exceeds max_abs_value ", config_.max_abs_value));
  }
  const int process = processes_.Find(e.process());
  if (process < 0) {
    return Reject(RejectReason::kUnknownProcess,
                  absl::StrCat("process \"", e.process(), "\" is not configured"));
  }
  out->process_index = process;
  out->stage_index = -1;
  if (e.kind() == ProcessEvent::STAGE_ENTERED) {
    if (e.stage().empty()) return Reject(RejectReason::kMissingField, "stage is empty");
    const int stage = stages_[static_cast<size_t>(process)].Find(e.stage());
    if (stage < 0) {
      return Reject(RejectReason::kUnknownStage,
                    absl::StrCat("stage \"", e.stage(), "\" is not a stage of process \"",
                                 e.process(), "\""));
    }
    out->stage_index = stage;
  }
  // absl::FromUnixNanos is inline; FromUnixSeconds(s) + Nanoseconds(n) calls
  // Duration::operator+= in Debian's shared Abseil (~25 instructions an
  // event). absl::Time is canonical, so both give the same Time; the sum
  // stays for seconds whose nanoseconds overflow int64 (beyond the years
  // 1677-2262).
  constexpr int64_t kNanosFit = std::numeric_limits<int64_t>::max() / 1000000000 - 1;
  const int64_t seconds = ts.seconds();
  out->occurred_at = -kNanosFit <= seconds && seconds <= kNanosFit
                         ? absl::FromUnixNanos(seconds * 1000000000 + ts.nanos())
                         : absl::FromUnixSeconds(seconds) + absl::Nanoseconds(ts.nanos());
  if (out->occurred_at > future_limit_) {
    return Reject(RejectReason::kFutureTimestamp,
                  absl::StrCat("occurred_at ", absl::FormatTime(out->occurred_at),
                               " is more than max_future_skew ahead of the wall clock"));
  }
  if (out->occurred_at < past_limit_) {
    return Reject(RejectReason::kPastTimestamp,
                  absl::StrCat("occurred_at ", absl::FormatTime(out->occurred_at),
                               " is more than max_past_age behind the wall clock"));
  }
  return std::nullopt;
}

}  // namespace kpid::ingest

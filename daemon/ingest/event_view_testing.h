// For tests and the fuzzer: attributes as a decoded event carries them,
// protobuf's own parse of a value into the contract's ProcessEvent, and
// whether the decoder's view of the value holds what that parse holds.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "daemon/ingest/event_decoder.h"
#include "google/protobuf/util/field_comparator.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"

namespace kpid::ingest {

// The entries in this order, as a DecodedEvent's proto.attributes().
inline Attributes MakeAttributes(
    std::initializer_list<std::pair<absl::string_view, absl::string_view>> entries) {
  Attributes attributes;
  for (const auto& [key, value] : entries) {
    kpid::internal::AttributeEntry* entry = attributes.Add();
    entry->set_key(std::string(key));
    entry->set_value(std::string(value));
  }
  return attributes;
}

// Protobuf's own parse of `value` into the contract's ProcessEvent, the one
// the decoder must agree with: ParseFromArray for binary, JsonStringToMessage
// (unknown fields ignored, as the decoder does) for JSON. False when that
// parse rejects the value.
inline bool ParseAsContract(absl::string_view value, bool json, kpid::v1::ProcessEvent* out) {
  if (!json) return out->ParseFromArray(value.data(), static_cast<int>(value.size()));
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  return google::protobuf::util::JsonStringToMessage(
             google::protobuf::StringPiece(value.data(), value.size()), out, options)
      .ok();
}

// Every field equal (a NaN equal to a NaN), and every attribute read through
// FindAttribute as `expected`'s map has it, with no other key. The fields
// are compared on the view's own bytes read back as a ProcessEvent, where
// its attribute entries are map entries again.
inline bool SameEvent(const kpid::v1::ProcessEvent& expected,
                      const kpid::internal::ProcessEventView& view) {
  kpid::v1::ProcessEvent read_back;
  if (!read_back.ParseFromString(view.SerializeAsString())) return false;
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  if (!differencer.Compare(expected, read_back)) return false;
  for (const auto& [key, value] : expected.attributes()) {
    const std::string* found = FindAttribute(view.attributes(), key);
    if (found == nullptr || *found != value) return false;
  }
  absl::flat_hash_set<std::string> keys;
  for (const kpid::internal::AttributeEntry& entry : view.attributes()) keys.insert(entry.key());
  return keys.size() == expected.attributes().size();
}

}  // namespace kpid::ingest

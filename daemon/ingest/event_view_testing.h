// For tests and the fuzzer: attributes as a decoded event carries them, and
// whether the decoder's view of a value holds what protobuf's own parse of
// the same value into the contract's ProcessEvent holds.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "daemon/ingest/event_decoder.h"
#include "google/protobuf/util/field_comparator.h"
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

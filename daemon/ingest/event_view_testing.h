// For tests and the fuzzer: attributes as a decoded event carries them,
// protobuf's own parse of a value into the contract's ProcessEvent, and
// whether the decoder's view of the value holds what that parse holds.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "daemon/ingest/event_decoder.h"
#include "google/protobuf/util/field_comparator.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"

namespace kpid::ingest {

// Attributes with their strings: the entries in this order, as a
// DecodedEvent's attributes. Neither copied nor moved (the attributes point
// at its strings): MakeAttributes(...) is passed where Attributes are.
class OwnedAttributes {
 public:
  explicit OwnedAttributes(
      std::initializer_list<std::pair<absl::string_view, absl::string_view>> entries) {
    for (const auto& [key, value] : entries) {
      kpid::internal::AttributeEntry* entry = entries_.Add();
      entry->set_key(std::string(key));
      entry->set_value(std::string(value));
      attributes_.push_back(Attribute{&entry->key(), &entry->value()});
    }
  }
  OwnedAttributes(const OwnedAttributes&) = delete;
  OwnedAttributes& operator=(const OwnedAttributes&) = delete;

  operator Attributes() const { return attributes_; }  // NOLINT: passed as Attributes

 private:
  google::protobuf::RepeatedPtrField<kpid::internal::AttributeEntry> entries_;
  std::vector<Attribute> attributes_;
};

inline OwnedAttributes MakeAttributes(
    std::initializer_list<std::pair<absl::string_view, absl::string_view>> entries) {
  return OwnedAttributes(entries);
}

// Appends the entry {key, value} to `view`'s attributes as it comes on the
// wire (an AttributeEntry's bytes).
inline void AddAttributeEntry(kpid::internal::ProcessEventView* view, absl::string_view key,
                              absl::string_view value) {
  kpid::internal::AttributeEntry entry;
  entry.set_key(std::string(key));
  entry.set_value(std::string(value));
  *view->add_attributes() = entry.SerializeAsString();
}

// What a decoded event holds on to: its view, its own entries and its
// attribute list.
inline size_t HeldBytes(const DecodedEvent& event) {
  return event.proto.SpaceUsedLong() + event.owned_entries.SpaceUsedExcludingSelfLong() +
         event.attributes.capacity() * sizeof(Attribute);
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
// its attribute entries' bytes are map entries again.
inline bool SameEvent(const kpid::v1::ProcessEvent& expected, const DecodedEvent& event) {
  const kpid::internal::ProcessEventView& view = event.proto;
  if (event.attributes.size() > static_cast<size_t>(view.attributes_size())) return false;
  kpid::v1::ProcessEvent read_back;
  if (!read_back.ParseFromString(view.SerializeAsString())) return false;
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  if (!differencer.Compare(expected, read_back)) return false;
  for (const auto& [key, value] : expected.attributes()) {
    const std::string* found = FindAttribute(event.attributes, key);
    if (found == nullptr || *found != value) return false;
  }
  absl::flat_hash_set<std::string> keys;
  for (const Attribute& attribute : event.attributes) keys.insert(*attribute.key);
  return keys.size() == expected.attributes().size();
}

}  // namespace kpid::ingest

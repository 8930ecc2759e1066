// Why an event was rejected: the `reason` label of kpid_events_rejected_total
// and the kpid-reject-reason header on the dead-letter topic.
//
// The label values are part of the public contract (dashboards, alerts):
// append new reasons, never rename one.
#pragma once

#include <array>
#include <cstddef>

#include "absl/strings/string_view.h"

namespace kpid::model {

enum class RejectReason : uint8_t {
  // Decoding (ingest).
  kEmpty,              // zero-length value (e.g. a tombstone)
  kOversized,          // value larger than kafka.max_message_bytes
  kMalformedProtobuf,  // not a binary ProcessEvent
  kMalformedJson,      // not the proto3 JSON of a ProcessEvent
  kMissingField,       // a field its kind needs is empty
  kUnknownKind,        // kind is not one of ProcessEvent.Kind
  kInvalidTimestamp,   // occurred_at out of the Timestamp range
  kInvalidValue,       // amount or score NaN or infinite
  kUnknownProcess,     // process not in the config
  kUnknownStage,       // stage not in the process
  // Case tracking (cases).
  kSameStage,    // STAGE_ENTERED of the stage the case is already in
  kUnknownCase,  // CASE_COMPLETED / CASE_FALLOUT of a case never started
  kCaseClosed,   // any event of a case closed within dedup_horizon
  // Decoding again (appended: label values keep their place).
  kFutureTimestamp,  // occurred_at beyond the wall clock + max_future_skew
  kPastTimestamp,    // occurred_at before the wall clock - max_past_age
  kAbsurdValue,      // |amount| or |score| above max_abs_value
  kJsonTooDeep,      // JSON nested deeper than an event can be
};

inline constexpr size_t kRejectReasonCount = static_cast<size_t>(RejectReason::kJsonTooDeep) + 1;

inline constexpr std::array<absl::string_view, kRejectReasonCount> kRejectReasonNames = {
    "empty",        "oversized",         "malformed_protobuf", "malformed_json",   "missing_field",
    "unknown_kind", "invalid_timestamp", "invalid_value",      "unknown_process",  "unknown_stage",
    "same_stage",   "unknown_case",      "case_closed",        "future_timestamp", "past_timestamp",
    "absurd_value", "json_too_deep",
};
// A reason added to the enum without its name would render as "".
static_assert(!kRejectReasonNames.back().empty(), "every RejectReason needs a name");

constexpr absl::string_view RejectReasonName(RejectReason reason) {
  return kRejectReasonNames[static_cast<size_t>(reason)];
}

}  // namespace kpid::model

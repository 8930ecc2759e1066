#include "daemon/ingest/event_decoder.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace kpid::ingest {
namespace {

using kpid::v1::ProcessEvent;
using model::RejectReason;

Rejection Reject(RejectReason reason, std::string detail) {
  return Rejection{reason, std::move(detail)};
}

bool LooksLikeJson(absl::string_view value) {
  for (char c : value) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    return c == '{';
  }
  return false;
}

// A ProcessEvent is nested two deep ({"attributes": {...}}); producers may add
// fields kpid does not know yet, so allow some room, but not the thousands of
// levels a hostile message can carry.
constexpr int kMaxJsonDepth = 32;

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

}  // namespace

EventDecoder::EventDecoder(const model::Config& config) : config_(config) {
  for (size_t p = 0; p < config.processes.size(); ++p) {
    ProcessIndex& index = processes_[config.processes[p].id];
    index.index = static_cast<int>(p);
    const auto& stages = config.processes[p].stages;
    for (size_t s = 0; s < stages.size(); ++s) index.stages[stages[s].id] = static_cast<int>(s);
  }
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
  if (replace_message_) out->proto = ProcessEvent();
  replace_message_ = value.size() > kLargeValueBytes;
  if (json_content_type || LooksLikeJson(value)) {
    // Binary values are not cleared here: ParseFromArray clears the message
    // itself, and a second Clear() walked the attribute map again.
    out->proto.Clear();
    if (NestedTooDeep(value)) {
      return Reject(RejectReason::kJsonTooDeep,
                    absl::StrCat("JSON nested deeper than ", kMaxJsonDepth, " levels"));
    }
    google::protobuf::util::JsonParseOptions options;
    // Binary protobuf skips unknown fields; JSON must agree, so producers can
    // add fields before kpid learns them.
    options.ignore_unknown_fields = true;
    auto status = google::protobuf::util::JsonStringToMessage(
        google::protobuf::StringPiece(value.data(), value.size()), &out->proto, options);
    if (!status.ok()) {
      return Reject(RejectReason::kMalformedJson,
                    absl::StrCat("invalid ProcessEvent JSON: ", status.message().as_string()));
    }
  } else if (!out->proto.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return Reject(RejectReason::kMalformedProtobuf, "value is not a binary ProcessEvent");
  }
  return Validate(out);
}

std::optional<Rejection> EventDecoder::Validate(DecodedEvent* out) const {
  const ProcessEvent& e = out->proto;
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
  auto process = processes_.find(e.process());
  if (process == processes_.end()) {
    return Reject(RejectReason::kUnknownProcess,
                  absl::StrCat("process \"", e.process(), "\" is not configured"));
  }
  out->process_index = process->second.index;
  out->stage_index = -1;
  if (e.kind() == ProcessEvent::STAGE_ENTERED) {
    if (e.stage().empty()) return Reject(RejectReason::kMissingField, "stage is empty");
    auto stage = process->second.stages.find(e.stage());
    if (stage == process->second.stages.end()) {
      return Reject(RejectReason::kUnknownStage,
                    absl::StrCat("stage \"", e.stage(), "\" is not a stage of process \"",
                                 e.process(), "\""));
    }
    out->stage_index = stage->second;
  }
  out->occurred_at =
      absl::FromUnixSeconds(e.occurred_at().seconds()) + absl::Nanoseconds(e.occurred_at().nanos());
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

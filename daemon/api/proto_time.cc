#include "daemon/api/proto_time.h"

#include <algorithm>
#include <cstdint>

namespace kpid::api {
namespace {

// The ranges of google/protobuf/timestamp.proto and duration.proto.
constexpr int64_t kMinTimestampSeconds = -62135596800;  // 0001-01-01T00:00:00Z
constexpr int64_t kMaxTimestampSeconds = 253402300799;  // 9999-12-31T23:59:59Z
constexpr int64_t kMaxDurationSeconds = 315576000000;   // 10000 years

}  // namespace

void ToProto(absl::Time t, google::protobuf::Timestamp* out) {
  const absl::Time lo = absl::FromUnixSeconds(kMinTimestampSeconds);
  const absl::Time hi = absl::FromUnixSeconds(kMaxTimestampSeconds);
  t = std::clamp(t, lo, hi);
  const int64_t seconds = absl::ToUnixSeconds(t);  // floor
  out->set_seconds(seconds);
  out->set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds))));
}

void ToProto(absl::Duration d, google::protobuf::Duration* out) {
  d = std::clamp(d, absl::Seconds(-kMaxDurationSeconds), absl::Seconds(kMaxDurationSeconds));
  absl::Duration rem;
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &rem);  // toward zero
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(rem)));
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

bool IsValid(const google::protobuf::Duration& d) {
  if (d.seconds() < -kMaxDurationSeconds || d.seconds() > kMaxDurationSeconds) return false;
  if (d.nanos() <= -1000000000 || d.nanos() >= 1000000000) return false;
  return !((d.seconds() < 0 && d.nanos() > 0) || (d.seconds() > 0 && d.nanos() < 0));
}

}  // namespace kpid::api

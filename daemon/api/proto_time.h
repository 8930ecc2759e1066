// absl::Time / absl::Duration <-> google.protobuf.Timestamp / Duration, for
// the gRPC API and its clients. Infinite or out-of-range values saturate at
// the protobuf limits (years 1..9999, +-10000 years).
#pragma once

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace kpid::api {

void ToProto(absl::Time t, google::protobuf::Timestamp* out);
void ToProto(absl::Duration d, google::protobuf::Duration* out);
absl::Time FromProto(const google::protobuf::Timestamp& t);
absl::Duration FromProto(const google::protobuf::Duration& d);
// Seconds in the range proto3 allows with nanos of the same sign.
bool IsValid(const google::protobuf::Duration& d);

}  // namespace kpid::api

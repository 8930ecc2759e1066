#include "daemon/api/proto_time.h"

#include "gtest/gtest.h"

namespace kpid::api {
namespace {

TEST(ProtoTimeTest, TimestampsRoundTripWithNanos) {
  const absl::Time t = absl::FromUnixSeconds(1772409600) + absl::Nanoseconds(250);
  google::protobuf::Timestamp p;
  ToProto(t, &p);
  EXPECT_EQ(p.seconds(), 1772409600);
  EXPECT_EQ(p.nanos(), 250);
  EXPECT_EQ(FromProto(p), t);
}

TEST(ProtoTimeTest, TimeBeforeEpochKeepsNanosPositive) {
  // -1.5 s is seconds -2, nanos 500000000 (protobuf's rule: nanos >= 0).
  google::protobuf::Timestamp p;
  ToProto(absl::UnixEpoch() - absl::Milliseconds(1500), &p);
  EXPECT_EQ(p.seconds(), -2);
  EXPECT_EQ(p.nanos(), 500000000);
}

TEST(ProtoTimeTest, NegativeDurationsHaveNanosOfTheSameSign) {
  google::protobuf::Duration p;
  ToProto(-absl::Milliseconds(1500), &p);
  EXPECT_EQ(p.seconds(), -1);
  EXPECT_EQ(p.nanos(), -500000000);
  EXPECT_TRUE(IsValid(p));
  EXPECT_EQ(FromProto(p), -absl::Milliseconds(1500));
}

TEST(ProtoTimeTest, InfiniteValuesSaturate) {
  google::protobuf::Duration d;
  ToProto(absl::InfiniteDuration(), &d);
  EXPECT_EQ(d.seconds(), 315576000000);
  google::protobuf::Timestamp t;
  ToProto(absl::InfinitePast(), &t);
  EXPECT_EQ(t.seconds(), -62135596800);
}

TEST(ProtoTimeTest, MixedSignsAreInvalid) {
  google::protobuf::Duration d;
  d.set_seconds(1);
  d.set_nanos(-1);
  EXPECT_FALSE(IsValid(d));
  d.set_seconds(0);
  d.set_nanos(1000000000);
  EXPECT_FALSE(IsValid(d));
}

}  // namespace
}  // namespace kpid::api

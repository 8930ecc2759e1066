#include "daemon/common/duration.h"

#include "gtest/gtest.h"

namespace kpid {
namespace {

TEST(ParsePromDuration, SingleUnits) {
  EXPECT_EQ(*ParsePromDuration("90s"), absl::Seconds(90));
  EXPECT_EQ(*ParsePromDuration("5m"), absl::Minutes(5));
  EXPECT_EQ(*ParsePromDuration("1h"), absl::Hours(1));
  EXPECT_EQ(*ParsePromDuration("7d"), absl::Hours(7 * 24));
  EXPECT_EQ(*ParsePromDuration("2w"), absl::Hours(14 * 24));
  EXPECT_EQ(*ParsePromDuration("1y"), absl::Hours(365 * 24));
  EXPECT_EQ(*ParsePromDuration("250ms"), absl::Milliseconds(250));
  EXPECT_EQ(*ParsePromDuration("0"), absl::ZeroDuration());
  EXPECT_EQ(*ParsePromDuration("0s"), absl::ZeroDuration());
}

TEST(ParsePromDuration, Compound) {
  EXPECT_EQ(*ParsePromDuration("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParsePromDuration("1d12h"), absl::Hours(36));
  EXPECT_EQ(*ParsePromDuration("1m500ms"), absl::Milliseconds(60500));
}

TEST(ParsePromDuration, Rejects) {
  for (const char* bad : {"", "h", "5", "1.5h", "-5m", "+5m", "5 m", "5M", "1m1h", "1h1h", "5x",
                          "1h 30m", "99999999999999999999s", "3000000000000y"}) {
    EXPECT_FALSE(ParsePromDuration(bad).ok()) << bad;
  }
}

TEST(ParsePromDuration, ErrorNamesTheInput) {
  absl::StatusOr<absl::Duration> d = ParsePromDuration("5 minutes");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("\"5 minutes\""), std::string::npos);
}

TEST(FormatPromDuration, RoundTrips) {
  EXPECT_EQ(FormatPromDuration(absl::Hours(36)), "1d12h");
  EXPECT_EQ(FormatPromDuration(absl::Minutes(5)), "5m");
  EXPECT_EQ(FormatPromDuration(absl::Hours(24 * 14)), "14d");
  EXPECT_EQ(FormatPromDuration(absl::Hours(24 * 7)), "7d");
  EXPECT_EQ(FormatPromDuration(absl::ZeroDuration()), "0s");
  EXPECT_EQ(FormatPromDuration(absl::Milliseconds(1500)), "1s500ms");
  for (absl::Duration d :
       {absl::Seconds(1), absl::Minutes(61), absl::Hours(24 * 15), absl::Milliseconds(123456789)}) {
    EXPECT_EQ(*ParsePromDuration(FormatPromDuration(d)), d);
  }
}

}  // namespace
}  // namespace kpid

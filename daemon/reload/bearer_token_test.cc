#include "daemon/reload/bearer_token.h"

#include <cstdio>
#include <fstream>

#include "gtest/gtest.h"

namespace kpid::reload {
namespace {

TEST(BearerTokenTest, MatchesOnlyTheExactToken) {
  EXPECT_TRUE(BearerTokenMatches("Bearer s3cret", "s3cret"));
  EXPECT_TRUE(BearerTokenMatches("bearer s3cret", "s3cret"));  // scheme is case-insensitive
  EXPECT_FALSE(BearerTokenMatches("Bearer s3creT", "s3cret"));
  EXPECT_FALSE(BearerTokenMatches("Bearer s3cre", "s3cret"));
  EXPECT_FALSE(BearerTokenMatches("Bearer s3crets", "s3cret"));
  EXPECT_FALSE(BearerTokenMatches("Bearer ", "s3cret"));
  EXPECT_FALSE(BearerTokenMatches("", "s3cret"));
  EXPECT_FALSE(BearerTokenMatches("s3cret", "s3cret"));
  EXPECT_FALSE(BearerTokenMatches("Basic czNjcmV0", "s3cret"));
  EXPECT_FALSE(BearerTokenMatches("Bearers3cret", "s3cret"));
}

TEST(BearerTokenTest, AnEmptyExpectedTokenNeverMatches) {
  EXPECT_FALSE(BearerTokenMatches("Bearer ", ""));
  EXPECT_FALSE(BearerTokenMatches("", ""));
}

TEST(BearerTokenTest, ReadTokenFileTrimsAndRefusesEmpty) {
  const std::string dir = ::testing::TempDir();
  const std::string path = dir + "/token";
  std::ofstream(path) << "  s3cret\n";
  absl::StatusOr<std::string> token = ReadTokenFile(path);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "s3cret");
  std::ofstream(path) << "\n";
  EXPECT_FALSE(ReadTokenFile(path).ok());
  EXPECT_FALSE(ReadTokenFile(dir + "/no-such-token").ok());
  std::remove(path.c_str());
}

}  // namespace
}  // namespace kpid::reload

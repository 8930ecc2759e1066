#include "daemon/common/flag_args.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kpid {
namespace {

std::vector<std::string> Normalize(std::vector<std::string> in) {
  std::vector<char*> argv;
  for (std::string& s : in) argv.push_back(s.data());
  std::vector<std::string> storage;
  std::vector<char*> out = NormalizeFlagArgs(static_cast<int>(argv.size()), argv.data(), &storage);
  return std::vector<std::string>(out.begin(), out.end());
}

TEST(NormalizeFlagArgs, DashesInFlagNamesBecomeUnderscores) {
  EXPECT_THAT(Normalize({"kpid", "--bootstrap-file=/tmp/a-b", "-log-level", "debug", "dev-broker"}),
              ::testing::ElementsAre("kpid", "--bootstrap_file=/tmp/a-b", "-log_level", "debug",
                                     "dev-broker"));
}

TEST(NormalizeFlagArgs, LoneDashValueIsAttached) {
  EXPECT_THAT(Normalize({"gen", "--output", "-", "--seed", "2"}),
              ::testing::ElementsAre("gen", "--output=-", "--seed", "2"));
}

TEST(NormalizeFlagArgs, NothingAfterDoubleDash) {
  EXPECT_THAT(Normalize({"kpid", "--", "--not-a-flag", "-"}),
              ::testing::ElementsAre("kpid", "--", "--not-a-flag", "-"));
}

}  // namespace
}  // namespace kpid

#include "daemon/common/state_file.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "daemon/common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kpid {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

class StateFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = absl::StrCat(::testing::TempDir(), "/state_file_XXXXXX");
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/partition-3.state";
  }
  void TearDown() override { (void)std::system(absl::StrCat("rm -rf '", dir_, "'").c_str()); }

  std::string dir_;
  std::string path_;
};

TEST_F(StateFileTest, MissingFileIsNoStateAndNoError) {
  StateFileRead read = ReadStateFile(path_, "partition");
  EXPECT_FALSE(read.file.has_value());
  EXPECT_THAT(read.rejected, SizeIs(0));
}

TEST_F(StateFileTest, RoundTripsPayloadAndVersion) {
  const std::string payload("open cases \0 with a zero byte", 29);
  ASSERT_TRUE(WriteStateFile(path_, "partition", 7, payload).ok());
  StateFileRead read = ReadStateFile(path_, "partition");
  ASSERT_TRUE(read.file.has_value());
  EXPECT_EQ(read.file->payload, payload);
  EXPECT_EQ(read.file->version, 7u);
  EXPECT_EQ(read.file->path, path_);
  EXPECT_THAT(read.rejected, SizeIs(0));
}

TEST_F(StateFileTest, SecondWriteKeepsTheFirstAsPrevious) {
  ASSERT_TRUE(WriteStateFile(path_, "partition", 1, "first").ok());
  ASSERT_TRUE(WriteStateFile(path_, "partition", 1, "second").ok());
  EXPECT_EQ(ReadStateFile(path_, "partition").file->payload, "second");
  StateFileRead prev = ReadStateFile(path_ + ".prev", "partition");
  ASSERT_TRUE(prev.file.has_value());
  EXPECT_EQ(prev.file->payload, "first");
}

TEST_F(StateFileTest, CorruptCurrentFallsBackToPreviousAndSaysWhy) {
  ASSERT_TRUE(WriteStateFile(path_, "partition", 1, "first").ok());
  ASSERT_TRUE(WriteStateFile(path_, "partition", 1, "second").ok());
  std::string bytes = *ReadFile(path_);
  bytes[bytes.size() / 2] ^= 0x20;
  ASSERT_TRUE(WriteFileAtomically(path_, bytes).ok());

  StateFileRead read = ReadStateFile(path_, "partition");
  ASSERT_TRUE(read.file.has_value());
  EXPECT_EQ(read.file->payload, "first");
  EXPECT_EQ(read.file->path, path_ + ".prev");
  ASSERT_THAT(read.rejected, SizeIs(1));
  EXPECT_THAT(read.rejected[0].message(), HasSubstr(path_ + ": checksum mismatch"));
}

TEST_F(StateFileTest, CrashBetweenTheRenamesLeavesThePrevious) {
  ASSERT_TRUE(WriteStateFile(path_, "partition", 1, "first").ok());
  ASSERT_TRUE(WriteStateFile(path_, "partition", 1, "second").ok());
  ASSERT_EQ(::unlink(path_.c_str()), 0);  // as if killed after path -> .prev
  StateFileRead read = ReadStateFile(path_, "partition");
  ASSERT_TRUE(read.file.has_value());
  EXPECT_EQ(read.file->payload, "first");
  EXPECT_THAT(read.rejected, SizeIs(0));
}

TEST_F(StateFileTest, EveryTruncationIsRejected) {
  const std::string bytes = EncodeStateEnvelope("partition", 2, "some payload bytes");
  StateFile file;
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeStateEnvelope(bytes.substr(0, n), "partition", "f", &file).ok()) << n;
  }
  EXPECT_TRUE(DecodeStateEnvelope(bytes, "partition", "f", &file).ok());
}

TEST_F(StateFileTest, EveryFlippedBitIsRejected) {
  const std::string bytes = EncodeStateEnvelope("partition", 2, "payload");
  StateFile file;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = bytes;
      flipped[i] = static_cast<char>(flipped[i] ^ (1 << bit));
      EXPECT_FALSE(DecodeStateEnvelope(flipped, "partition", "f", &file).ok()) << i << "/" << bit;
    }
  }
}

TEST_F(StateFileTest, OtherKindIsRejected) {
  ASSERT_TRUE(WriteStateFile(path_, "alerts", 1, "x").ok());
  StateFileRead read = ReadStateFile(path_, "partition");
  EXPECT_FALSE(read.file.has_value());
  ASSERT_THAT(read.rejected, SizeIs(1));
  EXPECT_THAT(read.rejected[0].message(),
              HasSubstr("holds \"alerts\" state, expected \"partition\""));
}

TEST_F(StateFileTest, UnwritableFolderIsAnError) {
  absl::Status s = WriteStateFile(dir_ + "/missing/folder/x.state", "partition", 1, "x");
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("cannot create"));
}

}  // namespace
}  // namespace kpid

// The state topic's record format: a generation is chunks then a manifest;
// a reader takes the newest complete generation, whatever a crash, a lost
// chunk or damaged bytes left in the log.
#include "daemon/engine/state_changelog.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace kpid::engine {
namespace {

// 10 bytes in chunks of 4: "0123", "4567", "89" and the manifest.
constexpr char kState[] = "0123456789";
constexpr size_t kSmallChunks = 4;

void Feed(ChangelogAssembler& assembler, const std::vector<ChangelogRecord>& records) {
  for (const ChangelogRecord& r : records) {
    if (r.value) {
      const absl::string_view value(*r.value);
      assembler.Add(r.key, &value);
    } else {
      assembler.Add(r.key, nullptr);
    }
  }
}

TEST(StateChangelogTest, ChunksThenManifestKeyedByPartition) {
  const std::vector<ChangelogRecord> records = EncodeGeneration(3, 7, 42, kState, kSmallChunks);
  ASSERT_EQ(records.size(), 4u);  // ceil(10 / 4) = 3 chunks + 1 manifest
  EXPECT_EQ(records[0].key, "3/7/0");
  EXPECT_EQ(records[2].key, "3/7/2");
  EXPECT_EQ(records[3].key, "3");  // the manifest: compaction keeps the newest
  for (const ChangelogRecord& r : records) ASSERT_TRUE(r.value.has_value());
  // The chunk bytes are the state's, in order, after a small header.
  EXPECT_NE(records[1].value->find("4567"), std::string::npos);
}

TEST(StateChangelogTest, RestoresTheOnlyGeneration) {
  ChangelogAssembler assembler(3);
  Feed(assembler, EncodeGeneration(3, 7, 42, kState, kSmallChunks));
  absl::StatusOr<RestoredState> restored = assembler.Newest();
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->state, kState);
  EXPECT_EQ(restored->manifest.generation, 7u);
  EXPECT_EQ(restored->manifest.next_offset, 42);
  EXPECT_EQ(restored->manifest.chunk_count, 3u);
  EXPECT_TRUE(assembler.rejected().empty());
}

TEST(StateChangelogTest, EmptyLogAndEmptyState) {
  ChangelogAssembler empty(0);
  EXPECT_EQ(empty.Newest().status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(empty.NewestManifest().has_value());
  ChangelogAssembler assembler(0);
  Feed(assembler, EncodeGeneration(0, 1, 0, "", kSmallChunks));  // one empty chunk + manifest
  ASSERT_TRUE(assembler.Newest().ok());
  EXPECT_EQ(assembler.Newest()->state, "");
}

TEST(StateChangelogTest, NewerGenerationWinsAndTombstonesFreeTheOlder) {
  ChangelogAssembler assembler(1);
  Feed(assembler, EncodeGeneration(1, 10, 5, "old state", kSmallChunks));
  const ChangelogManifest first = *assembler.NewestManifest();
  Feed(assembler, EncodeGeneration(1, 11, 9, "new state!", kSmallChunks));
  Feed(assembler, ChunkTombstones(first));
  absl::StatusOr<RestoredState> restored = assembler.Newest();
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->state, "new state!");
  EXPECT_EQ(restored->manifest.next_offset, 9);
}

TEST(StateChangelogTest, TornGenerationWithoutManifestIsIgnored) {
  // The writer died after two chunks of generation 11: no manifest names them.
  ChangelogAssembler assembler(1);
  Feed(assembler, EncodeGeneration(1, 10, 5, kState, kSmallChunks));
  std::vector<ChangelogRecord> torn = EncodeGeneration(1, 11, 9, "abcdefghij", kSmallChunks);
  torn.resize(2);
  Feed(assembler, torn);
  absl::StatusOr<RestoredState> restored = assembler.Newest();
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->state, kState);
  EXPECT_EQ(restored->manifest.generation, 10u);
}

TEST(StateChangelogTest, MissingChunkFallsBackToTheGenerationBefore) {
  ChangelogAssembler assembler(2);
  Feed(assembler, EncodeGeneration(2, 10, 5, kState, kSmallChunks));
  std::vector<ChangelogRecord> lossy = EncodeGeneration(2, 11, 9, "abcdefghij", kSmallChunks);
  lossy.erase(lossy.begin() + 1);  // chunk 1 never arrived
  Feed(assembler, lossy);
  EXPECT_EQ(assembler.NewestManifest()->generation, 11u);
  absl::StatusOr<RestoredState> restored = assembler.Newest();
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->manifest.generation, 10u);
  ASSERT_EQ(assembler.rejected().size(), 1u);
  EXPECT_NE(assembler.rejected()[0].message().find("lacks chunk 1 of 3"), std::string::npos)
      << assembler.rejected()[0];
}

TEST(StateChangelogTest, MissingChunkWithNothingBeforeIsNotFound) {
  // Compaction kept only the newest manifest, and one of its chunks is gone.
  ChangelogAssembler assembler(2);
  std::vector<ChangelogRecord> lossy = EncodeGeneration(2, 11, 9, kState, kSmallChunks);
  lossy.erase(lossy.begin());
  Feed(assembler, lossy);
  EXPECT_EQ(assembler.Newest().status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(assembler.rejected().size(), 1u);
}

TEST(StateChangelogTest, ChecksumMismatchIsRejected) {
  ChangelogAssembler assembler(4);
  Feed(assembler, EncodeGeneration(4, 10, 5, kState, kSmallChunks));
  std::vector<ChangelogRecord> damaged = EncodeGeneration(4, 11, 9, "abcdefghij", kSmallChunks);
  std::string& chunk = *damaged[0].value;
  chunk.back() = static_cast<char>(chunk.back() ^ 0x01);  // a flipped bit in the state's bytes
  Feed(assembler, damaged);
  absl::StatusOr<RestoredState> restored = assembler.Newest();
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->manifest.generation, 10u);
  ASSERT_EQ(assembler.rejected().size(), 1u);
  EXPECT_NE(assembler.rejected()[0].message().find("checksum"), std::string::npos);
}

TEST(StateChangelogTest, RecordsOfAnotherPartitionOrUndecodableAreRejected) {
  ChangelogAssembler assembler(5);
  Feed(assembler, EncodeGeneration(6, 10, 5, kState, kSmallChunks));  // partition 6's
  const absl::string_view garbage = "not kpid state";
  assembler.Add("5", &garbage);
  EXPECT_EQ(assembler.Newest().status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(assembler.rejected().size(), 5u);  // 3 chunks + 1 manifest of 6, 1 garbage
}

// What a writer restoring from the topic must tombstone after its next
// generation: every chunk still there, of whatever generation.
TEST(StateChangelogTest, NamesEveryChunkNotTombstonedAndTheNewestGeneration) {
  ChangelogAssembler assembler(3);
  Feed(assembler, EncodeGeneration(3, 7, 42, kState, kSmallChunks));  // 3/7/0..2
  std::vector<ChangelogRecord> torn = EncodeGeneration(3, 9, 50, kState, kSmallChunks);
  torn.resize(2);  // chunks 3/9/0 and 3/9/1, then the writer died
  Feed(assembler, torn);
  Feed(assembler, {{"3/7/1", std::nullopt}});
  EXPECT_EQ(assembler.ChunkKeys(), (std::vector<std::string>{"3/7/0", "3/7/2", "3/9/0", "3/9/1"}));
  EXPECT_EQ(assembler.NewestGeneration(), 9u);  // a torn generation's number counts too
  EXPECT_EQ(assembler.NewestManifest()->generation, 7u);
}

}  // namespace
}  // namespace kpid::engine

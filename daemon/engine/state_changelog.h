// The record format of the state topic (config `kafka.state_topic`): a
// compacted Kafka changelog of partition states, the pattern of Kafka
// Streams. State for input partition p lives in state-topic partition p.
//
// A partition's state may exceed what a broker accepts in one message
// (message.max.bytes, 1 MB by default), so one checkpoint is a generation of
// records, produced in this order:
//
//   "<p>/<generation>/<i>"  chunk i of the state (kChunkBytes each at most)
//   "<p>"                   the manifest: generation, next offset, chunk
//                           count, size and CRC-32 of the whole state
//   (after the manifest is delivered) tombstones of the previous
//   generation's chunk keys, so compaction frees them.
//
// The manifest key is the partition: compaction keeps only the newest
// manifest and the chunks it names. A generation is complete when its
// manifest and every chunk it names are present and the CRC matches; a
// reader takes the newest complete generation (a writer that died between
// its chunks and its manifest leaves a torn generation without a manifest,
// which is ignored; tombstoned or missing chunks make a manifest
// incomplete, and the manifest before it, when the log still has it, wins).
//
//   std::vector<ChangelogRecord> records = EncodeGeneration(3, gen, offset, state);
//   ChangelogAssembler assembler(3);
//   for (each record of state-topic partition 3 in log order) assembler.Add(key, value);
//   absl::StatusOr<RestoredState> restored = assembler.Newest();
//
// Values (varints as in state_codec.h): chunk "KPSC" version partition
// generation index bytes...; manifest "KPSM" version partition generation
// next_offset(zigzag) chunk_count total_bytes crc32. The state is the bytes
// a state file holds (EncodeStateEnvelope: kind, version, its own CRC).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kpid::engine {

// Below librdkafka's and the broker's default limits (1 MB) with room for
// the record's key, headers and batch overhead.
inline constexpr size_t kChunkBytes = 512 * 1024;

struct ChangelogRecord {
  std::string key;
  std::optional<std::string> value;  // nullopt: a tombstone
};

struct ChangelogManifest {
  int32_t partition = 0;
  uint64_t generation = 0;
  int64_t next_offset = 0;
  uint32_t chunk_count = 0;
  uint64_t total_bytes = 0;
  uint32_t crc32 = 0;
};

std::string ManifestKey(int32_t partition);
std::string ChunkKey(int32_t partition, uint64_t generation, uint32_t index);

// The chunks of `state` then its manifest (tombstones: ChunkTombstones).
std::vector<ChangelogRecord> EncodeGeneration(int32_t partition, uint64_t generation,
                                              int64_t next_offset, absl::string_view state,
                                              size_t chunk_bytes = kChunkBytes);
// Tombstones for every chunk `manifest` names.
std::vector<ChangelogRecord> ChunkTombstones(const ChangelogManifest& manifest);

struct RestoredState {
  ChangelogManifest manifest;
  std::string state;
};

// Collects one state-topic partition's records in log order and assembles
// the newest complete generation. Memory: the chunks not yet tombstoned
// (about two generations on a live topic). Not thread-safe.
class ChangelogAssembler {
 public:
  explicit ChangelogAssembler(int32_t partition) : partition_(partition) {}

  // `value` null: a tombstone. Records of another partition, or that do not
  // decode, are rejected (see rejected()).
  void Add(absl::string_view key, const absl::string_view* value);

  // The newest manifest seen, complete or not; nullopt before any.
  std::optional<ChangelogManifest> NewestManifest() const;
  // The newest complete generation; NOT_FOUND when there is none (incomplete
  // generations are named in rejected()).
  absl::StatusOr<RestoredState> Newest();
  // Records and generations that could not be used, each saying why.
  const std::vector<absl::Status>& rejected() const { return rejected_; }
  // Keys of the chunks not tombstoned, of every generation: complete, torn
  // (no manifest) or incomplete.
  std::vector<std::string> ChunkKeys() const;
  // The newest generation any manifest or chunk names; 0 before any.
  uint64_t NewestGeneration() const;

 private:
  int32_t partition_;
  std::vector<ChangelogManifest> manifests_;  // log order, newest last
  std::map<std::pair<uint64_t, uint32_t>, std::string> chunks_;
  std::vector<absl::Status> rejected_;
};

}  // namespace kpid::engine

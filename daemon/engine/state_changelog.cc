#include "daemon/engine/state_changelog.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "daemon/common/state_codec.h"
#include "daemon/common/state_file.h"

namespace kpid::engine {
namespace {

constexpr absl::string_view kChunkMagic = "KPSC";
constexpr absl::string_view kManifestMagic = "KPSM";
constexpr uint64_t kFormatVersion = 1;

std::string EncodeManifest(const ChangelogManifest& m) {
  StateEncoder e;
  e.Raw(kManifestMagic);
  e.Varint(kFormatVersion);
  e.Varint(static_cast<uint64_t>(m.partition));
  e.Varint(m.generation);
  e.Signed(m.next_offset);
  e.Varint(m.chunk_count);
  e.Varint(m.total_bytes);
  e.Varint(m.crc32);
  return e.Take();
}

}  // namespace

std::string ManifestKey(int32_t partition) { return absl::StrCat(partition); }

std::string ChunkKey(int32_t partition, uint64_t generation, uint32_t index) {
  return absl::StrCat(partition, "/", generation, "/", index);
}

std::vector<ChangelogRecord> EncodeGeneration(int32_t partition, uint64_t generation,
                                              int64_t next_offset, absl::string_view state,
                                              size_t chunk_bytes) {
  chunk_bytes = std::max<size_t>(chunk_bytes, 1);
  std::vector<ChangelogRecord> records;
  uint32_t index = 0;
  // An empty state still has one (empty) chunk, so every manifest names one.
  for (size_t at = 0; at < state.size() || index == 0; at += chunk_bytes, ++index) {
    StateEncoder e;
    e.Raw(kChunkMagic);
    e.Varint(kFormatVersion);
    e.Varint(static_cast<uint64_t>(partition));
    e.Varint(generation);
    e.Varint(index);
    e.Raw(state.substr(at, chunk_bytes));
    records.push_back({ChunkKey(partition, generation, index), e.Take()});
  }
  const ChangelogManifest manifest{
      .partition = partition,
      .generation = generation,
      .next_offset = next_offset,
      .chunk_count = index,
      .total_bytes = state.size(),
      .crc32 = Crc32(state),
  };
  records.push_back({ManifestKey(partition), EncodeManifest(manifest)});
  return records;
}

std::vector<ChangelogRecord> ChunkTombstones(const ChangelogManifest& manifest) {
  std::vector<ChangelogRecord> records;
  for (uint32_t i = 0; i < manifest.chunk_count; ++i) {
    records.push_back({ChunkKey(manifest.partition, manifest.generation, i), std::nullopt});
  }
  return records;
}

void ChangelogAssembler::Add(absl::string_view key, const absl::string_view* value) {
  if (value == nullptr) {
    // A tombstone: of a chunk ("<p>/<generation>/<index>") or of the
    // partition's manifest (everything before it is gone).
    if (key == ManifestKey(partition_)) {
      manifests_.clear();
      return;
    }
    const std::vector<absl::string_view> parts = absl::StrSplit(key, '/');
    int32_t partition = 0;
    uint64_t generation = 0;
    uint32_t index = 0;
    if (parts.size() == 3 && absl::SimpleAtoi(parts[0], &partition) && partition == partition_ &&
        absl::SimpleAtoi(parts[1], &generation) && absl::SimpleAtoi(parts[2], &index)) {
      chunks_.erase({generation, index});
    }
    return;
  }
  StateDecoder d(*value);
  if (d.Raw(kManifestMagic)) {
    ChangelogManifest m;
    const uint64_t version = d.Varint();
    m.partition = static_cast<int32_t>(d.Varint());
    m.generation = d.Varint();
    m.next_offset = d.Signed();
    m.chunk_count = d.U32();
    m.total_bytes = d.Varint();
    m.crc32 = d.U32();
    if (!d.ok() || version != kFormatVersion || m.partition != partition_ || m.chunk_count == 0) {
      rejected_.push_back(absl::DataLossError(absl::StrCat(
          "state topic partition ", partition_, ": manifest \"", key, "\" does not decode")));
      return;
    }
    manifests_.push_back(m);
    return;
  }
  StateDecoder c(*value);
  if (!c.Raw(kChunkMagic)) {
    rejected_.push_back(absl::DataLossError(absl::StrCat(
        "state topic partition ", partition_, ": record \"", key, "\" is not kpid state")));
    return;
  }
  const uint64_t version = c.Varint();
  const int64_t partition = static_cast<int64_t>(c.Varint());
  const uint64_t generation = c.Varint();
  const uint32_t index = c.U32();
  if (!c.ok() || version != kFormatVersion || partition != partition_) {
    rejected_.push_back(absl::DataLossError(absl::StrCat("state topic partition ", partition_,
                                                         ": chunk \"", key, "\" does not decode")));
    return;
  }
  chunks_[{generation, index}] = std::string(value->substr(c.position()));
}

std::vector<std::string> ChangelogAssembler::ChunkKeys() const {
  std::vector<std::string> keys;
  for (const auto& [chunk, bytes] : chunks_) {
    keys.push_back(ChunkKey(partition_, chunk.first, chunk.second));
  }
  return keys;
}

uint64_t ChangelogAssembler::NewestGeneration() const {
  uint64_t newest = chunks_.empty() ? 0 : chunks_.rbegin()->first.first;
  for (const ChangelogManifest& m : manifests_) newest = std::max(newest, m.generation);
  return newest;
}

std::optional<ChangelogManifest> ChangelogAssembler::NewestManifest() const {
  if (manifests_.empty()) return std::nullopt;
  return manifests_.back();
}

absl::StatusOr<RestoredState> ChangelogAssembler::Newest() {
  for (auto m = manifests_.rbegin(); m != manifests_.rend(); ++m) {
    std::string state;
    bool complete = true;
    for (uint32_t i = 0; i < m->chunk_count && complete; ++i) {
      auto chunk = chunks_.find({m->generation, i});
      if (chunk == chunks_.end()) {
        rejected_.push_back(absl::DataLossError(
            absl::StrCat("state topic partition ", partition_, ": generation ", m->generation,
                         " lacks chunk ", i, " of ", m->chunk_count)));
        complete = false;
        break;
      }
      state += chunk->second;
    }
    if (!complete) continue;
    if (state.size() != m->total_bytes || Crc32(state) != m->crc32) {
      rejected_.push_back(absl::DataLossError(absl::StrCat(
          "state topic partition ", partition_, ": generation ", m->generation,
          " fails its size or checksum (", state.size(), " of ", m->total_bytes, " bytes)")));
      continue;
    }
    return RestoredState{*m, std::move(state)};
  }
  return absl::NotFoundError(
      absl::StrCat("state topic partition ", partition_, ": no complete generation"));
}

}  // namespace kpid::engine

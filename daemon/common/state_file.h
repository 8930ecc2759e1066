// Durable state files (checkpoints under `state_dir`): a payload in a
// versioned, checksummed envelope, written so that a crash at any instant
// leaves a readable file behind.
//
//   absl::Status s = WriteStateFile(path, "partition", /*version=*/1, bytes);
//   StateFileRead read = ReadStateFile(path, "partition");
//   for (const absl::Status& bad : read.rejected) { log + count }
//   if (read.file) Restore(read.file->version, read.file->payload);
//
// Writing: the envelope goes to a temporary file which is fsynced, the file
// it replaces becomes `<path>.prev`, the new one is renamed into place and
// the folder is fsynced. A crash between the two renames leaves only .prev,
// which ReadStateFile then uses.
//
// Reading: a file that is truncated, fails its checksum, or holds another
// kind of state is rejected (with the reason, for the caller to log and
// count) and `<path>.prev` is tried: one bad write never costs more than the
// interval since the previous checkpoint. The payload's version is the
// caller's: a newer kpid keeps reading older versions.
//
// Envelope (little-endian): "KPIDSTAT" | u32 envelope version (1) | kind
// (varint length + bytes) | u32 payload version | u64 payload length |
// payload | u32 CRC-32 (zlib) of everything before it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/optional.h"

namespace kpid {

struct StateFile {
  std::string path;  // the file it was read from: the path asked for or .prev
  uint32_t version = 0;
  std::string payload;
};

struct StateFileRead {
  absl::optional<StateFile> file;  // nullopt: no usable file (first start, or all rejected)
  // Files that exist but could not be used, each naming the file and why.
  std::vector<absl::Status> rejected;
};

// Safe against crashes at any point (see above); thread-compatible per path.
absl::Status WriteStateFile(const std::string& path, absl::string_view kind, uint32_t version,
                            absl::string_view payload);

// `path`, else `<path>.prev`. Missing files are not errors (nothing rejected).
StateFileRead ReadStateFile(const std::string& path, absl::string_view kind);

// CRC-32 (zlib's) of `bytes`: the envelope's checksum, also used by the
// state topic's manifests (daemon/engine/state_changelog.h).
uint32_t Crc32(absl::string_view bytes);

// The envelope alone, for tests and fuzzing: Encode/Decode without the files.
std::string EncodeStateEnvelope(absl::string_view kind, uint32_t version,
                                absl::string_view payload);
// `name` prefixes errors (usually the file's path).
absl::Status DecodeStateEnvelope(absl::string_view bytes, absl::string_view kind,
                                 absl::string_view name, StateFile* out);

}  // namespace kpid

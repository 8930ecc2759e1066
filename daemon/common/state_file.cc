#include "daemon/common/state_file.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "daemon/common/file_util.h"
#include "daemon/common/state_codec.h"

namespace kpid {
namespace {

constexpr absl::string_view kMagic = "KPIDSTAT";
constexpr uint32_t kEnvelopeVersion = 1;

void PutU32(StateEncoder* e, uint32_t v) {
  std::string bytes(4, '\0');
  for (int i = 0; i < 4; ++i) bytes[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  e->Raw(bytes);
}

uint32_t GetU32(absl::string_view bytes) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  return v;
}

std::string Directory(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// The renames are only durable once the folder's entries are on disk.
absl::Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat(dir, ": cannot open: ", std::strerror(errno)));
  }
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat(dir, ": fsync failed: ", std::strerror(saved)));
  }
  return absl::OkStatus();
}

}  // namespace

uint32_t Crc32(absl::string_view bytes) {
  return static_cast<uint32_t>(::crc32(::crc32(0L, Z_NULL, 0),
                                       reinterpret_cast<const Bytef*>(bytes.data()),
                                       static_cast<uInt>(bytes.size())));
}

std::string EncodeStateEnvelope(absl::string_view kind, uint32_t version,
                                absl::string_view payload) {
  StateEncoder e;
  e.Raw(kMagic);
  PutU32(&e, kEnvelopeVersion);
  e.String(kind);
  PutU32(&e, version);
  e.Fixed64(payload.size());
  e.Raw(payload);
  std::string bytes = e.Take();
  const uint32_t crc = Crc32(bytes);
  StateEncoder tail;
  PutU32(&tail, crc);
  absl::StrAppend(&bytes, tail.Take());
  return bytes;
}

absl::Status DecodeStateEnvelope(absl::string_view bytes, absl::string_view kind,
                                 absl::string_view name, StateFile* out) {
  auto corrupt = [name](absl::string_view why) {
    return absl::DataLossError(absl::StrCat(name, ": ", why));
  };
  if (bytes.size() < kMagic.size() + 4 + 4) return corrupt("truncated state file");
  if (bytes.substr(0, kMagic.size()) != kMagic) return corrupt("not a kpid state file");
  const absl::string_view body = bytes.substr(0, bytes.size() - 4);
  if (Crc32(body) != GetU32(bytes.substr(bytes.size() - 4))) {
    return corrupt("checksum mismatch (truncated or corrupt state file)");
  }
  StateDecoder d(body.substr(kMagic.size()));
  if (d.remaining() < 4) return corrupt("truncated state file");
  const uint32_t envelope = GetU32(body.substr(kMagic.size(), 4));
  d.Raw(body.substr(kMagic.size(), 4));
  if (envelope != kEnvelopeVersion) {
    return corrupt(absl::StrCat("state file envelope version ", envelope,
                                " is newer than this kpid reads (", kEnvelopeVersion, ")"));
  }
  const std::string file_kind = d.String();
  if (!d.ok()) return corrupt("truncated state file");
  if (file_kind != kind) {
    return corrupt(absl::StrCat("holds \"", file_kind, "\" state, expected \"", kind, "\""));
  }
  const size_t at = kMagic.size() + d.position();
  if (body.size() < at + 4 + 8) return corrupt("truncated state file");
  const uint32_t version = GetU32(body.substr(at, 4));
  StateDecoder length_decoder(body.substr(at + 4, 8));
  const uint64_t length = length_decoder.Fixed64();
  if (length != body.size() - (at + 12)) return corrupt("payload length mismatch");
  out->version = version;
  out->payload = std::string(body.substr(at + 12));
  return absl::OkStatus();
}

absl::Status WriteStateFile(const std::string& path, absl::string_view kind, uint32_t version,
                            absl::string_view payload) {
  const std::string tmp = absl::StrCat(path, ".new");
  if (absl::Status s = WriteFileAtomically(tmp, EncodeStateEnvelope(kind, version, payload));
      !s.ok()) {
    return s;
  }
  const std::string prev = absl::StrCat(path, ".prev");
  if (::rename(path.c_str(), prev.c_str()) != 0 && errno != ENOENT) {
    return absl::UnavailableError(
        absl::StrCat("rename ", path, " -> ", prev, " failed: ", std::strerror(errno)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(
        absl::StrCat("rename ", tmp, " -> ", path, " failed: ", std::strerror(errno)));
  }
  return SyncDirectory(Directory(path));
}

StateFileRead ReadStateFile(const std::string& path, absl::string_view kind) {
  StateFileRead read;
  for (const std::string& candidate : {path, absl::StrCat(path, ".prev")}) {
    if (::access(candidate.c_str(), F_OK) != 0) continue;
    absl::StatusOr<std::string> bytes = ReadFile(candidate);
    if (!bytes.ok()) {
      read.rejected.push_back(bytes.status());
      continue;
    }
    StateFile file;
    if (absl::Status s = DecodeStateEnvelope(*bytes, kind, candidate, &file); !s.ok()) {
      read.rejected.push_back(s);
      continue;
    }
    file.path = candidate;
    read.file = std::move(file);
    break;
  }
  return read;
}

}  // namespace kpid

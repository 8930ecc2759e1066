// A 64-bit string hash that is the same in every process and build, for
// hashes that outlive the process: the case tracker's remembered closed
// cases and event ids are kept as hashes and go into its serialized state,
// and absl::Hash is seeded per process (a restored tracker would not find
// them again).
//
//   uint64_t h = StableHash64("lead_to_cash-00000042", /*seed=*/42);
//
// The construction is wyhash's (multiply-fold of 64-bit lanes with fixed
// odd constants), reading the bytes in little-endian order whatever the
// machine's, so values do not depend on the platform. Good avalanche in
// both halves: the tracker's tables place a key by its low 32 bits and use
// the high 32 as a fingerprint. Not for untrusted adversarial input (no
// secret seed): a producer that crafts colliding ids only makes its own
// cases share table probes.
#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"
#include "daemon/common/byte_load.h"

namespace kpid::cases {
namespace stable_hash_internal {

inline uint64_t Fold(uint64_t a, uint64_t b) {
  const unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}

inline constexpr uint64_t kK0 = 0xa0761d6478bd642full;
inline constexpr uint64_t kK1 = 0xe7037ed1a0b428dbull;
inline constexpr uint64_t kK2 = 0x8ebc6af09c88c6e3ull;
inline constexpr uint64_t kK3 = 0x589965cc75374cc3ull;

}  // namespace stable_hash_internal

// What StableHash64 starts from for `seed`: a caller hashing many strings
// under one seed (the tracker's case keys, one seed per process) takes it
// once, and StableHash64From(s, StableHashStart(seed)) == StableHash64(s, seed).
inline uint64_t StableHashStart(uint64_t seed) {
  using namespace stable_hash_internal;
  return seed ^ Fold(seed ^ kK0, kK1);
}

inline uint64_t StableHash64From(absl::string_view s, uint64_t start) {
  using namespace stable_hash_internal;
  const char* p = s.data();
  size_t n = s.size();
  uint64_t h = start;
  while (n > 16) {
    h = Fold(LoadLittleEndian64(p) ^ kK1, LoadLittleEndian64(p + 8) ^ h);
    p += 16;
    n -= 16;
  }
  uint64_t a = 0, b = 0;
  if (n > 8) {
    a = LoadLittleEndian64(p);
    b = LoadLittleEndian64(p + n - 8);
  } else if (n >= 4) {
    a = uint64_t{LoadLittleEndian32(p)} << 32 | LoadLittleEndian32(p + n - 4);
  } else if (n > 0) {
    a = uint64_t{static_cast<uint8_t>(p[0])} << 16 |
        uint64_t{static_cast<uint8_t>(p[n >> 1])} << 8 | static_cast<uint8_t>(p[n - 1]);
  }
  return Fold(kK2 ^ s.size(), Fold(a ^ kK1, b ^ h) ^ kK3);
}

inline uint64_t StableHash64(absl::string_view s, uint64_t seed = 0) {
  return StableHash64From(s, StableHashStart(seed));
}

}  // namespace kpid::cases

// Unaligned little-endian loads of 8 and 4 bytes, one load each whatever the
// machine's byte order: for hashes whose values must not depend on the
// platform (cases/stable_hash.h) and word-at-a-time byte comparisons
// (cases/case_id_store.h). Byte-by-byte shifts, which GCC 12 keeps as a
// loop, cost ~10% of the case tracker's time per event (bench/RESULTS.md §21).
//
//   uint64_t a = LoadLittleEndian64(p);  // bytes p[0..8), p[0] lowest
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

namespace kpid {

inline uint64_t LoadLittleEndian64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

inline uint32_t LoadLittleEndian32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
  return v;
}

}  // namespace kpid

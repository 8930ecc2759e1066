// Scans of one cache line (eight 8-byte words) of the case tracker's
// open-addressing tables, all eight words at once. A table word is
// (high 32 bits: a key's tag or fingerprint) << 32 | (low 32 bits: a slot
// or ring position), and a probe starts at a line's first word (see
// case_tracker.h), so "the first empty word", "the words whose tag matches"
// are questions about one line: answered here as an 8-bit mask (bit w:
// line[w]) with SSE2 (every x86-64), instead of a loop of a load, two
// compares and two branches per word. A probe of an absent event id walked
// ~10 words of its line (bench/RESULTS.md §28, §33).
//
//   const uint64_t* line = &words[start];            // start % 8 == 0
//   uint32_t empty = HighEqualMask(line, 0);         // words never used
//   uint32_t before = BeforeFirst(empty);            // the probe's words
//   uint32_t hits = HighEqualMask(line, tag) & before;
//
// Without SSE2 the same masks come from a plain loop.
#pragma once

#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace kpid::cases::word_line {

inline constexpr uint32_t kWords = 8;
inline constexpr uint32_t kAll = 0xff;

// The bits below the lowest set bit of `mask` (all eight when none is set):
// the words a probe reads before the first word that ends it.
inline uint32_t BeforeFirst(uint32_t mask) { return ~mask & (mask - 1) & kAll; }

#if defined(__SSE2__)
namespace internal {

// The high (odd) or low (even) 32-bit halves of four words, in word order.
inline __m128i Halves(const uint64_t* words, int high) {
  const __m128 a = _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(words)));
  const __m128 b = _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(words + 2)));
  return _mm_castps_si128(high != 0 ? _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))
                                    : _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
}
inline uint32_t Mask(__m128i first4, __m128i last4) {
  return static_cast<uint32_t>(_mm_movemask_ps(_mm_castsi128_ps(first4)) |
                               _mm_movemask_ps(_mm_castsi128_ps(last4)) << 4);
}

}  // namespace internal
#endif

// Bit w: the high (kHigh = 1) or low (kHigh = 0) 32 bits of line[w] are `value`.
template <int kHigh>
inline uint32_t HalfEqualMask(const uint64_t* line, uint32_t value) {
#if defined(__SSE2__)
  using internal::Halves;
  const __m128i v = _mm_set1_epi32(static_cast<int>(value));
  return internal::Mask(_mm_cmpeq_epi32(Halves(line, kHigh), v),
                        _mm_cmpeq_epi32(Halves(line + 4, kHigh), v));
#else
  uint32_t mask = 0;
  for (uint32_t w = 0; w < kWords; ++w) {
    mask |= static_cast<uint32_t>(static_cast<uint32_t>(line[w] >> (32 * kHigh)) == value) << w;
  }
  return mask;
#endif
}

inline uint32_t HighEqualMask(const uint64_t* line, uint32_t value) {
  return HalfEqualMask<1>(line, value);
}
inline uint32_t LowEqualMask(const uint64_t* line, uint32_t value) {
  return HalfEqualMask<0>(line, value);
}

}  // namespace kpid::cases::word_line

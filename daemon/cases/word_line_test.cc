#include "daemon/cases/word_line.h"

#include <cstdint>
#include <random>

#include "gtest/gtest.h"

namespace kpid::cases::word_line {
namespace {

uint64_t Word(uint32_t high, uint32_t low) { return uint64_t{high} << 32 | low; }

TEST(WordLineTest, BeforeFirstIsTheBitsBelowTheLowestSetBit) {
  EXPECT_EQ(BeforeFirst(0), 0xffu);  // no word ends the probe: the whole line
  EXPECT_EQ(BeforeFirst(0b0000'0001), 0u);
  EXPECT_EQ(BeforeFirst(0b0000'0100), 0b0000'0011u);
  EXPECT_EQ(BeforeFirst(0b1010'0000), 0b0001'1111u);
  EXPECT_EQ(BeforeFirst(0b1000'0000), 0b0111'1111u);
}

TEST(WordLineTest, MasksOfAHandMadeLine) {
  // Words 1 and 6 have high half 7; words 3 and 5 are empty (0); word 2 has
  // low half 7; word 7 is all ones.
  alignas(64) const uint64_t line[kWords] = {
      Word(1, 1), Word(7, 2), Word(3, 7),  0, Word(0x80000000u, 0x80000000u),
      0,          Word(7, 9), ~uint64_t{0}};
  EXPECT_EQ(HighEqualMask(line, 7), 0b0100'0010u);
  EXPECT_EQ(HighEqualMask(line, 0), 0b0010'1000u);
  EXPECT_EQ(HighEqualMask(line, 0xffffffffu), 0b1000'0000u);
  EXPECT_EQ(LowEqualMask(line, 7), 0b0000'0100u);
  EXPECT_EQ(LowEqualMask(line, 0), 0b0010'1000u);
}

// Against the word-by-word definitions, for random lines whose halves come
// from a few values (so equal ones are common) and random values.
TEST(WordLineTest, MasksAreTheWordByWordOnes) {
  std::mt19937_64 rng(33);
  const uint32_t values[] = {0,           1,           2,           7,          0x7fffffffu,
                             0x80000000u, 0x80000001u, 0xfffffffeu, 0xffffffffu};
  auto pick = [&] {
    return (rng() & 1) != 0 ? values[rng() % std::size(values)] : static_cast<uint32_t>(rng());
  };
  for (int round = 0; round < 20000; ++round) {
    alignas(64) uint64_t storage[kWords + 1];
    // Unaligned too: the loads must not assume 16-byte alignment.
    uint64_t* line = (round & 1) != 0 ? storage : storage + 1;
    for (uint32_t w = 0; w < kWords; ++w) line[w] = Word(pick(), pick());
    const uint32_t v = pick();
    uint32_t high = 0, low = 0;
    for (uint32_t w = 0; w < kWords; ++w) {
      high |= static_cast<uint32_t>(static_cast<uint32_t>(line[w] >> 32) == v) << w;
      low |= static_cast<uint32_t>(static_cast<uint32_t>(line[w]) == v) << w;
    }
    ASSERT_EQ(HighEqualMask(line, v), high) << round;
    ASSERT_EQ(LowEqualMask(line, v), low) << round;
  }
}

}  // namespace
}  // namespace kpid::cases::word_line

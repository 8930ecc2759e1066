#include "daemon/common/huge_page_allocator.h"

#include <cstdint>
#include <utility>

#include "gtest/gtest.h"

namespace kpid {
namespace {

bool AlignedToHugePage(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % huge_pages::kPageBytes == 0;
}

TEST(HugePageAllocatorTest, LargeBlocksAreHugePageAlignedZeroAndWritable) {
  // 3 MiB: rounded up to two huge pages, the second half-used.
  HugeVector<uint64_t> v((size_t{3} << 20) / sizeof(uint64_t));
  EXPECT_TRUE(AlignedToHugePage(v.data()));
  for (uint64_t x : v) ASSERT_EQ(x, 0u);
  for (size_t i = 0; i < v.size(); ++i) v[i] = i;
  EXPECT_EQ(v.back(), v.size() - 1);
  // Growing moves the contents into a new mapping and frees the old one.
  v.resize(v.size() * 2, 7);
  EXPECT_TRUE(AlignedToHugePage(v.data()));
  EXPECT_EQ(v[12345], 12345u);
  EXPECT_EQ(v.back(), 7u);
}

TEST(HugePageAllocatorTest, SmallBlocksKeepTheirTypesAlignment) {
  struct alignas(64) Line {
    char bytes[64];
  };
  HugeVector<Line> lines(3);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(lines.data()) % 64, 0u);
  HugeVector<uint32_t> words(10, 5);
  EXPECT_EQ(words[9], 5u);
}

TEST(HugePageAllocatorTest, ArraysAreFreedWithTheirSize) {
  struct Record {
    int64_t at;
    uint64_t key;
  };
  HugePageArray<Record> big = MakeHugePageArray<Record>(size_t{1} << 18);  // 4 MiB
  EXPECT_TRUE(AlignedToHugePage(big.get()));
  big[(size_t{1} << 18) - 1] = {1, 2};
  HugePageArray<Record> small = MakeHugePageArray<Record>(16);
  small[15] = {3, 4};
  big = std::move(small);  // frees the 4 MiB mapping
  EXPECT_EQ(big[15].key, 4u);
}

}  // namespace
}  // namespace kpid

#include "daemon/cases/case_id_store.h"

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "daemon/cases/stable_hash.h"
#include "gtest/gtest.h"

namespace kpid::cases {
namespace {

TEST(CaseIdStore, ShortIdsAreInlineLongOnesPooled) {
  CaseIdStore store;
  StoredId empty, short_id, max_inline, long_id;
  store.Assign(&empty, "");
  store.Assign(&short_id, "c1");
  store.Assign(&max_inline, std::string(23, 'x'));  // 23 bytes: the most inline
  EXPECT_EQ(store.pooled_bytes(), 0u);
  store.Assign(&long_id, std::string(24, 'y'));
  EXPECT_EQ(store.pooled_bytes(), 64u * 1024);
  EXPECT_EQ(CaseIdStore::View(empty), "");
  EXPECT_EQ(CaseIdStore::View(short_id), "c1");
  EXPECT_EQ(CaseIdStore::View(max_inline), std::string(23, 'x'));
  EXPECT_EQ(CaseIdStore::View(long_id), std::string(24, 'y'));
  store.Release(&long_id);
  EXPECT_EQ(CaseIdStore::View(long_id), "");
}

TEST(CaseIdStore, FreedBlocksOfASizeAreReused) {
  CaseIdStore store;
  StoredId a, b;
  store.Assign(&a, std::string(30, 'a'));  // a 32-byte block
  const char* block = CaseIdStore::View(a).data();
  store.Release(&a);
  store.Assign(&b, std::string(25, 'b'));  // also 32 bytes: the same block
  EXPECT_EQ(CaseIdStore::View(b).data(), block);
  EXPECT_EQ(CaseIdStore::View(b), std::string(25, 'b'));
  store.Release(&b);
}

TEST(CaseIdStore, ManyIdsOfManySizesStayIntact) {
  CaseIdStore store;
  std::vector<StoredId> ids(2000);
  auto value = [](size_t i) { return std::string(i % 300, static_cast<char>('a' + i % 26)); };
  for (size_t i = 0; i < ids.size(); ++i) store.Assign(&ids[i], value(i));
  for (size_t i = 0; i < ids.size(); i += 2) store.Release(&ids[i]);
  for (size_t i = 0; i < ids.size(); i += 2) store.Assign(&ids[i], value(i + 7));
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(CaseIdStore::View(ids[i]), i % 2 ? value(i) : value(i + 7)) << i;
  }
  // Past the largest pooled block: allocated on its own, freed on release.
  StoredId huge;
  store.Assign(&huge, std::string(CaseIdStore::kMaxPooled + 1, 'h'));
  EXPECT_EQ(CaseIdStore::View(huge).size(), CaseIdStore::kMaxPooled + 1);
  store.Release(&huge);
  for (StoredId& id : ids) store.Release(&id);
}

TEST(CaseIdStore, EqualsIsViewEqualityForEveryLengthAndByte) {
  CaseIdStore store;
  // Inline (0-23 bytes, every overlapping-word case) and pooled lengths.
  for (size_t n = 0; n <= 40; ++n) {
    std::string value(n, 'a');
    for (size_t i = 0; i < n; ++i) value[i] = static_cast<char>('a' + (i * 7) % 26);
    StoredId id;
    store.Assign(&id, value);
    EXPECT_TRUE(CaseIdStore::Equals(id, value)) << n;
    // A copy elsewhere: compared by bytes, not by address.
    EXPECT_TRUE(CaseIdStore::Equals(id, std::string(value))) << n;
    // One byte off at each position, including bytes past 0x7f.
    for (size_t i = 0; i < n; ++i) {
      for (char flip : {'\x01', '\x80'}) {
        std::string other = value;
        other[i] ^= flip;
        EXPECT_FALSE(CaseIdStore::Equals(id, other)) << n << " " << i;
      }
    }
    // A prefix or an extension: not equal, though every byte read matches.
    if (n > 0) {
      EXPECT_FALSE(CaseIdStore::Equals(id, value.substr(0, n - 1))) << n;
    }
    EXPECT_FALSE(CaseIdStore::Equals(id, value + "a")) << n;
    EXPECT_FALSE(CaseIdStore::Equals(id, value + '\0')) << n;
    store.Release(&id);
  }
}

// The hash as first written, byte by byte: StableHash64 must give its values.
uint64_t ReferenceStableHash64(absl::string_view s, uint64_t seed) {
  using namespace stable_hash_internal;
  auto load = [](const char* p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<uint8_t>(p[i])} << (8 * i);
    return v;
  };
  const char* p = s.data();
  size_t n = s.size();
  uint64_t h = seed ^ Fold(seed ^ kK0, kK1);
  while (n > 16) {
    h = Fold(load(p, 8) ^ kK1, load(p + 8, 8) ^ h);
    p += 16;
    n -= 16;
  }
  uint64_t a = 0, b = 0;
  if (n > 8) {
    a = load(p, 8);
    b = load(p + n - 8, 8);
  } else if (n >= 4) {
    a = load(p, 4) << 32 | load(p + n - 4, 4);
  } else if (n > 0) {
    a = uint64_t{static_cast<uint8_t>(p[0])} << 16 |
        uint64_t{static_cast<uint8_t>(p[n >> 1])} << 8 | static_cast<uint8_t>(p[n - 1]);
  }
  return Fold(kK2 ^ s.size(), Fold(a ^ kK1, b ^ h) ^ kK3);
}

TEST(StableHash64, WordLoadsGiveTheByteByByteValues) {
  std::string bytes(100, '\0');
  uint64_t state = 12345;
  for (char& c : bytes) {
    state = state * 6364136223846793005u + 1442695040888963407u;
    c = static_cast<char>(state >> 56);  // half of them past 0x7f
  }
  for (size_t n = 0; n <= bytes.size(); ++n) {
    for (uint64_t seed : {uint64_t{0}, uint64_t{7}, ~uint64_t{0}}) {
      // At several alignments: the word loads must not depend on it.
      for (size_t offset = 0; offset + n <= bytes.size() && offset < 8; ++offset) {
        const absl::string_view s(bytes.data() + offset, n);
        EXPECT_EQ(StableHash64(s, seed), ReferenceStableHash64(s, seed)) << n << " " << offset;
        // The tracker's case keys: the start taken once per seed.
        EXPECT_EQ(StableHash64From(s, StableHashStart(seed)), ReferenceStableHash64(s, seed))
            << n << " " << offset;
      }
    }
  }
}

// Remembered hashes are serialized: the function must not change between
// builds or runs. The pinned values were recorded from the first version
// (a regression pin, not a hand computation): a change here breaks
// restoring the dedup state written by earlier builds.
TEST(StableHash64, IsFixed) {
  EXPECT_EQ(StableHash64(""), 0x8f1ff72059d66526u);
  EXPECT_EQ(StableHash64("lead_to_cash-00000042", 7), 0x0b4ab387ac1d917fu);
  EXPECT_EQ(StableHash64("an event id that is longer than thirty-two bytes"), 0xd0773a941856e85bu);
  EXPECT_NE(StableHash64("a"), StableHash64("b"));
  EXPECT_NE(StableHash64("abc", 1), StableHash64("abc", 2));
  // Every length class (0, 1-3, 4-8, 9-16, longer) depends on every byte.
  const std::string base = "lead_to_cash-00000042-and-some-more";
  for (size_t n = 0; n <= base.size(); ++n) {
    for (size_t i = 0; i < n; ++i) {
      std::string flipped = base.substr(0, n);
      flipped[i] ^= 1;
      EXPECT_NE(StableHash64(base.substr(0, n)), StableHash64(flipped)) << n << " " << i;
    }
  }
}

}  // namespace
}  // namespace kpid::cases

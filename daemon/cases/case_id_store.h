// Case ids as the case tracker keeps them: 24 bytes in the case record,
// the id itself when it fits (up to 23 bytes: kpi-loadgen's
// "<process>-<8 digits>" ids for process names up to 14 characters, most
// order and ticket numbers), else a pointer into a pool of exact-size
// blocks.
//
//   CaseIdStore store;
//   StoredId id;
//   store.Assign(&id, "lead_to_cash-00000042");  // worker thread
//   absl::string_view v = CaseIdStore::View(id);
//   store.Release(&id);                          // before the record is reused
//
// Why not std::string or a 16-byte small string: a std::string is 32 bytes
// and allocates past 15; a 16-byte small id would allocate for every
// loadgen id (20-22 bytes), 16 bytes more per case plus the allocation. The
// pool hands out blocks of the id's length rounded up to 8 bytes from 64 KiB
// pages and reuses freed blocks of the same size (ids of a process usually
// share a length), so a long id costs its length, not an allocation of its
// own, once the pool has grown: nothing is allocated per event after
// warm-up. Ids longer than kMaxPooled (4 KiB, pathological) are allocated
// one by one.
//
// StoredId is trivially copyable (records move with memcpy); ownership of
// a pooled block is by convention: exactly one record holds it until
// Release. Single writer: the tracker's worker thread.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/string_view.h"
#include "daemon/common/byte_load.h"

namespace kpid::cases {

struct StoredId {
  static constexpr size_t kInline = 23;
  static constexpr uint8_t kOutOfLine = 0xff;
  // Inline: bytes[0, tag) is the id. Out of line: bytes[0, 8) a char*,
  // bytes[8, 12) the length (uint32).
  char bytes[kInline] = {};
  uint8_t tag = 0;
};
static_assert(sizeof(StoredId) == 24);

class CaseIdStore {
 public:
  static constexpr size_t kMaxPooled = 4096;

  CaseIdStore();
  ~CaseIdStore();
  CaseIdStore(const CaseIdStore&) = delete;
  CaseIdStore& operator=(const CaseIdStore&) = delete;

  // `id` must hold nothing (fresh, or released).
  void Assign(StoredId* id, absl::string_view value);
  // Gives back what `id` holds; it then holds the empty id.
  void Release(StoredId* id);

  static absl::string_view View(const StoredId& id) {
    if (id.tag != StoredId::kOutOfLine) return absl::string_view(id.bytes, id.tag);
    const char* data;
    uint32_t size;
    std::memcpy(&data, id.bytes, sizeof data);
    std::memcpy(&size, id.bytes + sizeof data, sizeof size);
    return absl::string_view(data, size);
  }

  // View(id) == value, reading no byte outside either: memcmp reads an
  // inline id as 32 bytes from its start, 8 past the record's end, so the
  // tracker's id check touched the next record's cache line too (a miss of
  // its own per lookup, §21).
  static bool Equals(const StoredId& id, absl::string_view value) {
    if (id.tag == StoredId::kOutOfLine) return View(id) == value;
    const size_t n = id.tag;
    if (n != value.size()) return false;
    const char* a = id.bytes;
    const char* b = value.data();
    // Overlapping words cover [0, n): [0, 8) and [n - 8, n), plus [8, 16)
    // past 16 bytes (n <= 23); [0, 4) and [n - 4, n) for 4 to 7 bytes.
    if (n >= 8) {
      uint64_t diff = (LoadLittleEndian64(a) ^ LoadLittleEndian64(b)) |
                      (LoadLittleEndian64(a + n - 8) ^ LoadLittleEndian64(b + n - 8));
      if (n > 16) diff |= LoadLittleEndian64(a + 8) ^ LoadLittleEndian64(b + 8);
      return diff == 0;
    }
    if (n >= 4) {
      return ((LoadLittleEndian32(a) ^ LoadLittleEndian32(b)) |
              (LoadLittleEndian32(a + n - 4) ^ LoadLittleEndian32(b + n - 4))) == 0;
    }
    for (size_t i = 0; i < n; ++i) {
      if (a[i] != b[i]) return false;
    }
    return true;
  }

  // Bytes of pool pages allocated (ids longer than kInline).
  size_t pooled_bytes() const { return pages_.size() * kPageBytes; }

 private:
  static constexpr size_t kPageBytes = 64 * 1024;
  static constexpr size_t kClasses = kMaxPooled / 8;  // class c: blocks of 8 (c + 1) bytes
  static size_t ClassOf(size_t size) { return (size - 1) / 8; }

  char* Allocate(size_t size);
  void Free(char* block, size_t size);

  // Per class: the first free block; a free block's first 8 bytes point to
  // the next.
  std::vector<char*> free_;
  // Unused rest of the current page, shared by all classes.
  char* bump_ = nullptr;
  size_t bump_left_ = 0;
  std::vector<std::unique_ptr<char[]>> pages_;
};

}  // namespace kpid::cases

#include "daemon/common/huge_page_allocator.h"

#include <sys/mman.h>

#include <cstdint>

namespace kpid::huge_pages {
namespace {

size_t RoundUp(size_t bytes) { return (bytes + kPageBytes - 1) & ~(kPageBytes - 1); }

}  // namespace

void* Map(size_t bytes) {
  const size_t length = RoundUp(bytes);
  // mmap only promises 4 KiB alignment: map a huge page more and trim both
  // ends, so every 2 MiB of the block can be one huge page.
  void* raw = mmap(nullptr, length + kPageBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t begin = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (begin + kPageBytes - 1) & ~(uintptr_t{kPageBytes} - 1);
  if (aligned > begin) munmap(raw, aligned - begin);
  const uintptr_t tail = begin + length + kPageBytes - (aligned + length);
  if (tail > 0) munmap(reinterpret_cast<void*>(aligned + length), tail);
  void* block = reinterpret_cast<void*>(aligned);
  // A hint: without THP (or refused) the block is ordinary pages.
  madvise(block, length, MADV_HUGEPAGE);
  return block;
}

void Unmap(void* p, size_t bytes) { munmap(p, RoundUp(bytes)); }

}  // namespace kpid::huge_pages

// An allocator for large arrays read at random (hash indexes, record
// arrays): blocks of kMinBytes or more are mapped 2 MiB-aligned and marked
// MADV_HUGEPAGE, so with transparent huge pages in `madvise` mode (the
// common default) the kernel backs them with 2 MiB pages. A random access
// into tens of MB in 4 KiB pages is also a TLB miss and a page walk; in
// 2 MiB pages the TLB covers the array (bench/RESULTS.md §10).
//
//   HugeVector<uint64_t> index(1 << 22);
//   HugePageArray<Record> ring = MakeHugePageArray<Record>(n);  // not initialized
//
// Smaller blocks come from operator new, so a small table (a quiet
// partition's) costs no more memory than before. Mapped memory is zero and
// becomes resident when first written, in 2 MiB steps where the kernel gives
// huge pages (else 4 KiB). Without THP (`never`), or where madvise fails,
// the blocks are ordinary pages: only the TLB benefit is lost. Stateless:
// any two allocators are equal.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

namespace kpid {

namespace huge_pages {

// Blocks this large or larger are mapped as huge pages; below, operator new.
inline constexpr size_t kMinBytes = size_t{2} << 20;
inline constexpr size_t kPageBytes = size_t{2} << 20;

// `bytes` (>= kMinBytes) rounded up to whole huge pages, 2 MiB-aligned;
// throws std::bad_alloc when the mapping fails, as operator new does.
void* Map(size_t bytes);
void Unmap(void* p, size_t bytes);

}  // namespace huge_pages

template <typename T>
class HugePageAllocator {
 public:
  using value_type = T;

  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}  // NOLINT: rebinding is implicit

  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes >= huge_pages::kMinBytes) return static_cast<T*>(huge_pages::Map(bytes));
    return static_cast<T*>(::operator new (bytes, std::align_val_t{alignof(T)}));
  }
  void deallocate(T* p, size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes >= huge_pages::kMinBytes) {
      huge_pages::Unmap(p, bytes);
    } else {
      // Unsized: clang does not declare the sized form without
      // -fsized-deallocation.
      ::operator delete (p, std::align_val_t{alignof(T)});
    }
  }

  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const {
    return true;
  }
};

template <typename T>
using HugeVector = std::vector<T, HugePageAllocator<T>>;

// An array of n trivial T, not initialized (only what is written becomes
// resident), freed by its unique_ptr.
template <typename T>
class HugePageArrayDeleter {
 public:
  HugePageArrayDeleter() = default;
  explicit HugePageArrayDeleter(size_t n) : n_(n) {}
  void operator()(T* p) const { HugePageAllocator<T>().deallocate(p, n_); }

 private:
  size_t n_ = 0;
};
template <typename T>
using HugePageArray = std::unique_ptr<T[], HugePageArrayDeleter<T>>;

template <typename T>
HugePageArray<T> MakeHugePageArray(size_t n) {
  static_assert(std::is_trivially_default_constructible_v<T> &&
                std::is_trivially_destructible_v<T>);
  return HugePageArray<T>(HugePageAllocator<T>().allocate(n), HugePageArrayDeleter<T>(n));
}

}  // namespace kpid

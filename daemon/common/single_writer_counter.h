// A counter with exactly one writing thread and any number of readers.
//
//   SingleWriterCounter consumed;   // owned by a worker
//   consumed.Add();                 // worker thread only
//   uint64_t n = consumed.Get();    // any thread
//
// With one writer, load + store replaces a locked read-modify-write: the add
// costs a plain store on x86. Relaxed order is enough because readers only
// need some recent value of this one counter, never an ordering against other
// memory; totals that must agree with each other are read after the writers
// have stopped (tests) or are allowed to be one event apart (scrapes).
#pragma once

#include <atomic>
#include <cstdint>

namespace kpid {

class SingleWriterCounter {
 public:
  void Add(uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t Get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// The largest value seen; single writer, any readers (same reasoning).
class SingleWriterMax {
 public:
  explicit SingleWriterMax(int64_t initial) : value_(initial) {}
  void Observe(int64_t v) {
    if (v > value_.load(std::memory_order_relaxed)) value_.store(v, std::memory_order_relaxed);
  }
  int64_t Get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_;
};

}  // namespace kpid

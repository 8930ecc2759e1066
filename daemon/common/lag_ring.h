// Holds items back by a fixed number of later items: each is given on once
// N items have come after it, or at Flush, in arrival order. No allocation.
// The case tracker holds CaseSteps back this way so the aggregator can start
// loading a step's lines a few steps before it writes them (CaseSink::
// PrefetchStep); the aggregator benchmark replays recorded facts the same way.
//
//   LagRing<CaseStep, 4> held;
//   held.Push(step, [&](const CaseStep& s) { sink.CaseStepped(s); });
//   held.Flush([&](const CaseStep& s) { sink.CaseStepped(s); });
//
// Single-threaded.
#pragma once

#include <array>
#include <cstddef>

namespace kpid {

template <typename T, size_t N>
class LagRing {
 public:
  // Holds `item`; first gives on the oldest held item if N are held.
  template <typename Emit>
  void Push(const T& item, const Emit& emit) {
    if (size_ == N) {
      emit(items_[first_]);
      items_[first_] = item;
      first_ = (first_ + 1) % N;
    } else {
      items_[(first_ + size_++) % N] = item;
    }
  }
  // Gives on every held item, oldest first.
  template <typename Emit>
  void Flush(const Emit& emit) {
    for (; size_ > 0; --size_) {
      emit(items_[first_]);
      first_ = (first_ + 1) % N;
    }
  }

 private:
  std::array<T, N> items_{};
  size_t first_ = 0;
  size_t size_ = 0;
};

}  // namespace kpid

// The per-process bound on dimension combinations (DESIGN §4,
// `dimensions.max_series_per_process`) across every partition of a replica.
// Each partition's DimensionTable interns its own combinations; one
// SeriesAdmission, shared by all of them, decides which combinations new to
// a partition may become series, so the replica exports at most the limit
// per process however many partitions it reads.
//
//   SeriesAdmission admission(config);                   // EngineRegistry
//   DimensionTable dims(config, &admission);             // each partition
//   bool ok = admission.Admit(process, StableHash64(key, 0));  // any thread
//
// Per process, a fixed-capacity open-addressing table (linear probing) of
// 64-bit combination hashes and an atomic count of admitted combinations;
// no mutex, no allocation after construction. A combination is admitted
// while the count is below the limit and then stays admitted; once the
// count reaches the limit it never goes down, so every later new
// combination is refused. Every thread gets the same verdict for a
// combination: a thread that finds a combination another thread is
// deciding waits the few instructions that takes (a CAS on the count), and
// a refusal re-reads the table after seeing the full count, in which every
// admission that made it full is already visible.
//
// Restored tables Register their combinations unconditionally (their
// DimsIds are referred to by the restored aggregator and cases), which may
// take the count past the limit; new combinations are then refused. When
// the table is full (more restored combinations than the capacity), a
// registered combination is counted but not stored, so another partition
// folds it: the bound holds, at the cost of series.
//
// Memory: per process, 8 B x the power of two >= 2 x limit + 64 (32 KB for
// the default 1000), allocated at construction.
//
// Combinations are never removed (a revoked partition's stay admitted):
// the set is what this replica may export, and it only grows to the limit.
// Two combinations with the same hash share one verdict.
//
// Thread safety: every method, any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "daemon/model/config.h"

namespace kpid::cases {

class SeriesAdmission {
 public:
  // One table per configured process, each admitting up to the config's
  // dimensions.max_series_per_process combinations.
  explicit SeriesAdmission(const model::Config& config);
  SeriesAdmission(const SeriesAdmission&) = delete;
  SeriesAdmission& operator=(const SeriesAdmission&) = delete;

  // True if `hash`'s combination of `process` is admitted (already, or now
  // because the count was below the limit).
  bool Admit(int process, uint64_t hash);
  // Admits `hash` whatever the count (a restored combination).
  void Register(int process, uint64_t hash);

  // Combinations admitted or registered for `process`.
  uint64_t Admitted(int process) const;
  int64_t limit() const { return limit_; }

 private:
  struct Table {
    std::unique_ptr<std::atomic<uint64_t>[]> slots;
    std::atomic<uint64_t> count{0};
  };
  enum class Probe { kAdmitted, kRefused, kAbsent, kFull };

  // Walks the chain of the combination whose slot value is `base` (its
  // hash, state bits cleared): kAdmitted / kRefused when its entry says so
  // (waiting out a pending one), else kAbsent with `*empty` the first empty
  // slot, or kFull.
  Probe Find(const Table& t, uint64_t base, size_t* empty) const;
  // Takes one unit of the count if below the limit (or always, `force`).
  bool Reserve(Table& t, bool force);

  int64_t limit_;
  size_t mask_;  // capacity - 1 (a power of two)
  std::vector<std::unique_ptr<Table>> tables_;
};

}  // namespace kpid::cases

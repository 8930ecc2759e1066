// The per-process bound on dimension combinations (DESIGN §4,
// `dimensions.max_series_per_process`) across the partitions a replica
// holds. Each partition's DimensionTable interns its own combinations; one
// SeriesAdmission, shared by all of them, decides which combinations new to
// a partition may become series, so the replica exports at most the limit
// per process however many partitions it reads.
//
//   SeriesAdmission admission(config);                   // EngineRegistry
//   DimensionTable dims(config, &admission);             // each partition
//   if (admission.Admit(process, hash)) ...              // any thread
//   admission.Release(process, hash);                    // ~DimensionTable
//
// A combination is admitted while some table holds a reference to it: a
// table takes one when it interns the combination (Admit said yes, or
// Register on restore) and gives it back when it is destroyed (its
// partition revoked, reshaped or shut down), so the limit counts the
// combinations of the partitions this replica holds, not of every
// partition it ever held. A new combination is admitted while fewer than
// the limit are; when the last reference to one is released, its room goes
// to the next new combination.
//
// Per process, a fixed-capacity open-addressing table (linear probing
// within a window of kMaxProbe slots from the combination's home) and an
// atomic count of the units taken; no mutex, no allocation after
// construction. A slot is one 64-bit word: empty (never used: ends a
// probe), free (used before: probes pass it, a claim may take it), or an
// entry: the combination's tag (the hash's high 42 bits), its reference
// count and its state, pending (a claim deciding on the count) or live.
// Taking or giving back a reference is one CAS on that word, so an Admit
// racing the Release of the last reference either adds its reference
// first (the entry stays) or finds the slot free and claims the
// combination anew. A claim puts a pending entry in the first free or
// empty slot of the window and then looks for another entry of the same
// tag in it: a live one, or a pending one nearer the home, wins (the claim
// is undone and retried); a pending one further away is waited for. Two
// claims each look after writing their own (sequentially consistent), so
// at least one sees the other: a combination has at most one entry.
//
// Every thread gets the same verdict for a combination at a time: a thread
// that finds a combination another thread is deciding waits the few
// instructions that takes (a CAS on the count), and a refusal re-reads the
// table after seeing the full count, in which every admission that made it
// full is already visible. Verdicts change over time: a combination
// refused while the count was full is admitted once there is room.
//
// Restored tables Register their combinations unconditionally (their
// DimsIds are referred to by the restored aggregator and cases), which may
// take the count past the limit until those tables are destroyed; new
// combinations are refused meanwhile. When a combination's window is full
// (more restored combinations than the table has room for), a registered
// one is counted but not stored, so another partition folds it: the bound
// holds, at the cost of series; its Release gives the unit back.
//
// Memory: per process, 8 B x the power of two >= 2 x limit + 64 (32 KB for
// the default 1000), allocated at construction. With at most half the
// slots live, a window holding other combinations only is rare; an Admit
// that meets one is refused even below the limit.
//
// Two combinations with the same tag share one entry, verdict and count. A
// combination referenced by more than 2^20 - 1 tables at once stays
// admitted for good (its count saturates).
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
  // Slots probed from a combination's home.
  static constexpr size_t kMaxProbe = 64;

  // One table per configured process, each admitting up to the config's
  // dimensions.max_series_per_process combinations.
  explicit SeriesAdmission(const model::Config& config);
  SeriesAdmission(const SeriesAdmission&) = delete;
  SeriesAdmission& operator=(const SeriesAdmission&) = delete;

  // True if `hash`'s combination of `process` is admitted (already, or now
  // because fewer than the limit are); the caller then holds a reference.
  bool Admit(int process, uint64_t hash);
  // Takes a reference whatever the count (a restored combination).
  void Register(int process, uint64_t hash);
  // Gives back one reference taken by an Admit that said yes or by a
  // Register; the last one frees the combination's room.
  void Release(int process, uint64_t hash);

  // Units of the limit taken for `process`: combinations admitted or
  // registered and not yet released.
  uint64_t Admitted(int process) const;
  int64_t limit() const { return limit_; }

 private:
  struct Table {
    std::unique_ptr<std::atomic<uint64_t>[]> slots;
    std::atomic<uint64_t> count{0};
  };
  // Where a lookup found the combination's live entry (or none: -1) and the
  // first slot a claim may take (none: -1; `claim_seen` its value).
  struct Found {
    int64_t live = -1;
    int64_t claim = -1;
    uint64_t claim_seen = 0;
  };

  // Takes a reference (Admit; `force`: Register).
  bool Acquire(Table& t, uint64_t tag, bool force);
  // Walks the window of `tag`, waiting out pending entries of it.
  Found Lookup(const Table& t, uint64_t tag) const;
  // One more reference on the live entry of `tag` in `slot`; false if the
  // slot no longer holds it (released meanwhile).
  bool AddReference(Table& t, size_t slot, uint64_t tag);
  // Whether the pending claim of `tag` in `mine` may stand: no live entry
  // of the tag, nor a pending one nearer the home (waiting out those further).
  bool ClaimStands(const Table& t, uint64_t tag, size_t mine) const;
  // Takes one unit of the count if below the limit (or always, `force`).
  bool Reserve(Table& t, bool force);
  size_t Home(uint64_t tag) const;

  int64_t limit_;
  size_t mask_;    // capacity - 1 (a power of two)
  size_t window_;  // min(kMaxProbe, capacity)
  std::vector<std::unique_ptr<Table>> tables_;
};

}  // namespace kpid::cases

// kpi-loadgen's seeded discrete-event simulation of the processes of a kpid
// config (DESIGN §5). It turns the `simulate:` knobs of each process and stage
// into a stream of kpid.v1.ProcessEvent in non-decreasing event time.
//
//   kpid::loadgen::SimulatorOptions options;
//   options.seed = 7;
//   options.max_events = 1000;
//   KPID_RETURN_IF_ERROR(kpid::loadgen::Simulator::CheckOptions(config, options));
//   kpid::loadgen::Simulator sim(config, options);
//   kpid::v1::ProcessEvent event;
//   while (sim.Next(&event)) Send(event);
//
// The model, per process:
//   - cases arrive as a Poisson process at simulate.arrivals_per_hour;
//   - each case draws one value per configured dimension, uniformly from
//     simulate.attributes (a dimension without values: "<name>_a|_b|_c"), and
//     carries them on every one of its events;
//   - a case enters the first stage (STAGE_ENTERED) and stays a log-normal
//     time (median = stage simulate.median or sla/2, shape simulate.sigma);
//   - on leaving a stage, one uniform draw u decides: u < fallout ->
//     CASE_FALLOUT (reason lost|rejected|abandoned); else with odds `rework`
//     (not in the first stage, at most 3 reworks per case) -> back to the
//     previous stage; else the next stage, or CASE_COMPLETED after the last one
//     (amount log-normal(deal_median, deal_sigma), rounded to cents);
//   - a completed case then gets a COST event (cost_per_case, when > 0) at its
//     completion time and, with odds feedback_odds, a FEEDBACK event (integer
//     score 0..10) an exponential delay (mean 15 minutes) later.
//
// Determinism: all randomness comes from std::mt19937_64 engines (their output
// is fixed by the C++ standard), turned into distributions by hand (not with
// <random>'s distributions, which differ between standard libraries). Each
// process has its own engine, seeded from (seed, process id), so a process
// draws the same cases whether or not other processes are simulated beside
// it. Same config + seed + start => the same events, field for field.
// Serialize them with sorted map keys (sink.h) to get the same bytes.
//
// Thread-safety: none; a Simulator belongs to one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "daemon/model/config.h"
#include "kpid/v1/event.pb.h"

namespace kpid::loadgen {

// 2026-01-01T00:00:00Z: the default simulation start, fixed so a seed alone
// pins the output.
absl::Time DefaultStart();

struct SimulatorOptions {
  uint64_t seed = 1;
  // Event time of the simulation's beginning (the first arrivals follow it).
  // Kept to the microsecond.
  absl::Time start = DefaultStart();
  // Next() returns false after this many events; 0 = never.
  int64_t max_events = 0;
  // Ids of the processes to simulate; empty = all of the config's.
  std::vector<std::string> processes;
};

// Event counts by ProcessEvent::Kind.
struct EventCounts {
  int64_t total = 0;
  int64_t stage_entered = 0;
  int64_t case_completed = 0;
  int64_t case_fallout = 0;
  int64_t cost = 0;
  int64_t feedback = 0;
};

class Simulator {
 public:
  // Reworks per case beyond which a case only moves forward.
  static constexpr int kMaxReworks = 3;

  // OK when every id in options.processes names a process of `config` and
  // there is at least one process with stages to simulate.
  static absl::Status CheckOptions(const model::Config& config, const SimulatorOptions& options);

  // Copies what it needs from `config`; it need not outlive the Simulator.
  // Options should pass CheckOptions(); unknown process ids are skipped.
  Simulator(const model::Config& config, const SimulatorOptions& options);
  ~Simulator();

  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  // Replaces *out with the next event, in non-decreasing occurred_at order.
  // False (and *out untouched) once max_events are out, or when there is
  // nothing to simulate.
  bool Next(kpid::v1::ProcessEvent* out);

  // Events returned so far, by kind.
  const EventCounts& counts() const { return counts_; }
  // Event time of the last event returned (options.start before the first).
  absl::Time now() const;
  // Cases started and not yet completed or fallen out.
  int64_t open_cases() const { return open_cases_; }

 private:
  struct Process;
  struct Case;
  enum class Step : uint8_t { kArrival, kLeaveStage, kCost, kFeedback };
  struct Pending {
    int64_t time_us;  // Unix microseconds
    uint64_t seq;     // insertion order: breaks ties deterministically
    uint32_t index;   // kArrival: process index; otherwise case slot
    Step step;
  };
  struct Later {
    bool operator()(const Pending& a, const Pending& b) const {
      return a.time_us != b.time_us ? a.time_us > b.time_us : a.seq > b.seq;
    }
  };

  void Schedule(int64_t time_us, uint32_t index, Step step);
  uint32_t NewCase(uint32_t process);
  void ReleaseCase(uint32_t slot);
  void Fill(const Case& c, kpid::v1::ProcessEvent::Kind kind, int64_t time_us,
            kpid::v1::ProcessEvent* out);
  int64_t StageTimeUs(Process& p, int stage);

  uint64_t seed_;
  int64_t start_us_;
  int64_t max_events_;
  std::string event_id_prefix_;
  uint64_t case_number_base_;
  std::vector<std::unique_ptr<Process>> processes_;
  std::vector<Case> cases_;  // slots; free ones listed in free_slots_
  std::vector<uint32_t> free_slots_;
  std::priority_queue<Pending, std::vector<Pending>, Later> queue_;
  uint64_t next_seq_ = 0;
  int64_t now_us_;
  int64_t open_cases_ = 0;
  EventCounts counts_;
};

}  // namespace kpid::loadgen

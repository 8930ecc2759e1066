// Evaluates the alert rules over the aggregator and drives each alert
// instance's state machine; sends firing and resolved alerts to an AlertSink.
//
//   RuleEngine engine({.config = &config, .rules = &rules, .shards = shards,
//                      .dimensions = tables, .window_clock = &clock, .sink = notifier});
//   engine.Start();        // its own thread
//   ...                    // /metrics renders engine.Collect(): kpid_alerts{alertname,state,...}
//   engine.Stop();
//
// Each group is evaluated every `interval`; in between, every 10 ms the
// engine checks each process's change count (exits and breaches) and
// re-evaluates that process's rules at once when it moved, so an SLA breach
// pages within milliseconds instead of waiting for the next tick.
//
// Instances: a rule without `stage` has one per stage (stage KPIs); `by`
// adds one per combination of those dimensions' values. A KPI that has no
// value (a ratio with a zero denominator) or whose window holds fewer than
// min_events gives no verdict (see AlertState). Window ends come from
// `window_clock` (wall time, or the latest event time with clock: event);
// alert times (`for`, keep_firing_for, startsAt) are wall time.
//
// Thread-safety: Evaluate* run on the engine thread (or a test's); Collect
// and Alerts may be called from any thread (they copy under a mutex that the
// event path never takes).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/aggregate/merged_reader.h"
#include "daemon/alert/alert_state.h"
#include "daemon/alert/notifier.h"
#include "daemon/alert/rule.h"
#include "daemon/cases/clock.h"
#include "daemon/cases/dimension_table.h"
#include "daemon/model/config.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace kpid::alert {

// One alert instance as readers see it.
struct AlertView {
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  AlertPhase phase;
  double value;
  absl::Time active_at;
};

class RuleEngine : public prometheus::Collectable {
 public:
  struct Options {
    const model::Config* config = nullptr;
    const RuleSet* rules = nullptr;
    std::vector<const aggregate::AggregateShard*> shards;
    std::vector<const cases::DimensionTable*> dimensions;  // per shard
    const cases::Clock* window_clock = nullptr;
    AlertSink* sink = nullptr;  // may be null: states only
    absl::Duration resend_interval = absl::Minutes(1);
    std::string generator_url;
  };

  explicit RuleEngine(Options options);
  ~RuleEngine() override;  // Stop()

  void Start();
  void Stop();

  // Evaluates every rule now (tests; the engine thread uses the finer calls).
  void EvaluateAll(absl::Time wall_now);
  // Groups whose interval has come, and processes whose data changed.
  void EvaluateDue(absl::Time wall_now);

  std::vector<AlertView> Alerts() const;
  // kpid_alerts{alertname, state, process, stage, <by dims>} 1 for every
  // pending or firing instance, like Prometheus' ALERTS.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  struct Instance {
    std::map<std::string, std::string> labels;  // identity
    AlertState state;
    std::map<std::string, std::string> annotations;
    absl::Time last_sent = absl::InfinitePast();
  };

  void EvaluateRule(const AlertRule& rule, absl::Time wall_now, std::vector<AlertNotification>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Apply(const AlertRule& rule, std::map<std::string, std::string> labels, Verdict verdict,
             double value, absl::Time wall_now, std::vector<AlertNotification>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  AlertNotification Notification(const Instance& instance, absl::Time wall_now) const;
  void Run();

  Options options_;
  aggregate::MergedReader reader_;
  std::vector<absl::Time> next_due_;    // per group; engine thread only
  std::vector<uint64_t> seen_changes_;  // per process; engine thread only

  mutable absl::Mutex mu_;
  std::map<std::string, Instance> instances_ ABSL_GUARDED_BY(mu_);  // by label fingerprint

  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace kpid::alert

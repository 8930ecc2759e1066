// Evaluates a process's revenue driver tree (DESIGN §5 `kpi_tree`) over one
// window: every node's value and every leaf's revenue sensitivity.
//
//   KpiTreeEvaluator trees(config);  // once per loaded config
//   WindowSpan span = reader.Resolve(window_index, now);
//   for (const NodeValue& n : trees.Evaluate(reader, process, span)) {
//     ... n.id, n.parent ("" for the root), n.value, n.sensitivity ...
//   }
//
// Values: a `kpi:` leaf reads the window KPI through aggregate::ReadWindowKpi
// (every dimension value summed); `product:` / `sum:` multiply / add their
// children; `ratio: [a, b]` is a / b. An absent child makes its parent absent
// (so the root is absent until every leaf has data), and so does a zero
// denominator: never 0 or NaN.
//
// Sensitivity of a leaf: how much the root changes when that leaf improves by
// 1%, every other leaf held. For a ratio KPI (conversion, sla_attainment,
// win_ratio, fallout_ratio, rework_ratio: values in [0, 1]) 1% is one
// percentage point: leaf + 0.01 (at most 1), or - 0.01 (at least 0) where
// lower is better. For any other KPI it is relative: leaf x 1.01, or x 0.99
// where lower is better (LowerIsBetter: cycle and lead times, fallout,
// rework, breaches, cost, cost_to_serve). Why points for ratios: in the usual
// revenue tree (a product of counts, conversions and a deal size) a relative
// 1% moves the root by 1% whatever the leaf, so nothing would rank; a point
// of conversion is worth most where conversion is lowest (0.30 -> 0.31 is
// +3.3%, 0.90 -> 0.91 is +1.1%), which is where an improvement pays most.
// Absent when the leaf or the root is absent.
//
// Thread safety: immutable after construction; Evaluate may run on any
// thread (it only reads the aggregator, see MergedReader).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/optional.h"
#include "daemon/aggregate/aggregate_types.h"
#include "daemon/aggregate/distribution.h"
#include "daemon/aggregate/merged_reader.h"
#include "daemon/common/mutex.h"
#include "daemon/model/config.h"

namespace kpid::kpitree {

struct NodeValue {
  std::string id;
  std::string parent;  // "" for the root
  absl::optional<double> value;
  absl::optional<double> sensitivity;  // leaves (`kpi:` nodes) only

  friend bool operator==(const NodeValue&, const NodeValue&) = default;
};

// Whether a 1% improvement of window KPI `kpi` is a 1% decrease.
bool LowerIsBetter(absl::string_view kpi);
// True for the KPIs that are shares in [0, 1].
bool IsRatio(absl::string_view kpi);

class KpiTreeEvaluator {
 public:
  // `config` must have passed validation (model::ParseConfig): references
  // resolve, one root, no cycle. Keeps its own copy of the trees.
  explicit KpiTreeEvaluator(const model::Config& config);

  bool HasTree(int process) const;

  // Every node of `process`'s tree in config order; empty when it has none.
  std::vector<NodeValue> Evaluate(const aggregate::MergedReader& reader, int process,
                                  const aggregate::WindowSpan& span) const;

  // The same from a window's values already read and summed (a global
  // snapshot merges replicas' counts and sketches, then evaluates once):
  // `cycle_times` by stage index; a missing stage reads as no observations.
  // Null `lead_time` / `cycle_times`: no distributions were kept for these
  // counts (a dimension-filtered window), so quantile leaves are absent and
  // so is every node above one; the other nodes are computed from `counts`.
  struct WindowValues {
    const aggregate::SeriesWindow* counts = nullptr;
    const aggregate::Distribution* lead_time = nullptr;
    const std::vector<aggregate::Distribution>* cycle_times = nullptr;
  };
  std::vector<NodeValue> Evaluate(int process, const WindowValues& window) const;

 private:
  enum class Op { kKpi, kProduct, kSum, kRatio };
  struct Node {
    std::string id;
    int parent = -1;
    Op op = Op::kKpi;
    std::vector<int> children;
    std::string kpi;  // kKpi
    int stage = -1;   // kKpi: -1 for a process KPI
    bool lower_is_better = false;
    bool ratio = false;  // a KPI in [0, 1]: improved by a percentage point
  };
  struct Tree {
    std::vector<Node> nodes;  // config order
    std::vector<int> order;   // children before their parents
    int root = -1;
  };

  // Every node's value and sensitivity, a `kpi:` leaf's value from `leaf`.
  std::vector<NodeValue> EvaluateTree(
      const Tree& tree, const std::function<absl::optional<double>(const Node&)>& leaf) const;
  // Values of every node from the leaves' values (inner nodes' entries of
  // `values` are overwritten).
  static void Combine(const Tree& tree, std::vector<absl::optional<double>>* values);
  // The leaf's value after a 1% improvement (see Sensitivity above).
  static double Improved(const Node& leaf, double value);

  std::vector<Tree> trees_;  // by process index
};

// The evaluator of the config a read uses (aggregate::ShardSet::config: a
// reload may reshape the processes), rebuilt when that config changes.
// Thread-safe; configs are compared by address, so each must stay alive
// (and unchanged) while it can be asked for (EngineRegistry keeps them).
class KpiTreeEvaluatorCache {
 public:
  std::shared_ptr<const KpiTreeEvaluator> For(const model::Config& config) const;

 private:
  mutable Mutex mu_;
  mutable const model::Config* config_ ABSL_GUARDED_BY(mu_) = nullptr;
  mutable std::shared_ptr<const KpiTreeEvaluator> evaluator_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kpid::kpitree

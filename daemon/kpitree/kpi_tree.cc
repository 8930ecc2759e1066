#include "daemon/kpitree/kpi_tree.h"

#include <algorithm>
#include <functional>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "daemon/aggregate/kpi_reading.h"

namespace kpid::kpitree {

bool LowerIsBetter(absl::string_view kpi) {
  return absl::StartsWith(kpi, "cycle_time_") || absl::StartsWith(kpi, "lead_time_") ||
         kpi == "fallout" || kpi == "fallout_ratio" || kpi == "rework" || kpi == "rework_ratio" ||
         kpi == "sla_breaches" || kpi == "cost" || kpi == "cost_to_serve";
}

bool IsRatio(absl::string_view kpi) {
  return absl::EndsWith(kpi, "_ratio") || kpi == "conversion" || kpi == "sla_attainment";
}

double KpiTreeEvaluator::Improved(const Node& leaf, double value) {
  if (leaf.ratio) {
    return leaf.lower_is_better ? std::max(0.0, value - 0.01) : std::min(1.0, value + 0.01);
  }
  return value * (leaf.lower_is_better ? 0.99 : 1.01);
}

KpiTreeEvaluator::KpiTreeEvaluator(const model::Config& config) {
  for (const model::ProcessConfig& process : config.processes) {
    Tree& tree = trees_.emplace_back();
    absl::flat_hash_map<std::string, int> index;
    for (const model::KpiTreeNode& n : process.kpi_tree) {
      index[n.id] = static_cast<int>(tree.nodes.size());
      tree.nodes.emplace_back().id = n.id;
    }
    for (size_t i = 0; i < process.kpi_tree.size(); ++i) {
      const model::KpiTreeNode& n = process.kpi_tree[i];
      Node& node = tree.nodes[i];
      const std::vector<std::string>* refs = &n.product;
      if (!n.kpi.empty()) {
        node.op = Op::kKpi;
        node.kpi = n.kpi;
        node.stage = n.stage.empty() ? -1 : process.StageIndex(n.stage);
        node.lower_is_better = LowerIsBetter(n.kpi);
        node.ratio = IsRatio(n.kpi);
      } else if (!n.sum.empty()) {
        node.op = Op::kSum;
        refs = &n.sum;
      } else if (!n.ratio.empty()) {
        node.op = Op::kRatio;
        refs = &n.ratio;
      } else {
        node.op = Op::kProduct;
      }
      if (node.op == Op::kKpi) continue;
      for (const std::string& ref : *refs) {
        const int child = index.at(ref);
        node.children.push_back(child);
        tree.nodes[static_cast<size_t>(child)].parent = static_cast<int>(i);
      }
    }
    for (size_t i = 0; i < tree.nodes.size(); ++i) {
      if (tree.nodes[i].parent < 0 && tree.root < 0) tree.root = static_cast<int>(i);
    }
    // Post-order from the root: a validated tree has no cycle.
    std::function<void(int)> visit = [&](int i) {
      for (int child : tree.nodes[static_cast<size_t>(i)].children) visit(child);
      tree.order.push_back(i);
    };
    if (tree.root >= 0) visit(tree.root);
  }
}

bool KpiTreeEvaluator::HasTree(int process) const {
  return process >= 0 && static_cast<size_t>(process) < trees_.size() &&
         !trees_[static_cast<size_t>(process)].nodes.empty();
}

void KpiTreeEvaluator::Combine(const Tree& tree, std::vector<absl::optional<double>>* values) {
  auto& v = *values;
  for (int i : tree.order) {
    const Node& node = tree.nodes[static_cast<size_t>(i)];
    if (node.op == Op::kKpi) continue;
    absl::optional<double> result = node.op == Op::kProduct ? 1.0 : 0.0;
    for (int child : node.children) {
      const absl::optional<double>& c = v[static_cast<size_t>(child)];
      if (!c) {
        result.reset();
        break;
      }
      if (node.op == Op::kProduct) *result *= *c;
      if (node.op == Op::kSum) *result += *c;
    }
    if (node.op == Op::kRatio) {
      const absl::optional<double>& num = v[static_cast<size_t>(node.children[0])];
      const absl::optional<double>& den = v[static_cast<size_t>(node.children[1])];
      result = num && den ? aggregate::Ratio(*num, *den) : absl::nullopt;
    }
    v[static_cast<size_t>(i)] = result;
  }
}

std::vector<NodeValue> KpiTreeEvaluator::Evaluate(const aggregate::MergedReader& reader,
                                                  int process,
                                                  const aggregate::WindowSpan& span) const {
  if (!HasTree(process)) return {};
  const aggregate::SeriesWindow counts = reader.ReadAllDimsWindow(process, span);
  return EvaluateTree(trees_[static_cast<size_t>(process)], [&](const Node& node) {
    return aggregate::ReadWindowKpi(reader, process, node.stage, node.kpi, span, &counts).value;
  });
}

std::vector<NodeValue> KpiTreeEvaluator::Evaluate(int process, const WindowValues& window) const {
  if (!HasTree(process)) return {};
  static const aggregate::Distribution kNone;
  return EvaluateTree(
      trees_[static_cast<size_t>(process)], [&](const Node& node) -> absl::optional<double> {
        const absl::optional<double> q = aggregate::QuantileOf(node.kpi);
        if (!q) return aggregate::KpiFromCounts(*window.counts, node.stage, node.kpi).value;
        const aggregate::Distribution* d = window.lead_time;
        if (node.stage >= 0) {
          if (window.cycle_times == nullptr) return absl::nullopt;
          const size_t s = static_cast<size_t>(node.stage);
          d = s < window.cycle_times->size() ? &(*window.cycle_times)[s] : &kNone;
        }
        if (d == nullptr) return absl::nullopt;
        return d->Quantile(*q);
      });
}

std::vector<NodeValue> KpiTreeEvaluator::EvaluateTree(
    const Tree& tree, const std::function<absl::optional<double>(const Node&)>& leaf) const {
  std::vector<absl::optional<double>> values(tree.nodes.size());
  for (size_t i = 0; i < tree.nodes.size(); ++i) {
    if (tree.nodes[i].op == Op::kKpi) values[i] = leaf(tree.nodes[i]);
  }
  Combine(tree, &values);

  std::vector<NodeValue> out;
  for (size_t i = 0; i < tree.nodes.size(); ++i) {
    const Node& node = tree.nodes[i];
    NodeValue& n = out.emplace_back();
    n.id = node.id;
    if (node.parent >= 0) n.parent = tree.nodes[static_cast<size_t>(node.parent)].id;
    n.value = values[i];
  }
  const absl::optional<double> root =
      tree.root >= 0 ? values[static_cast<size_t>(tree.root)] : absl::nullopt;
  if (!root) return out;
  for (size_t i = 0; i < tree.nodes.size(); ++i) {
    const Node& node = tree.nodes[i];
    if (node.op != Op::kKpi || !values[i]) continue;
    std::vector<absl::optional<double>> improved = values;
    improved[i] = Improved(node, *values[i]);
    Combine(tree, &improved);
    const absl::optional<double>& new_root = improved[static_cast<size_t>(tree.root)];
    if (new_root) out[i].sensitivity = *new_root - *root;
  }
  return out;
}

std::shared_ptr<const KpiTreeEvaluator> KpiTreeEvaluatorCache::For(
    const model::Config& config) const {
  MutexLock lock(&mu_);
  if (config_ != &config || evaluator_ == nullptr) {
    evaluator_ = std::make_shared<const KpiTreeEvaluator>(config);
    config_ = &config;
  }
  return evaluator_;
}

}  // namespace kpid::kpitree

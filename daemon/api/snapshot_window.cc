#include "daemon/api/snapshot_window.h"

#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "daemon/api/proto_time.h"

namespace kpid::api {
namespace {

// Quantiles stay unset when the window holds no observation.
void SetQuantiles(const aggregate::Distribution& d, v1::DurationQuantiles* out) {
  out->set_count(d.count());
  if (d.empty()) return;
  ToProto(absl::Seconds(*d.Quantile(0.5)), out->mutable_p50());
  ToProto(absl::Seconds(*d.Quantile(0.9)), out->mutable_p90());
  ToProto(absl::Seconds(*d.Quantile(0.99)), out->mutable_p99());
}

template <typename Setter>
void SetOptional(absl::optional<double> value, Setter set) {
  if (value.has_value()) set(*value);
}

}  // namespace

void ToProto(const aggregate::Distribution& d, v1::SketchBins* out) {
  const std::vector<uint64_t>& bins = d.bins();
  for (size_t b = 0; b < bins.size(); ++b) {
    if (bins[b] == 0) continue;
    out->add_bin(static_cast<int32_t>(b));
    out->add_count(bins[b]);
  }
}

aggregate::Distribution FromProto(const v1::SketchBins& bins) {
  aggregate::Distribution d;
  for (int i = 0; i < bins.bin_size() && i < bins.count_size(); ++i) {
    d.AddToBin(bins.bin(i), bins.count(i));
  }
  return d;
}

void WriteWindowValues(const model::ProcessConfig& process, const WindowValues& values,
                       const WindowWrite& how, v1::ProcessWindow* out) {
  const aggregate::ProcessWindowCounts& p = values.counts.process;
  out->set_started(p.started);
  out->set_completed(p.completed);
  out->set_fallout(p.fallout);
  out->set_revenue(p.revenue);
  out->set_cost(p.cost);
  out->set_feedback_count(p.score_count);
  SetOptional(p.win_ratio(), [out](double v) { out->set_win_ratio(v); });
  SetOptional(p.avg_deal(), [out](double v) { out->set_avg_deal(v); });
  SetOptional(p.cost_to_serve(), [out](double v) { out->set_cost_to_serve(v); });
  SetOptional(p.feedback_score(), [out](double v) { out->set_feedback_score(v); });
  if (how.quantiles) SetQuantiles(values.lead_time, out->mutable_lead_time());

  v1::MergeInputs* merge = how.merge_inputs ? out->mutable_merge_inputs() : nullptr;
  if (merge != nullptr) {
    merge->set_feedback_score_sum(p.score_sum);
    merge->set_cost_count(p.cost_count);
    merge->set_stage_entries(p.stage_entries);
    if (how.quantiles) ToProto(values.lead_time, merge->mutable_lead_time());
  }
  for (size_t s = 0; s < process.stages.size(); ++s) {
    v1::StageWindow* st = out->add_stages();
    st->set_stage(process.stages[s].id);
    v1::SketchBins* cycle_bins = merge != nullptr ? merge->add_cycle_time() : nullptr;
    if (s >= values.counts.stages.size()) continue;
    const aggregate::StageWindowCounts& c = values.counts.stages[s];
    st->set_entered(c.entered);
    st->set_exited(c.exited());
    st->set_advanced(c.advanced);
    st->set_fallout(c.fallout);
    st->set_sla_met(c.sla_met);
    st->set_rework(c.rework);
    st->set_sla_breaches(c.sla_breaches);
    SetOptional(c.conversion(), [st](double v) { st->set_conversion(v); });
    SetOptional(c.fallout_ratio(), [st](double v) { st->set_fallout_ratio(v); });
    SetOptional(c.sla_attainment(), [st](double v) { st->set_sla_attainment(v); });
    SetOptional(c.rework_ratio(), [st](double v) { st->set_rework_ratio(v); });
    if (how.quantiles && s < values.cycle_times.size()) {
      SetQuantiles(values.cycle_times[s], st->mutable_cycle_time());
      if (cycle_bins != nullptr) ToProto(values.cycle_times[s], cycle_bins);
    }
  }
}

WindowValues ReadWindowValues(const v1::ProcessWindow& window, size_t stages) {
  WindowValues v;
  aggregate::ProcessWindowCounts& p = v.counts.process;
  p.started = window.started();
  p.completed = window.completed();
  p.fallout = window.fallout();
  p.revenue = window.revenue();
  p.cost = window.cost();
  p.score_count = window.feedback_count();
  const v1::MergeInputs& merge = window.merge_inputs();
  p.score_sum = merge.feedback_score_sum();
  p.cost_count = merge.cost_count();
  p.stage_entries = merge.stage_entries();
  v.lead_time = FromProto(merge.lead_time());
  v.counts.stages.resize(stages);
  v.cycle_times.resize(stages);
  for (size_t s = 0; s < stages && s < static_cast<size_t>(window.stages_size()); ++s) {
    const v1::StageWindow& st = window.stages(static_cast<int>(s));
    aggregate::StageWindowCounts& c = v.counts.stages[s];
    c.entered = st.entered();
    c.advanced = st.advanced();
    c.fallout = st.fallout();
    c.sla_met = st.sla_met();
    c.rework = st.rework();
    c.sla_breaches = st.sla_breaches();
    if (s < static_cast<size_t>(merge.cycle_time_size())) {
      v.cycle_times[s] = FromProto(merge.cycle_time(static_cast<int>(s)));
    }
  }
  return v;
}

void WriteKpiTree(const model::Config& config, int process, const WindowValues& values,
                  const WindowWrite& how, const WindowKpiTree& tree, v1::ProcessWindow* out) {
  if (!tree) return;
  kpitree::KpiTreeEvaluator::WindowValues window{.counts = &values.counts};
  if (how.quantiles) {
    window.lead_time = &values.lead_time;
    window.cycle_times = &values.cycle_times;
  }
  for (const kpitree::NodeValue& node : tree(config, process, window)) {
    v1::KpiTreeValue* v = out->add_kpi_tree();
    v->set_node(node.id);
    v->set_parent(node.parent);
    if (node.value) v->set_value(*node.value);
    if (node.sensitivity) v->set_sensitivity(*node.sensitivity);
  }
}

}  // namespace kpid::api

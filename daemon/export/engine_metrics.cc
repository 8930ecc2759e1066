#include "daemon/export/engine_metrics.h"

#include <algorithm>
#include <array>
#include <limits>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "daemon/common/duration.h"
#include "daemon/export/text_writer.h"

namespace kpid::exporter {
namespace {

using aggregate::LatencyHistogram;
using aggregate::MergedReader;
using aggregate::ProcessTotals;
using aggregate::ProcessWindowCounts;
using aggregate::StageTotals;
using aggregate::StageWindowCounts;
using prometheus::ClientMetric;
using prometheus::MetricType;

constexpr double kQuantiles[] = {0.5, 0.9, 0.99};

// Where a series' rendered labels are in ProcessSnapshot::label_text.
struct TextRange {
  size_t begin = 0;
  size_t end = 0;
};

// One dimension combination of a process, summed over the workers.
struct Series {
  const std::vector<std::string>* values = nullptr;  // owned by a DimensionTable
  std::vector<MergedReader::SeriesRef> refs;
  Labels labels;  // process, dims...
  TextRange text;
  ProcessTotals totals;
  int64_t open_cases = 0;
};

// A window distribution as a summary: quantiles (absent when the window has
// no observations), count, and a sum from the bins (within the
// distribution's 1% relative error).
struct WindowSummary {
  SeriesLabels labels;
  uint64_t count = 0;
  double sum = 0;
  std::vector<ClientMetric::Quantile> quantiles;
};

WindowSummary Summarize(SeriesLabels labels, const aggregate::Distribution& d) {
  WindowSummary s{std::move(labels), d.count(), 0, {}};
  for (size_t bin = 0; bin < d.bins().size(); ++bin) {
    if (d.bins()[bin] == 0) continue;
    s.sum += static_cast<double>(d.bins()[bin]) *
             aggregate::Distribution::BinValue(static_cast<int>(bin));
  }
  for (double q : kQuantiles) {
    if (absl::optional<double> v = d.Quantile(q)) s.quantiles.push_back({q, *v});
  }
  return s;
}

struct Transition {
  SeriesLabels labels;  // process, from, to
  uint64_t count = 0;
};

// What a scrape writes of one process. A family writes one sample per
// series (and stage, and window) and the families are written one after the
// other, so the per-series values are read once into flat arrays in the
// order every family walks them: a sequential scan, not a pointer chase,
// per family.
//
// Label texts are rendered into one string, the process series' then the
// stage series', in the order the families write them: a family then reads
// them front to back. (Read from ~10k strings of their own, scattered over
// the heap, they missed the caches on nearly every line: the ~90 MB being
// written evicts them between families.)
struct ProcessSnapshot {
  size_t stages = 0;                                 // per series
  size_t windows = 0;                                // per series and stage
  std::vector<Series> series;                        // by dimension values
  std::vector<ProcessWindowCounts> process_windows;  // [series][window]
  // The stage series: [series][stage], windows [series][stage][window].
  std::vector<Labels> stage_labels;  // process, stage, dims...
  std::vector<TextRange> stage_text;
  std::vector<StageTotals> stage_totals;
  std::vector<StageWindowCounts> stage_windows;
  std::vector<Transition> transitions;
  std::vector<WindowSummary> cycle_times;  // by window, then stage
  std::vector<WindowSummary> lead_times;   // by window
  SeriesLabels labels;                     // process
  uint64_t folded = 0;
  std::string label_text;

  LabelsRef SeriesLabelsAt(size_t k) const { return Ref(series[k].labels, series[k].text); }
  LabelsRef StageLabelsAt(size_t j) const { return Ref(stage_labels[j], stage_text[j]); }
  // Appends the text of `labels` to label_text.
  TextRange Render(const Labels& labels) {
    const size_t begin = label_text.size();
    AppendLabelPairs(labels, &label_text);
    return {begin, label_text.size()};
  }

 private:
  LabelsRef Ref(const Labels& labels, TextRange text) const {
    return LabelsRef(labels,
                     absl::string_view(label_text).substr(text.begin, text.end - text.begin));
  }
};

// Equal dimension values, compared by content: each worker's table has its
// own copy.
struct ValuesHash {
  size_t operator()(const std::vector<std::string>* v) const { return absl::HashOf(*v); }
};
struct ValuesEq {
  bool operator()(const std::vector<std::string>* a, const std::vector<std::string>* b) const {
    return *a == *b;
  }
};

void WriteHistogram(MetricWriter* out, LabelsRef labels, const LatencyHistogram& h) {
  std::array<ClientMetric::Bucket, LatencyHistogram::kBuckets> buckets;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    cumulative += h.buckets[i];
    buckets[i].cumulative_count = cumulative;
    buckets[i].upper_bound = i < LatencyHistogram::kBounds.size()
                                 ? LatencyHistogram::kBounds[i]
                                 : std::numeric_limits<double>::infinity();
  }
  out->Histogram(labels, cumulative, h.sum, buckets);
}

// Families with one sample per series (and window), by what they read.
struct SeriesFamily {
  const char* name;
  const char* help;
  MetricType type;
  double (*value)(const Series&);
};
struct StageTotalsFamily {
  const char* name;
  const char* help;
  MetricType type;
  double (*value)(const StageTotals&);
};
struct ProcessWindowFamily {
  const char* name;
  const char* help;
  absl::optional<double> (*value)(const ProcessWindowCounts&);
};
struct StageWindowFamily {
  const char* name;
  const char* help;
  absl::optional<double> (*value)(const StageWindowCounts&);
};

double D(uint64_t n) { return static_cast<double>(n); }

const SeriesFamily kProcessTotals[] = {
    {"kpid_process_cases_started_total", "Cases started.", MetricType::Counter,
     [](const Series& s) { return D(s.totals.started); }},
    {"kpid_process_cases_completed_total", "Cases completed.", MetricType::Counter,
     [](const Series& s) { return D(s.totals.completed); }},
    {"kpid_process_cases_fallout_total", "Cases fallen out.", MetricType::Counter,
     [](const Series& s) { return D(s.totals.fallout); }},
    {"kpid_process_cases_expired_total",
     "Open cases closed after case_ttl without activity, or evicted at max_open_cases.",
     MetricType::Counter, [](const Series& s) { return D(s.totals.expired); }},
    {"kpid_process_revenue_total", "Sum of CASE_COMPLETED amounts.", MetricType::Counter,
     [](const Series& s) { return s.totals.revenue; }},
    {"kpid_process_cost_total", "Sum of COST amounts.", MetricType::Counter,
     [](const Series& s) { return s.totals.cost; }},
    {"kpid_process_open_cases", "Open cases now.", MetricType::Gauge,
     [](const Series& s) { return static_cast<double>(s.open_cases); }},
};

const StageTotalsFamily kStageTotals[] = {
    {"kpid_stage_entered_total", "Entries into the stage.", MetricType::Counter,
     [](const StageTotals& t) { return D(t.entered); }},
    {"kpid_stage_sla_met_total", "Exits within the stage SLA.", MetricType::Counter,
     [](const StageTotals& t) { return D(t.sla_met); }},
    {"kpid_stage_sla_missed_total", "Exits over the stage SLA.", MetricType::Counter,
     [](const StageTotals& t) { return D(t.sla_missed); }},
    {"kpid_stage_rework_total", "Re-entries into a stage visited before.", MetricType::Counter,
     [](const StageTotals& t) { return D(t.rework); }},
    {"kpid_stage_sla_breaches_total", "Open cases that passed their stage deadline.",
     MetricType::Counter, [](const StageTotals& t) { return D(t.sla_breaches); }},
    {"kpid_stage_backlog", "Open cases in the stage now.", MetricType::Gauge,
     [](const StageTotals& t) { return static_cast<double>(t.backlog); }},
    {"kpid_stage_backlog_over_sla", "Open cases in the stage past their deadline now.",
     MetricType::Gauge,
     [](const StageTotals& t) { return static_cast<double>(t.backlog_over_sla); }},
};

absl::optional<double> Some(double v) { return v; }

const ProcessWindowFamily kProcessWindow[] = {
    {"kpid_window_process_events", "Events accepted in the window, of every kind.",
     [](const ProcessWindowCounts& c) { return Some(D(c.events())); }},
    {"kpid_window_process_started", "Cases started in the window.",
     [](const ProcessWindowCounts& c) { return Some(D(c.started)); }},
    {"kpid_window_process_completed", "Cases completed in the window.",
     [](const ProcessWindowCounts& c) { return Some(D(c.completed)); }},
    {"kpid_window_process_fallout", "Cases fallen out in the window.",
     [](const ProcessWindowCounts& c) { return Some(D(c.fallout)); }},
    {"kpid_window_process_revenue", "Revenue completed in the window.",
     [](const ProcessWindowCounts& c) { return Some(c.revenue); }},
    {"kpid_window_process_cost", "Cost in the window.",
     [](const ProcessWindowCounts& c) { return Some(c.cost); }},
    {"kpid_window_process_win_ratio", "completed / (completed + fallout) in the window.",
     [](const ProcessWindowCounts& c) { return c.win_ratio(); }},
    {"kpid_window_process_avg_deal", "revenue / completed.",
     [](const ProcessWindowCounts& c) { return c.avg_deal(); }},
    {"kpid_window_process_cost_to_serve", "cost / completed.",
     [](const ProcessWindowCounts& c) { return c.cost_to_serve(); }},
    {"kpid_window_process_feedback_score", "Mean feedback score in the window.",
     [](const ProcessWindowCounts& c) { return c.feedback_score(); }},
};

const StageWindowFamily kStageWindow[] = {
    {"kpid_window_stage_entered", "Stage entered count in the window.",
     [](const StageWindowCounts& c) { return Some(D(c.entered)); }},
    {"kpid_window_stage_exited", "Stage exited count in the window.",
     [](const StageWindowCounts& c) { return Some(D(c.exited())); }},
    {"kpid_window_stage_advanced", "Stage advanced count in the window.",
     [](const StageWindowCounts& c) { return Some(D(c.advanced)); }},
    {"kpid_window_stage_fallout", "Stage fallout count in the window.",
     [](const StageWindowCounts& c) { return Some(D(c.fallout)); }},
    {"kpid_window_stage_sla_met", "Stage sla_met count in the window.",
     [](const StageWindowCounts& c) { return Some(D(c.sla_met)); }},
    {"kpid_window_stage_rework", "Stage rework count in the window.",
     [](const StageWindowCounts& c) { return Some(D(c.rework)); }},
    {"kpid_window_stage_conversion_ratio", "advanced / exited.",
     [](const StageWindowCounts& c) { return c.conversion(); }},
    {"kpid_window_stage_fallout_ratio", "fallout / exited.",
     [](const StageWindowCounts& c) { return c.fallout_ratio(); }},
    {"kpid_window_stage_sla_attainment_ratio", "Exits within SLA / exits.",
     [](const StageWindowCounts& c) { return c.sla_attainment(); }},
    {"kpid_window_stage_rework_ratio", "rework / entered.",
     [](const StageWindowCounts& c) { return c.rework_ratio(); }},
};

}  // namespace

struct EngineMetrics::Snapshot {
  std::vector<std::string> windows;  // label values, by window index
  std::vector<ProcessSnapshot> processes;
  // Series point at their tables' dimension values.
  std::shared_ptr<const void> keep_alive;
};

EngineMetrics::EngineMetrics(const model::Config* config, aggregate::ShardSource shards,
                             const cases::Clock* clock)
    : config_(config), shards_(std::move(shards)), clock_(clock) {}

EngineMetrics::EngineMetrics(const model::Config* config,
                             std::vector<const aggregate::AggregateShard*> shards,
                             std::vector<const cases::DimensionTable*> dimensions,
                             const cases::Clock* clock)
    : EngineMetrics(config, aggregate::FixedShards(std::move(shards), std::move(dimensions)),
                    clock) {}

EngineMetrics::Snapshot EngineMetrics::Read() const {
  // Scrapes at the same moment (several HTTP threads) must not wait for each
  // other: the one that finds the cache taken reads every series afresh,
  // which gives the same numbers.
  if (cache_window_reads_.load(std::memory_order_relaxed) && cache_mu_.TryLock()) {
    Snapshot snap = Read(&cache_);
    cache_mu_.Unlock();
    return snap;
  }
  aggregate::SeriesReadCache uncached(/*keep_reads=*/false);
  return Read(&uncached);
}

EngineMetrics::Snapshot EngineMetrics::Read(aggregate::SeriesReadCache* cache) const {
  Snapshot snap;
  const aggregate::ShardSet set = shards_();
  snap.keep_alive = set.keep_alive;
  const MergedReader reader(set.shards);
  const std::vector<const cases::DimensionTable*>& dimensions = set.tables;
  const absl::Time now = clock_->Now();
  const model::Config& config = aggregate::ConfigOf(set, *config_);
  const std::vector<std::string>& dim_names = config.dimensions.names;
  std::vector<aggregate::WindowSpan> spans;
  for (size_t w = 0; w < config.windows.size(); ++w) {
    spans.push_back(reader.Resolve(static_cast<int>(w), now));
    snap.windows.push_back(FormatPromDuration(config.windows[w]));
  }
  cache->Begin(set.generation, spans);

  snap.processes.resize(config.processes.size());
  for (size_t pi = 0; pi < config.processes.size(); ++pi) {
    const int p = static_cast<int>(pi);
    const model::ProcessConfig& process = config.processes[pi];
    ProcessSnapshot& ps = snap.processes[pi];
    ps.labels = SeriesLabels({{"process", process.id}});

    // Series of equal dimension values across workers, summed.
    absl::flat_hash_map<const std::vector<std::string>*, size_t, ValuesHash, ValuesEq> index;
    for (const MergedReader::SeriesRef& ref : reader.ListSeries(p)) {
      const std::vector<std::string>* values =
          &dimensions[static_cast<size_t>(ref.shard)]->Values(p, ref.dims);
      auto [it, inserted] = index.emplace(values, ps.series.size());
      if (inserted) ps.series.emplace_back().values = values;
      ps.series[it->second].refs.push_back(ref);
    }
    std::sort(ps.series.begin(), ps.series.end(),
              [](const Series& a, const Series& b) { return *a.values < *b.values; });

    ps.windows = spans.size();
    // Every shard comes from the same config (MergedReader), so every read
    // below has the front shard's stages.
    ps.stages = std::min(process.stages.size(),
                         static_cast<size_t>(reader.shards().front()->stage_count(p)));
    const size_t n = ps.series.size();
    ps.process_windows.reserve(n * ps.windows);
    ps.stage_labels.reserve(n * ps.stages);
    ps.stage_text.reserve(n * ps.stages);
    ps.stage_totals.reserve(n * ps.stages);
    ps.stage_windows.resize(n * ps.stages * ps.windows);
    for (size_t i = 0; i < set.shards.size(); ++i) {
      cache->LoadVersions(static_cast<int>(i), *set.shards[i], p);
    }
    // Read into, for every series: no allocation per read.
    aggregate::SeriesTotals totals;
    std::vector<aggregate::SeriesWindow> windows(ps.windows);
    for (size_t k = 0; k < n; ++k) {
      Series& s = ps.series[k];
      s.labels = ps.labels.labels();
      for (size_t d = 0; d < dim_names.size() && d < s.values->size(); ++d) {
        s.labels.push_back({dim_names[d], (*s.values)[d]});
      }
      s.text = ps.Render(s.labels);
      totals.process = {};
      totals.stages.assign(ps.stages, {});
      for (aggregate::SeriesWindow& window : windows) {
        window.process = {};
        window.stages.assign(ps.stages, {});
      }
      for (const MergedReader::SeriesRef& ref : s.refs) {
        cache->AddSeries(ref.shard, *set.shards[static_cast<size_t>(ref.shard)], p, ref.dims,
                         absl::MakeSpan(windows), &totals);
      }
      s.totals = totals.process;
      s.open_cases = totals.open_cases();
      for (size_t si = 0; si < ps.stages; ++si) {
        Labels& stage = ps.stage_labels.emplace_back(s.labels);
        stage.insert(stage.begin() + 1, {"stage", process.stages[si].id});
        ps.stage_totals.push_back(totals.stages[si]);
      }
      for (size_t w = 0; w < ps.windows; ++w) {
        ps.process_windows.push_back(windows[w].process);
        for (size_t si = 0; si < ps.stages; ++si) {
          ps.stage_windows[(k * ps.stages + si) * ps.windows + w] = windows[w].stages[si];
        }
      }
    }
    for (const Labels& stage : ps.stage_labels) ps.stage_text.push_back(ps.Render(stage));

    for (size_t from = 0; from < process.stages.size(); ++from) {
      for (size_t to = 0; to < process.stages.size(); ++to) {
        const uint64_t n = reader.ReadTransitions(p, static_cast<int>(from), static_cast<int>(to));
        if (n == 0) continue;
        ps.transitions.push_back({SeriesLabels({{"process", process.id},
                                                {"from", process.stages[from].id},
                                                {"to", process.stages[to].id}}),
                                  n});
      }
    }
    for (size_t w = 0; w < spans.size(); ++w) {
      for (size_t si = 0; si < process.stages.size(); ++si) {
        ps.cycle_times.push_back(
            Summarize(SeriesLabels({{"process", process.id},
                                    {"stage", process.stages[si].id},
                                    {"window", snap.windows[w]}}),
                      reader.ReadCycleTimes(p, static_cast<int>(si), spans[w])));
      }
      ps.lead_times.push_back(
          Summarize(SeriesLabels({{"process", process.id}, {"window", snap.windows[w]}}),
                    reader.ReadLeadTimes(p, spans[w])));
    }
    for (const cases::DimensionTable* table : dimensions) ps.folded += table->Folded(p);
  }
  return snap;
}

void EngineMetrics::WriteMetrics(MetricWriter* out) const {
  const Snapshot snap = Read();
  // fn(process, series index) / fn(process, stage series index).
  auto each_series = [&](auto&& fn) {
    for (const ProcessSnapshot& p : snap.processes) {
      for (size_t k = 0; k < p.series.size(); ++k) fn(p, k);
    }
  };
  auto each_stage = [&](auto&& fn) {
    for (const ProcessSnapshot& p : snap.processes) {
      for (size_t j = 0; j < p.stage_labels.size(); ++j) fn(p, j);
    }
  };

  for (const SeriesFamily& f : kProcessTotals) {
    out->Family(f.name, f.help, f.type);
    each_series([&](const ProcessSnapshot& p, size_t k) {
      out->Sample(p.SeriesLabelsAt(k), f.value(p.series[k]));
    });
  }
  out->Family("kpid_process_lead_time_seconds",
              "Lead time of completed cases (start to completion).", MetricType::Histogram);
  each_series([&](const ProcessSnapshot& p, size_t k) {
    WriteHistogram(out, p.SeriesLabelsAt(k), p.series[k].totals.lead_time);
  });

  for (const StageTotalsFamily& f : kStageTotals) {
    out->Family(f.name, f.help, f.type);
    each_stage([&](const ProcessSnapshot& p, size_t j) {
      out->Sample(p.StageLabelsAt(j), f.value(p.stage_totals[j]));
    });
  }
  out->Family("kpid_stage_exited_total", "Exits from the stage, by outcome.", MetricType::Counter);
  each_stage([&](const ProcessSnapshot& p, size_t j) {
    out->Sample(p.StageLabelsAt(j), {"outcome", "advanced"}, D(p.stage_totals[j].exited_advanced));
    out->Sample(p.StageLabelsAt(j), {"outcome", "fallout"}, D(p.stage_totals[j].exited_fallout));
  });
  out->Family("kpid_stage_cycle_time_seconds", "Time in stage of each exit.",
              MetricType::Histogram);
  each_stage([&](const ProcessSnapshot& p, size_t j) {
    WriteHistogram(out, p.StageLabelsAt(j), p.stage_totals[j].cycle_time);
  });

  for (const ProcessWindowFamily& f : kProcessWindow) {
    out->Family(f.name, f.help, MetricType::Gauge);
    each_series([&](const ProcessSnapshot& p, size_t k) {
      for (size_t w = 0; w < p.windows; ++w) {
        if (absl::optional<double> v = f.value(p.process_windows[k * p.windows + w])) {
          out->Sample(p.SeriesLabelsAt(k), {"window", snap.windows[w]}, *v);
        }
      }
    });
  }
  for (const StageWindowFamily& f : kStageWindow) {
    out->Family(f.name, f.help, MetricType::Gauge);
    each_stage([&](const ProcessSnapshot& p, size_t j) {
      for (size_t w = 0; w < p.windows; ++w) {
        if (absl::optional<double> v = f.value(p.stage_windows[j * p.windows + w])) {
          out->Sample(p.StageLabelsAt(j), {"window", snap.windows[w]}, *v);
        }
      }
    });
  }

  out->Family("kpid_transitions_total", "Moves of cases from one stage to another.",
              MetricType::Counter);
  for (const ProcessSnapshot& p : snap.processes) {
    for (const Transition& t : p.transitions) out->Sample(t.labels, D(t.count));
  }
  auto write_summaries = [&](const char* name, const char* help,
                             std::vector<WindowSummary> ProcessSnapshot::*summaries) {
    out->Family(name, help, MetricType::Summary);
    for (const ProcessSnapshot& p : snap.processes) {
      for (const WindowSummary& s : p.*summaries) {
        out->Summary(s.labels, s.count, s.sum, s.quantiles);
      }
    }
  };
  write_summaries("kpid_window_stage_cycle_time_seconds",
                  "Time-in-stage quantiles of the exits in the window.",
                  &ProcessSnapshot::cycle_times);
  write_summaries("kpid_window_process_lead_time_seconds",
                  "Lead-time quantiles of the cases completed in the window.",
                  &ProcessSnapshot::lead_times);
  out->Family("kpid_series_folded_total",
              "Cases whose dimension values were folded into __other__ "
              "(max_series_per_process reached).",
              MetricType::Counter);
  for (const ProcessSnapshot& p : snap.processes) out->Sample(p.labels, D(p.folded));
}

}  // namespace kpid::exporter

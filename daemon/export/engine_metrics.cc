#include "daemon/export/engine_metrics.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
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

  bool labels_kept = false;                     // from the last text scrape (EngineMetrics::Read)
  std::vector<MergedReader::SeriesRef> listed;  // what the shards listed, in order
  // True when Read wrote the values into the last text scrape's arrays (same
  // series, same labels) and compared them as it went: then same_series[k]
  // and same_stage[j] say whether unit k (j) has the last scrape's values bit
  // for bit, and WriteText compares nothing again (the last scrape's arrays
  // are these).
  bool compared = false;
  std::vector<bool> same_series;  // [series]
  std::vector<bool> same_stage;   // [series][stage]

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

// The dimension labels a series has: one per configured dimension it has a
// value for.
size_t DimLabels(const std::vector<std::string>& dim_names,
                 const std::vector<std::string>& values) {
  return std::min(dim_names.size(), values.size());
}

// Whether the series of `now` (listed and sorted, labels not yet built)
// would get exactly the labels `last` has: same process labels, stages and
// series, each with the same dimension names and values.
bool SameLabels(const ProcessSnapshot& last, const ProcessSnapshot& now,
                const model::ProcessConfig& process, const std::vector<std::string>& dim_names) {
  if (last.series.size() != now.series.size() || last.stages != now.stages ||
      last.stage_labels.size() != now.series.size() * now.stages ||
      last.labels.labels() != now.labels.labels()) {
    return false;
  }
  // Stage labels are the series' with the stage id second.
  for (size_t si = 0; si < now.stages && !last.series.empty(); ++si) {
    if (last.stage_labels[si][1].value != process.stages[si].id) return false;
  }
  for (size_t k = 0; k < now.series.size(); ++k) {
    const Labels& labels = last.series[k].labels;
    const std::vector<std::string>& values = *now.series[k].values;
    const size_t dims = DimLabels(dim_names, values);
    if (labels.size() != 1 + dims) return false;
    for (size_t d = 0; d < dims; ++d) {
      if (labels[1 + d].name != dim_names[d] || labels[1 + d].value != values[d]) return false;
    }
  }
  return true;
}

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

// A family written as lines per series of a process, or per stage series,
// in the order ProcessSnapshot keeps them: a "unit" is one series' lines.
struct UnitFamily {
  const char* name;
  const char* help;
  MetricType type;
  bool stage;  // one unit per stage series, else per process series
  // Writes the lines of unit `i` of `p`; `windows` the window label values.
  std::function<void(MetricWriter* out, const std::vector<std::string>& windows,
                     const ProcessSnapshot& p, size_t i)>
      write;
};

// (Not stage_labels.size(): a snapshot whose labels the next one took has
// none left.)
size_t UnitCount(const ProcessSnapshot& p, bool stage) {
  return stage ? p.series.size() * p.stages : p.series.size();
}

// Every family with lines per series, in the order /metrics has them.
const std::vector<UnitFamily>& UnitFamilies() {
  using Windows = std::vector<std::string>;
  static const std::vector<UnitFamily>* families = [] {
    auto* v = new std::vector<UnitFamily>;
    for (const SeriesFamily& f : kProcessTotals) {
      v->push_back({f.name, f.help, f.type, false,
                    [&f](MetricWriter* out, const Windows&, const ProcessSnapshot& p, size_t k) {
                      out->Sample(p.SeriesLabelsAt(k), f.value(p.series[k]));
                    }});
    }
    v->push_back({"kpid_process_lead_time_seconds",
                  "Lead time of completed cases (start to completion).", MetricType::Histogram,
                  false, [](MetricWriter* out, const Windows&, const ProcessSnapshot& p, size_t k) {
                    WriteHistogram(out, p.SeriesLabelsAt(k), p.series[k].totals.lead_time);
                  }});
    for (const StageTotalsFamily& f : kStageTotals) {
      v->push_back({f.name, f.help, f.type, true,
                    [&f](MetricWriter* out, const Windows&, const ProcessSnapshot& p, size_t j) {
                      out->Sample(p.StageLabelsAt(j), f.value(p.stage_totals[j]));
                    }});
    }
    v->push_back({"kpid_stage_exited_total", "Exits from the stage, by outcome.",
                  MetricType::Counter, true,
                  [](MetricWriter* out, const Windows&, const ProcessSnapshot& p, size_t j) {
                    out->Sample(p.StageLabelsAt(j), {"outcome", "advanced"},
                                D(p.stage_totals[j].exited_advanced));
                    out->Sample(p.StageLabelsAt(j), {"outcome", "fallout"},
                                D(p.stage_totals[j].exited_fallout));
                  }});
    v->push_back({"kpid_stage_cycle_time_seconds", "Time in stage of each exit.",
                  MetricType::Histogram, true,
                  [](MetricWriter* out, const Windows&, const ProcessSnapshot& p, size_t j) {
                    WriteHistogram(out, p.StageLabelsAt(j), p.stage_totals[j].cycle_time);
                  }});
    for (const ProcessWindowFamily& f : kProcessWindow) {
      v->push_back(
          {f.name, f.help, MetricType::Gauge, false,
           [&f](MetricWriter* out, const Windows& windows, const ProcessSnapshot& p, size_t k) {
             for (size_t w = 0; w < p.windows; ++w) {
               if (absl::optional<double> v = f.value(p.process_windows[k * p.windows + w])) {
                 out->Sample(p.SeriesLabelsAt(k), {"window", windows[w]}, *v);
               }
             }
           }});
    }
    for (const StageWindowFamily& f : kStageWindow) {
      v->push_back(
          {f.name, f.help, MetricType::Gauge, true,
           [&f](MetricWriter* out, const Windows& windows, const ProcessSnapshot& p, size_t j) {
             for (size_t w = 0; w < p.windows; ++w) {
               if (absl::optional<double> v = f.value(p.stage_windows[j * p.windows + w])) {
                 out->Sample(p.StageLabelsAt(j), {"window", windows[w]}, *v);
               }
             }
           }});
    }
    return v;
  }();
  return *families;
}

// The families after the unit families: few lines, written afresh.
void WriteOtherFamilies(const std::vector<ProcessSnapshot>& processes, MetricWriter* out) {
  out->Family("kpid_transitions_total", "Moves of cases from one stage to another.",
              MetricType::Counter);
  for (const ProcessSnapshot& p : processes) {
    for (const Transition& t : p.transitions) out->Sample(t.labels, D(t.count));
  }
  auto write_summaries = [&](const char* name, const char* help,
                             std::vector<WindowSummary> ProcessSnapshot::*summaries) {
    out->Family(name, help, MetricType::Summary);
    for (const ProcessSnapshot& p : processes) {
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
  for (const ProcessSnapshot& p : processes) out->Sample(p.labels, D(p.folded));
}

// Bit for bit, not ==: -0.0 == 0.0 but they print differently (NaN != NaN
// only costs a re-render). Every field of these structs is 8 bytes wide,
// so there is no padding to compare.
template <typename T>
bool SameBits(const T* a, const T* b, size_t n = 1) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) % 8 == 0);
  return n == 0 || std::memcmp(a, b, n * sizeof(T)) == 0;
}

bool SameRange(TextRange a, TextRange b) { return a.begin == b.begin && a.end == b.end; }

// Whether every unit of `now` has the labels (and the stages and windows)
// of the unit at the same index in `before`: then a unit whose values are
// the same renders the same lines.
bool SameShape(const ProcessSnapshot& before, const ProcessSnapshot& now) {
  if (before.stages != now.stages || before.windows != now.windows ||
      before.series.size() != now.series.size()) {
    return false;
  }
  // Kept from `before` by Read (SameLabels): moved out of it.
  if (now.labels_kept) return true;
  if (before.stage_text.size() != now.stage_text.size() || before.label_text != now.label_text) {
    return false;
  }
  for (size_t k = 0; k < now.series.size(); ++k) {
    if (!SameRange(before.series[k].text, now.series[k].text)) return false;
  }
  for (size_t j = 0; j < now.stage_text.size(); ++j) {
    if (!SameRange(before.stage_text[j], now.stage_text[j])) return false;
  }
  return true;
}

bool SameValues(const ProcessSnapshot& before, const ProcessSnapshot& now, bool stage, size_t i) {
  const size_t w = now.windows;
  if (stage) {
    return SameBits(&before.stage_totals[i], &now.stage_totals[i]) &&
           SameBits(&before.stage_windows[i * w], &now.stage_windows[i * w], w);
  }
  return SameBits(&before.series[i].totals, &now.series[i].totals) &&
         before.series[i].open_cases == now.series[i].open_cases &&
         SameBits(&before.process_windows[i * w], &now.process_windows[i * w], w);
}

constexpr size_t kChanged = std::numeric_limits<size_t>::max();

// A family's lines as the last scrape rendered them, in chunks of
// consecutive units (~128 KB each, EngineMetrics::set_text_chunk_bytes), so a change in a few
// series rebuilds (copies) only their chunks: the series whose facts arrive between two scrapes are
// usually a few, every scrape.
// Lines and how many bodies refer to them (Lease).
struct KeptLines {
  std::string text;
  std::atomic<int> leases{0};
};
struct KeptChunk {
  // The chunk's lines; bodies of scrapes being sent share them.
  std::shared_ptr<KeptLines> lines;
  std::vector<size_t> ends;  // where the lines of each of its units end
  // The lines before those, whose memory the next lines are written into
  // once no body refers to them any more.
  std::shared_ptr<KeptLines> spare;
};
struct KeptFamily {
  size_t units_per_chunk = 0;  // 0: never rendered
  size_t units = 0;
  std::vector<KeptChunk> chunks;
};

// Formats every line.
void Write(const std::vector<ProcessSnapshot>& processes, const std::vector<std::string>& windows,
           MetricWriter* out) {
  for (const UnitFamily& family : UnitFamilies()) {
    out->Family(family.name, family.help, family.type);
    for (const ProcessSnapshot& p : processes) {
      for (size_t i = 0; i < UnitCount(p, family.stage); ++i) family.write(out, windows, p, i);
    }
  }
  WriteOtherFamilies(processes, out);
}

// `lines` for a body: a lease on them until the body lets go.
std::shared_ptr<const std::string> Lease(const std::shared_ptr<KeptLines>& lines) {
  lines->leases.fetch_add(1, std::memory_order_relaxed);
  return std::shared_ptr<const std::string>(&lines->text, [keep = lines](const std::string*) {
    keep->leases.fetch_sub(1, std::memory_order_release);
  });
}

// The memory of `spare` when no body refers to it any more, for the next
// lines to be written into (else an empty string, and the spare is left to
// the bodies that have it).
std::string TakeSpare(std::shared_ptr<KeptLines>* spare) {
  // The acquire pairs with the release of the last lease (on the thread
  // that sent the body): its reads are done before the text is rewritten.
  if (*spare != nullptr && (*spare)->leases.load(std::memory_order_acquire) == 0) {
    return std::move((*spare)->text);
  }
  *spare = nullptr;
  return {};
}

// Renders one family's lines into `kept` for `processes`: unit u copied
// from the kept lines when where[u] is its index there, formatted when
// kChanged; chunks whose units all stay where they were are shared as they
// are.
void RebuildFamily(const UnitFamily& family, const std::vector<ProcessSnapshot>& processes,
                   const std::vector<std::string>& windows, const std::vector<size_t>& where,
                   size_t chunk_bytes, KeptFamily* kept) {
  const size_t units = where.size();
  // Units per chunk: as the last rendering had them while its chunks are
  // within 4x of `chunk_bytes`, else from its bytes per unit (the first
  // rendering is one chunk).
  size_t bytes = 0;
  for (const KeptChunk& c : kept->chunks) bytes += c.lines->text.size();
  const size_t per_chunk = kept->units_per_chunk == 0 || kept->units == 0 || bytes == 0
                               ? std::max<size_t>(units, 1)
                               : std::max<size_t>(1, chunk_bytes * kept->units / bytes);
  const size_t k = kept->units_per_chunk != 0 && per_chunk < 4 * kept->units_per_chunk &&
                           4 * per_chunk > kept->units_per_chunk
                       ? kept->units_per_chunk
                       : per_chunk;
  const size_t old_k = kept->units_per_chunk;
  const std::vector<KeptChunk>& old = kept->chunks;
  // Where unit `o` of the last rendering is.
  auto old_lines = [&](size_t o) {
    const KeptChunk& c = old[o / old_k];
    const size_t i = o % old_k;
    const size_t begin = i == 0 ? 0 : c.ends[i - 1];
    return std::make_pair(&c.lines->text, std::make_pair(begin, c.ends[i]));
  };

  std::vector<KeptChunk> next((units + k - 1) / k);
  // Where each process's units begin (a few processes: found by a scan, not
  // a table of every unit, which was ~15% of a scrape rebuilding a chunk or
  // two per family).
  std::vector<size_t> process_begin = {0};
  for (const ProcessSnapshot& p : processes) {
    process_begin.push_back(process_begin.back() + UnitCount(p, family.stage));
  }
  auto write_unit = [&](MetricWriter* out, size_t u) {
    size_t p = 0;
    while (u >= process_begin[p + 1]) ++p;
    family.write(out, windows, processes[p], u - process_begin[p]);
  };
  for (size_t c = 0; c < next.size(); ++c) {
    const size_t first = c * k;
    const size_t last = std::min(units, first + k);
    // The same units at the same places as the last rendering's chunk c:
    // shared as it is.
    bool same = k == old_k && c < old.size();
    for (size_t u = first; same && u < last; ++u) same = where[u] == u;
    same = same && std::min(kept->units, first + k) == last;
    if (same) {
      next[c] = old[c];
      continue;
    }
    TextWriter lines(c < old.size() ? TakeSpare(&kept->chunks[c].spare) : std::string());
    lines.FamilyLines(family.name, family.type);
    KeptChunk& chunk = next[c];
    chunk.ends.reserve(last - first);
    // Kept lines are copied in runs: consecutive unchanged units are
    // consecutive in the old text too.
    const std::string* run_text = nullptr;
    size_t run_begin = 0, run_end = 0;
    auto copy_run = [&] {
      if (run_text != nullptr && run_end > run_begin) {
        lines.Lines(absl::string_view(*run_text).substr(run_begin, run_end - run_begin));
      }
      run_text = nullptr;
    };
    for (size_t u = first; u < last; ++u) {
      if (where[u] == kChanged || old_k == 0) {
        copy_run();
        write_unit(&lines, u);
      } else {
        const auto [text, range] = old_lines(where[u]);
        if (text != run_text || range.first != run_end) {
          copy_run();
          run_text = text;
          run_begin = range.first;
        }
        run_end = range.second;
      }
      chunk.ends.push_back(lines.size() + (run_text != nullptr ? run_end - run_begin : 0));
    }
    copy_run();
    chunk.lines = std::make_shared<KeptLines>();
    chunk.lines->text = std::move(lines).Finish();
  }
  // What the replaced chunks had becomes the spare of the chunk at their
  // place.
  for (size_t c = 0; c < next.size() && c < old.size(); ++c) {
    if (next[c].lines != old[c].lines) {
      next[c].spare = old[c].lines;
    } else {
      next[c].spare = old[c].spare;
    }
  }
  kept->chunks = std::move(next);
  kept->units_per_chunk = k;
  kept->units = units;
}

}  // namespace

struct EngineMetrics::Snapshot {
  std::vector<std::string> windows;  // label values, by window index
  std::vector<ProcessSnapshot> processes;
  uint64_t generation = 0;  // of the ShardSet read
  uint64_t cache_pass = 0;  // the SeriesReadCache pass that read it
  // Series point at their tables' dimension values.
  std::shared_ptr<const void> keep_alive;
};

// The last scrape's text of every unit family, and the snapshot it was
// rendered from.
// The last scrape's text of every unit family (KeptFamily), and the
// snapshot it was rendered from.
struct EngineMetrics::RenderedText {
  std::vector<KeptFamily> families;  // by UnitFamilies() index
  Snapshot before;                   // without keep_alive: its values and label text only
};

EngineMetrics::~EngineMetrics() = default;

EngineMetrics::EngineMetrics(const model::Config* config, aggregate::ShardSource shards,
                             const cases::Clock* clock)
    : config_(config), shards_(std::move(shards)), clock_(clock) {}

EngineMetrics::EngineMetrics(const model::Config* config,
                             std::vector<const aggregate::AggregateShard*> shards,
                             std::vector<const cases::DimensionTable*> dimensions,
                             const cases::Clock* clock)
    : EngineMetrics(config, aggregate::FixedShards(std::move(shards), std::move(dimensions)),
                    clock) {}

EngineMetrics::Snapshot EngineMetrics::Read(aggregate::SeriesReadCache* cache,
                                            Snapshot* before) const {
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
  snap.generation = set.generation;
  snap.cache_pass = cache->pass();
  // The last text scrape's series and sums can be kept where nothing they
  // rest on changed: only over the same shards, and when its pass was the
  // cache's last one (a pass in between, e.g. Collect(), may have re-read
  // series whose sums the last scrape did not see).
  const bool consecutive = before != nullptr && before->generation == set.generation &&
                           before->cache_pass + 1 == snap.cache_pass &&
                           before->windows == snap.windows;

  snap.processes.resize(config.processes.size());
  for (size_t pi = 0; pi < config.processes.size(); ++pi) {
    const int p = static_cast<int>(pi);
    const model::ProcessConfig& process = config.processes[pi];
    ProcessSnapshot& ps = snap.processes[pi];
    ps.labels = SeriesLabels({{"process", process.id}});

    ps.windows = spans.size();
    // Every shard comes from the same config (MergedReader), so every read
    // below has the front shard's stages.
    ps.stages = std::min(process.stages.size(),
                         static_cast<size_t>(reader.shards().front()->stage_count(p)));
    ProcessSnapshot* last =
        before != nullptr && pi < before->processes.size() ? &before->processes[pi] : nullptr;

    // Series of equal dimension values across workers, summed: grouped as
    // last time when the shards list the same (shard, dims) pairs (hashing
    // every pair's values at 16 partitions cost more than the rest).
    ps.listed = reader.ListSeries(p);
    const bool same_series = consecutive && last != nullptr && last->listed == ps.listed &&
                             last->stages == ps.stages && last->windows == ps.windows;
    if (same_series) {
      ps.series.resize(last->series.size());
      for (size_t k = 0; k < ps.series.size(); ++k) {
        Series& s = ps.series[k];
        s.refs = std::move(last->series[k].refs);
        const MergedReader::SeriesRef& front = s.refs.front();
        s.values = &dimensions[static_cast<size_t>(front.shard)]->Values(p, front.dims);
      }
    } else {
      absl::flat_hash_map<const std::vector<std::string>*, size_t, ValuesHash, ValuesEq> index;
      for (const MergedReader::SeriesRef& ref : ps.listed) {
        const std::vector<std::string>* values =
            &dimensions[static_cast<size_t>(ref.shard)]->Values(p, ref.dims);
        auto [it, inserted] = index.emplace(values, ps.series.size());
        if (inserted) ps.series.emplace_back().values = values;
        ps.series[it->second].refs.push_back(ref);
      }
      std::sort(ps.series.begin(), ps.series.end(),
                [](const Series& a, const Series& b) { return *a.values < *b.values; });
    }
    const size_t n = ps.series.size();
    // The labels of the last text scrape when every series has the same
    // (the usual scrape): building and rendering ~10k label sets was a
    // third of a scrape with nothing to format.
    ps.labels_kept = last != nullptr && SameLabels(*last, ps, process, dim_names);
    if (ps.labels_kept) {
      for (size_t k = 0; k < n; ++k) {
        ps.series[k].labels = std::move(last->series[k].labels);
        ps.series[k].text = last->series[k].text;
      }
      ps.stage_labels = std::move(last->stage_labels);
      ps.stage_text = std::move(last->stage_text);
      ps.label_text = std::move(last->label_text);
    } else {
      ps.stage_labels.reserve(n * ps.stages);
      ps.stage_text.reserve(n * ps.stages);
    }
    // Over the last text scrape's series and labels, its value arrays are
    // this scrape's: a series none of whose reads changed keeps its values
    // where they are (nothing copied), and one read again is compared with
    // them as it is written. Copying ~2 MB of kept values per scrape into
    // fresh arrays (page faults, zeroing) and comparing them all again in
    // WriteText was most of a scrape's CPU at 10k stage series when a few
    // series changed.
    ps.compared = same_series && ps.labels_kept && last->process_windows.size() == n * ps.windows &&
                  last->stage_totals.size() == n * ps.stages &&
                  last->stage_windows.size() == n * ps.stages * ps.windows;
    if (ps.compared) {
      ps.process_windows = std::move(last->process_windows);
      ps.stage_totals = std::move(last->stage_totals);
      ps.stage_windows = std::move(last->stage_windows);
      ps.same_series = std::move(last->same_series);
      ps.same_series.assign(n, true);
      ps.same_stage = std::move(last->same_stage);
      ps.same_stage.assign(n * ps.stages, true);
    } else {
      ps.process_windows.reserve(n * ps.windows);
      ps.stage_totals.reserve(n * ps.stages);
      ps.stage_windows.resize(n * ps.stages * ps.windows);
    }
    for (size_t i = 0; i < set.shards.size(); ++i) {
      cache->LoadVersions(static_cast<int>(i), *set.shards[i], p);
    }
    // Read into, for every series: no allocation per read.
    aggregate::SeriesTotals totals;
    std::vector<aggregate::SeriesWindow> windows(ps.windows);
    for (size_t k = 0; k < n; ++k) {
      Series& s = ps.series[k];
      if (!ps.labels_kept) {
        s.labels = ps.labels.labels();
        for (size_t d = 0; d < DimLabels(dim_names, *s.values); ++d) {
          s.labels.push_back({dim_names[d], (*s.values)[d]});
        }
        s.text = ps.Render(s.labels);
        for (size_t si = 0; si < ps.stages; ++si) {
          Labels& stage = ps.stage_labels.emplace_back(s.labels);
          stage.insert(stage.begin() + 1, {"stage", process.stages[si].id});
        }
      }
      // No read of the series changed since the last scrape summed them:
      // the same sums (what adding the kept reads up again would give).
      if (same_series &&
          std::all_of(s.refs.begin(), s.refs.end(), [&](const MergedReader::SeriesRef& ref) {
            return cache->Unchanged(ref.shard, p, ref.dims, ps.windows);
          })) {
        s.totals = last->series[k].totals;
        s.open_cases = last->series[k].open_cases;
        if (ps.compared) continue;  // the values are in place
        const size_t stages = k * ps.stages;
        ps.stage_totals.insert(ps.stage_totals.end(), last->stage_totals.begin() + stages,
                               last->stage_totals.begin() + stages + ps.stages);
        ps.process_windows.insert(ps.process_windows.end(),
                                  last->process_windows.begin() + k * ps.windows,
                                  last->process_windows.begin() + (k + 1) * ps.windows);
        std::copy_n(last->stage_windows.begin() + stages * ps.windows, ps.stages * ps.windows,
                    ps.stage_windows.begin() + stages * ps.windows);
        continue;
      }
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
      if (ps.compared) {
        // In place of the last scrape's values, noting which differ (bit
        // for bit: SameBits).
        bool same = SameBits(&last->series[k].totals, &s.totals) &&
                    last->series[k].open_cases == s.open_cases;
        for (size_t w = 0; w < ps.windows; ++w) {
          ProcessWindowCounts& at = ps.process_windows[k * ps.windows + w];
          same = same && SameBits(&at, &windows[w].process);
          at = windows[w].process;
        }
        ps.same_series[k] = same;
        for (size_t si = 0; si < ps.stages; ++si) {
          const size_t j = k * ps.stages + si;
          bool stage_same = SameBits(&ps.stage_totals[j], &totals.stages[si]);
          ps.stage_totals[j] = totals.stages[si];
          for (size_t w = 0; w < ps.windows; ++w) {
            StageWindowCounts& at = ps.stage_windows[j * ps.windows + w];
            stage_same = stage_same && SameBits(&at, &windows[w].stages[si]);
            at = windows[w].stages[si];
          }
          ps.same_stage[j] = stage_same;
        }
        continue;
      }
      for (size_t si = 0; si < ps.stages; ++si) ps.stage_totals.push_back(totals.stages[si]);
      for (size_t w = 0; w < ps.windows; ++w) {
        ps.process_windows.push_back(windows[w].process);
        for (size_t si = 0; si < ps.stages; ++si) {
          ps.stage_windows[(k * ps.stages + si) * ps.windows + w] = windows[w].stages[si];
        }
      }
    }
    if (!ps.labels_kept) {
      for (const Labels& stage : ps.stage_labels) ps.stage_text.push_back(ps.Render(stage));
    }

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
  // Scrapes at the same moment (several HTTP threads) must not wait for each
  // other: the one that finds the caches taken reads every series afresh and
  // formats every line, which gives the same bytes.
  if (cache_window_reads_.load(std::memory_order_relaxed) && cache_mu_.TryLock()) {
    auto* text =
        cache_text_.load(std::memory_order_relaxed) ? dynamic_cast<TextWriter*>(out) : nullptr;
    if (text != nullptr) {
      if (rendered_ == nullptr) rendered_ = std::make_unique<RenderedText>();
      WriteText(Read(&cache_, &rendered_->before), text);
    } else {
      const Snapshot snap = Read(&cache_, nullptr);
      Write(snap.processes, snap.windows, out);
    }
    cache_mu_.Unlock();
    return;
  }
  aggregate::SeriesReadCache uncached(/*keep_reads=*/false);
  const Snapshot snap = Read(&uncached, nullptr);
  Write(snap.processes, snap.windows, out);
}

void EngineMetrics::WriteText(Snapshot snap, TextWriter* out) const {
  RenderedText& r = *rendered_;
  const std::vector<UnitFamily>& families = UnitFamilies();
  r.families.resize(families.size());

  // kept[stage][u]: where unit u's lines are among the kept lines (their
  // unit index there), or kChanged; units of every process in order.
  std::array<std::vector<size_t>, 2> kept;
  std::array<size_t, 2> before_base = {0, 0};
  TextCacheStats stats;
  const Snapshot& before = r.before;
  for (size_t pi = 0; pi < snap.processes.size(); ++pi) {
    const ProcessSnapshot& now = snap.processes[pi];
    const bool comparable = pi < before.processes.size() && before.windows == snap.windows &&
                            SameShape(before.processes[pi], now);
    for (const bool stage : {false, true}) {
      for (size_t i = 0; i < UnitCount(now, stage); ++i) {
        const bool same =
            comparable && (now.compared ? (stage ? now.same_stage[i] : now.same_series[i])
                                        : SameValues(before.processes[pi], now, stage, i));
        kept[stage].push_back(same ? before_base[stage] + i : kChanged);
        ++(same ? stats.kept : stats.rendered);
      }
      if (pi < before.processes.size()) {
        before_base[stage] += UnitCount(before.processes[pi], stage);
      }
    }
  }

  for (size_t f = 0; f < families.size(); ++f) {
    const UnitFamily& family = families[f];
    out->Family(family.name, family.help, family.type);
    RebuildFamily(family, snap.processes, snap.windows, kept[family.stage],
                  text_chunk_bytes_.load(std::memory_order_relaxed), &r.families[f]);
    for (const KeptChunk& chunk : r.families[f].chunks) out->SharedLines(Lease(chunk.lines));
  }
  WriteOtherFamilies(snap.processes, out);

  snap.keep_alive.reset();
  for (ProcessSnapshot& p : snap.processes) {
    for (Series& s : p.series) s.values = nullptr;
  }
  r.before = std::move(snap);
  stats.scrapes = text_stats_.scrapes + 1;
  text_stats_ = stats;
}

}  // namespace kpid::exporter

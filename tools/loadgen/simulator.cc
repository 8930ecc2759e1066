#include "tools/loadgen/simulator.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace kpid::loadgen {
namespace {

using kpid::v1::ProcessEvent;

constexpr double kPi = 3.14159265358979323846;
constexpr double kMicrosPerHour = 3600e6;
// Longest stage time or gap between arrivals: keeps extreme draws (sigma up
// to 5) inside int64 microseconds.
constexpr double kMaxGapUs = 100.0 * 365 * 24 * kMicrosPerHour;
constexpr double kFeedbackMeanDelayUs = 15 * 60e6;
constexpr uint64_t kCaseNumbers = 100000000;  // case ids carry 8 digits

constexpr absl::string_view kFalloutReasons[] = {"lost", "rejected", "abandoned"};
// Relative odds of feedback scores 0..10: most customers are content, a few
// are not (an NPS-like skew).
constexpr double kScoreWeights[] = {2, 1, 1, 2, 2, 4, 6, 12, 20, 25, 25};

// splitmix64's finalizer: spreads seeds so nearby ones give unrelated streams.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// FNV-1a: a hash of the process id that is the same everywhere.
uint64_t Fnv1a(absl::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t ClampGapUs(double us) {
  if (!(us >= 1)) return 1;  // also NaN
  if (us > kMaxGapUs) return static_cast<int64_t>(kMaxGapUs);
  return static_cast<int64_t>(std::llround(us));
}

}  // namespace

absl::Time DefaultStart() { return absl::FromUnixSeconds(1767225600); }  // 2026-01-01T00:00:00Z

// Random draws from the raw engine output, identical on every platform.
struct Simulator::Process {
  std::string id;
  std::vector<std::string> stage_ids;
  std::vector<double> median_us;
  std::vector<double> sigma;
  std::vector<double> fallout;
  std::vector<double> rework;
  double mean_gap_us = 0;
  double deal_median = 0;
  double deal_sigma = 0;
  double cost = 0;
  double feedback_odds = 0;
  // Per dimension, in dimensions.names order: name and the values to draw.
  std::vector<std::pair<std::string, std::vector<std::string>>> dims;
  uint64_t cases_started = 0;

  std::mt19937_64 rng;
  bool has_spare_normal = false;
  double spare_normal = 0;

  // [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }
  // (0, 1]: safe to take the log of.
  double UniformPositive() { return 1.0 - Uniform(); }
  // 0..n-1.
  size_t Index(size_t n) { return std::min(n - 1, static_cast<size_t>(Uniform() * n)); }
  double Exponential(double mean) { return -mean * std::log(UniformPositive()); }
  // Box–Muller; the second value of each pair is kept for the next call.
  double Normal() {
    if (has_spare_normal) {
      has_spare_normal = false;
      return spare_normal;
    }
    const double r = std::sqrt(-2.0 * std::log(UniformPositive()));
    const double theta = 2.0 * kPi * Uniform();
    spare_normal = r * std::sin(theta);
    has_spare_normal = true;
    return r * std::cos(theta);
  }
  double LogNormal(double median, double shape) { return median * std::exp(shape * Normal()); }
};

struct Simulator::Case {
  uint32_t process = 0;
  int stage = 0;
  int reworks = 0;
  int pending = 0;  // COST / FEEDBACK steps still to come after completion
  std::string case_id;
  absl::InlinedVector<uint32_t, 4> attributes;  // value index per process dimension
};

absl::Status Simulator::CheckOptions(const model::Config& config, const SimulatorOptions& options) {
  std::vector<std::string> unknown;
  for (const std::string& id : options.processes) {
    if (config.FindProcess(id) == nullptr) unknown.push_back(id);
  }
  if (!unknown.empty()) {
    std::vector<std::string> known;
    for (const model::ProcessConfig& p : config.processes) known.push_back(p.id);
    return absl::InvalidArgumentError(
        absl::StrCat("unknown process(es) ", absl::StrJoin(unknown, ","),
                     "; the config has: ", absl::StrJoin(known, ",")));
  }
  bool any = false;
  for (const model::ProcessConfig& p : config.processes) {
    const bool selected = options.processes.empty() ||
                          std::find(options.processes.begin(), options.processes.end(), p.id) !=
                              options.processes.end();
    if (selected && !p.stages.empty()) any = true;
  }
  if (!any) return absl::InvalidArgumentError("no process with stages to simulate");
  return absl::OkStatus();
}

Simulator::Simulator(const model::Config& config, const SimulatorOptions& options)
    : seed_(options.seed),
      start_us_(absl::ToUnixMicros(options.start)),
      max_events_(options.max_events),
      now_us_(start_us_) {
  event_id_prefix_ = absl::StrFormat("%x-%d-", seed_, FloorDiv(start_us_, 1000000));
  // Runs with another seed or start get other case ids, so a daemon that
  // still remembers the closed cases of an earlier run does not reject them.
  case_number_base_ = Mix(seed_ ^ Mix(static_cast<uint64_t>(start_us_))) % kCaseNumbers;

  for (const model::ProcessConfig& pc : config.processes) {
    if (pc.stages.empty()) continue;
    if (!options.processes.empty() && std::find(options.processes.begin(), options.processes.end(),
                                                pc.id) == options.processes.end()) {
      continue;
    }
    auto p = std::make_unique<Process>();
    p->id = pc.id;
    for (const model::StageConfig& s : pc.stages) {
      p->stage_ids.push_back(s.id);
      const absl::Duration median = s.simulate.median.value_or(s.sla / 2);
      p->median_us.push_back(absl::ToDoubleMicroseconds(median));
      p->sigma.push_back(s.simulate.sigma);
      p->fallout.push_back(s.simulate.fallout);
      p->rework.push_back(s.simulate.rework);
    }
    const model::ProcessSimulation& sim = pc.simulate;
    p->mean_gap_us = kMicrosPerHour / sim.arrivals_per_hour;
    p->deal_median = sim.deal_median;
    p->deal_sigma = sim.deal_sigma;
    p->cost = sim.cost_per_case;
    p->feedback_odds = sim.feedback_odds;
    for (const std::string& name : config.dimensions.names) {
      auto it = sim.attributes.find(name);
      std::vector<std::string> values;
      if (it != sim.attributes.end() && !it->second.empty()) {
        values = it->second;
      } else {
        values = {absl::StrCat(name, "_a"), absl::StrCat(name, "_b"), absl::StrCat(name, "_c")};
      }
      p->dims.emplace_back(name, std::move(values));
    }
    p->rng.seed(Mix(seed_ ^ Mix(Fnv1a(pc.id))));
    const uint32_t index = static_cast<uint32_t>(processes_.size());
    processes_.push_back(std::move(p));
    Process& proc = *processes_.back();
    Schedule(start_us_ + ClampGapUs(proc.Exponential(proc.mean_gap_us)), index, Step::kArrival);
  }
}

Simulator::~Simulator() = default;

absl::Time Simulator::now() const { return absl::FromUnixMicros(now_us_); }

void Simulator::Schedule(int64_t time_us, uint32_t index, Step step) {
  queue_.push(Pending{time_us, next_seq_++, index, step});
}

uint32_t Simulator::NewCase(uint32_t process) {
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(cases_.size());
    cases_.emplace_back();
  }
  Process& p = *processes_[process];
  Case& c = cases_[slot];
  c.process = process;
  c.stage = 0;
  c.reworks = 0;
  c.pending = 0;
  const uint64_t number = (case_number_base_ + ++p.cases_started) % kCaseNumbers;
  c.case_id = absl::StrCat(p.id, "-", absl::Dec(number, absl::kZeroPad8));
  c.attributes.clear();
  for (const auto& dim : p.dims) {
    c.attributes.push_back(static_cast<uint32_t>(p.Index(dim.second.size())));
  }
  ++open_cases_;
  return slot;
}

void Simulator::ReleaseCase(uint32_t slot) { free_slots_.push_back(slot); }

int64_t Simulator::StageTimeUs(Process& p, int stage) {
  return ClampGapUs(p.LogNormal(p.median_us[stage], p.sigma[stage]));
}

void Simulator::Fill(const Case& c, ProcessEvent::Kind kind, int64_t time_us, ProcessEvent* out) {
  const Process& p = *processes_[c.process];
  out->Clear();
  out->set_event_id(absl::StrCat(event_id_prefix_, counts_.total));
  out->set_process(p.id);
  out->set_case_id(c.case_id);
  out->set_kind(kind);
  const int64_t seconds = FloorDiv(time_us, 1000000);
  out->mutable_occurred_at()->set_seconds(seconds);
  out->mutable_occurred_at()->set_nanos(static_cast<int32_t>((time_us - seconds * 1000000) * 1000));
  auto* attributes = out->mutable_attributes();
  for (size_t i = 0; i < p.dims.size(); ++i) {
    (*attributes)[p.dims[i].first] = p.dims[i].second[c.attributes[i]];
  }
}

bool Simulator::Next(ProcessEvent* out) {
  if (max_events_ > 0 && counts_.total >= max_events_) return false;
  if (queue_.empty()) return false;
  const Pending next = queue_.top();
  queue_.pop();
  const int64_t t = next.time_us;
  now_us_ = t;

  switch (next.step) {
    case Step::kArrival: {
      Process& p = *processes_[next.index];
      Schedule(t + ClampGapUs(p.Exponential(p.mean_gap_us)), next.index, Step::kArrival);
      const uint32_t slot = NewCase(next.index);
      Case& c = cases_[slot];
      Fill(c, ProcessEvent::STAGE_ENTERED, t, out);
      out->set_stage(p.stage_ids[0]);
      Schedule(t + StageTimeUs(p, 0), slot, Step::kLeaveStage);
      ++counts_.stage_entered;
      break;
    }
    case Step::kLeaveStage: {
      Case& c = cases_[next.index];
      Process& p = *processes_[c.process];
      const int s = c.stage;
      const double u = p.Uniform();
      const double fallout = p.fallout[s];
      const bool may_rework = s > 0 && c.reworks < kMaxReworks;
      if (u < fallout) {
        Fill(c, ProcessEvent::CASE_FALLOUT, t, out);
        out->set_reason(std::string(kFalloutReasons[p.Index(std::size(kFalloutReasons))]));
        --open_cases_;
        ReleaseCase(next.index);
        ++counts_.case_fallout;
      } else if (may_rework && u < fallout + (1 - fallout) * p.rework[s]) {
        c.stage = s - 1;
        ++c.reworks;
        Fill(c, ProcessEvent::STAGE_ENTERED, t, out);
        out->set_stage(p.stage_ids[c.stage]);
        Schedule(t + StageTimeUs(p, c.stage), next.index, Step::kLeaveStage);
        ++counts_.stage_entered;
      } else if (s + 1 < static_cast<int>(p.stage_ids.size())) {
        c.stage = s + 1;
        Fill(c, ProcessEvent::STAGE_ENTERED, t, out);
        out->set_stage(p.stage_ids[c.stage]);
        Schedule(t + StageTimeUs(p, c.stage), next.index, Step::kLeaveStage);
        ++counts_.stage_entered;
      } else {
        Fill(c, ProcessEvent::CASE_COMPLETED, t, out);
        const double amount = p.LogNormal(p.deal_median, p.deal_sigma);
        out->set_amount(std::round(amount * 100) / 100);
        --open_cases_;
        ++counts_.case_completed;
        if (p.cost > 0) {
          Schedule(t, next.index, Step::kCost);
          ++c.pending;
        }
        if (p.Uniform() < p.feedback_odds) {
          Schedule(t + ClampGapUs(p.Exponential(kFeedbackMeanDelayUs)), next.index,
                   Step::kFeedback);
          ++c.pending;
        }
        if (c.pending == 0) ReleaseCase(next.index);
      }
      break;
    }
    case Step::kCost:
    case Step::kFeedback: {
      Case& c = cases_[next.index];
      Process& p = *processes_[c.process];
      if (next.step == Step::kCost) {
        Fill(c, ProcessEvent::COST, t, out);
        out->set_amount(p.cost);
        ++counts_.cost;
      } else {
        Fill(c, ProcessEvent::FEEDBACK, t, out);
        double total = 0;
        for (double w : kScoreWeights) total += w;
        double x = p.Uniform() * total;
        int score = 0;
        while (score < 10 && x >= kScoreWeights[score]) x -= kScoreWeights[score++];
        out->set_score(score);
        ++counts_.feedback;
      }
      if (--c.pending == 0) ReleaseCase(next.index);
      break;
    }
  }
  ++counts_.total;
  return true;
}

}  // namespace kpid::loadgen

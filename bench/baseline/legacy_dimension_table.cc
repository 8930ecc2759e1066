// Frozen copy of daemon/cases/dimension_table.cc as of commit 059da4d (before the
// hot-path work), kept so bench/ can measure old against new in one run.
// Not used by the daemon; do not fix or extend it.
#include "bench/baseline/legacy_dimension_table.h"

#include "absl/strings/str_cat.h"

namespace kpid::bench_legacy {
namespace {

// Separates values in a lookup key; not valid in any sane attribute value,
// and if it appears anyway the worst case is two combinations sharing an id.
constexpr char kSeparator = '\x1f';

}  // namespace

DimensionTable::DimensionTable(const model::Config& config) : names_(config.dimensions.names) {
  for (size_t p = 0; p < config.processes.size(); ++p) {
    auto process = std::make_unique<Process>();
    // +2: the empty combination and __other__ do not count against the limit.
    process->capacity = static_cast<size_t>(config.dimensions.max_series_per_process) + 2;
    process->values = std::make_unique<std::vector<std::string>[]>(process->capacity);
    const size_t n = names_.size();
    Add(*process, std::string(n > 0 ? n - 1 : 0, kSeparator), std::vector<std::string>(n));
    if (n > 0) {
      std::vector<std::string> other(n, std::string(kOtherDimensionValue));
      std::string key;
      for (size_t i = 0; i < n; ++i) {
        absl::StrAppend(&key, i ? std::string(1, kSeparator) : "", kOtherDimensionValue);
      }
      Add(*process, std::move(key), std::move(other));
    }
    processes_.push_back(std::move(process));
  }
}

DimsId DimensionTable::Add(Process& p, std::string key, std::vector<std::string> values) {
  const size_t id = p.size.load(std::memory_order_relaxed);
  p.values[id] = std::move(values);
  p.ids.emplace(std::move(key), static_cast<DimsId>(id));
  // Release: a reader that sees the new size also sees the values written above.
  p.size.store(id + 1, std::memory_order_release);
  return static_cast<DimsId>(id);
}

DimsId DimensionTable::Resolve(int process,
                               const google::protobuf::Map<std::string, std::string>& attributes) {
  if (names_.empty()) return 0;
  Process& p = *processes_[static_cast<size_t>(process)];
  key_.clear();
  for (size_t i = 0; i < names_.size(); ++i) {
    if (i > 0) key_.push_back(kSeparator);
    auto it = attributes.find(names_[i]);
    if (it != attributes.end()) key_.append(it->second);
  }
  if (auto it = p.ids.find(key_); it != p.ids.end()) return it->second;
  if (p.size.load(std::memory_order_relaxed) >= p.capacity) {
    p.folded.Add();
    return other_id();
  }
  std::vector<std::string> values;
  values.reserve(names_.size());
  for (const std::string& name : names_) {
    auto it = attributes.find(name);
    values.push_back(it != attributes.end() ? it->second : "");
  }
  return Add(p, key_, std::move(values));
}

size_t DimensionTable::Size(int process) const {
  return processes_[static_cast<size_t>(process)]->size.load(std::memory_order_acquire);
}

const std::vector<std::string>& DimensionTable::Values(int process, DimsId id) const {
  return processes_[static_cast<size_t>(process)]->values[id];
}

uint64_t DimensionTable::Folded(int process) const {
  return processes_[static_cast<size_t>(process)]->folded.Get();
}

}  // namespace kpid::bench_legacy

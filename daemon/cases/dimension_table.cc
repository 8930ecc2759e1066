#include "daemon/cases/dimension_table.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "daemon/cases/stable_hash.h"
#include "daemon/common/state_codec.h"

namespace kpid::cases {
namespace {

// Separates values in a lookup key; not valid in any sane attribute value,
// and if it appears anyway the worst case is two combinations sharing an id.
constexpr char kSeparator = '\x1f';
constexpr absl::string_view kMagic = "KPDT";

}  // namespace

DimensionTable::DimensionTable(const model::Config& config, SeriesAdmission* admission)
    : names_(config.dimensions.names), admission_(admission), found_(names_.size()) {
  for (size_t p = 0; p < config.processes.size(); ++p) {
    process_ids_.push_back(config.processes[p].id);
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

DimensionTable::~DimensionTable() {
  if (admission_ == nullptr) return;
  // Every combination after __other__ was admitted or registered, under the
  // hash of its key (which its values give back).
  for (size_t p = 0; p < processes_.size(); ++p) {
    const Process& process = *processes_[p];
    const size_t size = process.size.load(std::memory_order_acquire);
    for (size_t id = other_id() + 1; id < size; ++id) {
      admission_->Release(static_cast<int>(p), StableHash64(KeyOf(process.values[id])));
    }
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

DimsId DimensionTable::Resolve(int process, ingest::Attributes attributes) {
  if (names_.empty()) return 0;
  Process& p = *processes_[static_cast<size_t>(process)];
  key_.clear();
  for (size_t i = 0; i < names_.size(); ++i) {
    if (i > 0) key_.push_back(kSeparator);
    found_[i] = ingest::FindAttribute(attributes, names_[i]);
    if (found_[i] != nullptr) key_.append(*found_[i]);
  }
  if (auto it = p.ids.find(key_); it != p.ids.end()) return it->second;
  if (p.size.load(std::memory_order_relaxed) >= p.capacity ||
      (admission_ != nullptr && !admission_->Admit(process, StableHash64(key_)))) {
    p.folded.Add();
    return other_id();
  }
  std::vector<std::string> values;
  values.reserve(names_.size());
  for (const std::string* value : found_) values.push_back(value != nullptr ? *value : "");
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

}  // namespace kpid::cases

namespace kpid::cases {

std::string DimensionTable::KeyOf(const std::vector<std::string>& values) const {
  std::string key;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) key.push_back(kSeparator);
    absl::StrAppend(&key, values[i]);
  }
  return key;
}

std::string DimensionTable::Serialize() const {
  StateEncoder e;
  e.Raw(kMagic);
  e.Varint(kStateVersion);
  e.Varint(names_.size());
  for (const std::string& name : names_) e.String(name);
  e.Varint(processes_.size());
  for (size_t p = 0; p < processes_.size(); ++p) {
    const Process& process = *processes_[p];
    e.String(process_ids_[p]);
    e.Varint(process.folded.Get());
    const size_t size = process.size.load(std::memory_order_acquire);
    e.Varint(size);
    for (size_t id = 0; id < size; ++id) {
      e.Varint(process.values[id].size());
      for (const std::string& value : process.values[id]) e.String(value);
    }
  }
  return e.Take();
}

absl::StatusOr<std::unique_ptr<DimensionTable>> DimensionTable::Restore(
    const model::Config& config, absl::string_view bytes, uint64_t* dropped,
    SeriesAdmission* admission) {
  auto corrupt = [](const StateDecoder& d) {
    return absl::DataLossError(absl::StrCat(
        "dimension table state: truncated or malformed (near byte ", d.position(), ")"));
  };
  StateDecoder d(bytes);
  if (!d.Raw(kMagic)) return absl::InvalidArgumentError("not kpid dimension table state");
  const uint64_t version = d.Varint();
  if (!d.ok()) return corrupt(d);
  if (version != kStateVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "dimension table state: format version ", version, "; this build reads ", kStateVersion));
  }
  auto table = std::make_unique<DimensionTable>(config, admission);
  const size_t name_count = d.Count();
  std::vector<std::string> old_names(name_count);
  for (std::string& name : old_names) name = d.String();
  // Where each configured name's value was in the serialized combinations.
  std::vector<int> source(table->names_.size(), -1);
  for (size_t i = 0; i < table->names_.size(); ++i) {
    for (size_t j = 0; j < old_names.size(); ++j) {
      if (old_names[j] == table->names_[i]) source[i] = static_cast<int>(j);
    }
  }
  uint64_t lost = 0;
  const size_t process_count = d.Count();
  for (size_t pi = 0; pi < process_count && d.ok(); ++pi) {
    const std::string id = d.String();
    const uint64_t folded = d.Varint();
    // Every combination takes at least its value count's byte.
    const size_t combinations = d.Count();
    if (!d.ok()) break;
    Process* p = nullptr;
    int process = -1;
    for (size_t i = 0; i < table->process_ids_.size(); ++i) {
      if (table->process_ids_[i] == id) {
        p = table->processes_[i].get();
        process = static_cast<int>(i);
      }
    }
    if (p == nullptr) {
      lost += combinations;
    } else {
      p->folded.Add(folded);
      if (combinations > p->capacity) {
        // Keep every DimsId the other state refers to.
        auto values = std::make_unique<std::vector<std::string>[]>(combinations);
        for (size_t i = 0; i < p->size.load(std::memory_order_relaxed); ++i) {
          values[i] = std::move(p->values[i]);
        }
        p->values = std::move(values);
        p->capacity = combinations;
      }
    }
    std::vector<std::string> old_values;
    for (size_t c = 0; c < combinations && d.ok(); ++c) {
      old_values.resize(d.Count());
      for (std::string& value : old_values) value = d.String();
      // Ids the constructor made (empty values, __other__) are the same.
      if (p == nullptr || !d.ok() || c < p->size.load(std::memory_order_relaxed)) continue;
      std::vector<std::string> values(table->names_.size());
      for (size_t i = 0; i < values.size(); ++i) {
        if (source[i] >= 0 && static_cast<size_t>(source[i]) < old_values.size()) {
          values[i] = old_values[static_cast<size_t>(source[i])];
        }
      }
      std::string key = table->KeyOf(values);
      if (admission != nullptr) admission->Register(process, StableHash64(key));
      table->Add(*p, std::move(key), std::move(values));
    }
  }
  if (!d.ok()) return corrupt(d);
  if (d.remaining() != 0) return absl::DataLossError("dimension table state: trailing bytes");
  if (dropped != nullptr) *dropped = lost;
  return table;
}

}  // namespace kpid::cases

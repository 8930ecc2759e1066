#include "daemon/common/yaml_reader.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/common/duration.h"

namespace kpid {

void Diagnostics::Error(const YAML::Mark& mark, absl::string_view message) {
  if (mark.is_null()) {
    Error(message);
    return;
  }
  errors_.push_back(
      absl::StrCat(filename_, ":", mark.line + 1, ":", mark.column + 1, ": ", message));
}

void Diagnostics::Error(absl::string_view message) {
  errors_.push_back(absl::StrCat(filename_, ": ", message));
}

absl::Status Diagnostics::ToStatus() const {
  if (errors_.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(errors_, "\n"));
}

std::optional<YAML::Node> LoadYaml(absl::string_view text, Diagnostics* diag) {
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    diag->Error(e.mark, e.msg);
    return std::nullopt;
  }
}

namespace {

bool IsScalar(const YAML::Node& node, absl::string_view what, absl::string_view expected,
              Diagnostics* diag) {
  if (node.IsScalar()) return true;
  diag->Error(node.Mark(), absl::StrCat(what, ": expected ", expected));
  return false;
}

}  // namespace

std::optional<std::string> ReadString(const YAML::Node& node, absl::string_view what,
                                      Diagnostics* diag) {
  if (!IsScalar(node, what, "a string", diag)) return std::nullopt;
  return node.Scalar();
}

std::optional<int64_t> ReadInt(const YAML::Node& node, absl::string_view what, Diagnostics* diag) {
  if (!IsScalar(node, what, "an integer", diag)) return std::nullopt;
  int64_t value = 0;
  if (!absl::SimpleAtoi(node.Scalar(), &value)) {
    diag->Error(node.Mark(),
                absl::StrCat(what, ": expected an integer, got \"", node.Scalar(), "\""));
    return std::nullopt;
  }
  return value;
}

std::optional<double> ReadDouble(const YAML::Node& node, absl::string_view what,
                                 Diagnostics* diag) {
  if (!IsScalar(node, what, "a number", diag)) return std::nullopt;
  double value = 0;
  if (!absl::SimpleAtod(node.Scalar(), &value) || !std::isfinite(value)) {
    diag->Error(node.Mark(),
                absl::StrCat(what, ": expected a finite number, got \"", node.Scalar(), "\""));
    return std::nullopt;
  }
  return value;
}

std::optional<bool> ReadBool(const YAML::Node& node, absl::string_view what, Diagnostics* diag) {
  if (!IsScalar(node, what, "true or false", diag)) return std::nullopt;
  const std::string lower = absl::AsciiStrToLower(node.Scalar());
  if (lower == "true") return true;
  if (lower == "false") return false;
  diag->Error(node.Mark(),
              absl::StrCat(what, ": expected true or false, got \"", node.Scalar(), "\""));
  return std::nullopt;
}

std::optional<absl::Duration> ReadDuration(const YAML::Node& node, absl::string_view what,
                                           Diagnostics* diag) {
  if (!IsScalar(node, what, "a duration such as 90s, 5m, 1h, 7d", diag)) return std::nullopt;
  absl::StatusOr<absl::Duration> d = ParsePromDuration(node.Scalar());
  if (!d.ok()) {
    diag->Error(node.Mark(), absl::StrCat(what, ": ", d.status().message()));
    return std::nullopt;
  }
  return *d;
}

std::vector<std::string> ReadStringList(const YAML::Node& node, absl::string_view what,
                                        Diagnostics* diag) {
  std::vector<std::string> out;
  if (!node.IsSequence()) {
    diag->Error(node.Mark(), absl::StrCat(what, ": expected a list"));
    return out;
  }
  for (size_t i = 0; i < node.size(); ++i) {
    if (auto s = ReadString(node[i], absl::StrCat(what, "[", i, "]"), diag)) {
      out.push_back(*std::move(s));
    }
  }
  return out;
}

MapReader::MapReader(const YAML::Node& node, std::string what, Diagnostics* diag)
    : node_(node), what_(std::move(what)), diag_(diag) {
  if (!node.IsDefined() || node.IsNull()) return;
  if (!node.IsMap()) {
    diag_->Error(node.Mark(),
                 absl::StrCat(what_.empty() ? "document" : what_, ": expected a mapping"));
    return;
  }
  valid_ = true;
}

MapReader::~MapReader() { Finish(); }

std::string MapReader::Path(absl::string_view key) const {
  return what_.empty() ? std::string(key) : absl::StrCat(what_, ".", key);
}

YAML::Node MapReader::Child(absl::string_view key) {
  known_.insert(std::string(key));
  if (!valid_) return YAML::Node(YAML::NodeType::Undefined);
  // Look the key up by iteration: operator[] on a const node is fine, but the
  // iteration also copes with non-string keys without throwing.
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    if (it->first.IsScalar() && it->first.Scalar() == key) return it->second;
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

YAML::Node MapReader::Required(absl::string_view key) {
  YAML::Node child = Child(key);
  if (valid_ && !child.IsDefined()) {
    diag_->Error(node_.Mark(), absl::StrCat("missing required key \"", Path(key), "\""));
  }
  return child;
}

std::string MapReader::String(absl::string_view key, absl::string_view fallback) {
  YAML::Node child = Child(key);
  if (!child.IsDefined()) return std::string(fallback);
  return ReadString(child, Path(key), diag_).value_or(std::string(fallback));
}

int64_t MapReader::Int(absl::string_view key, int64_t fallback, int64_t min, int64_t max) {
  YAML::Node child = Child(key);
  if (!child.IsDefined()) return fallback;
  std::optional<int64_t> v = ReadInt(child, Path(key), diag_);
  if (!v) return fallback;
  if (*v < min || *v > max) {
    diag_->Error(child.Mark(),
                 absl::StrCat(Path(key), ": ", *v, " is out of range [", min, ", ", max, "]"));
    return fallback;
  }
  return *v;
}

double MapReader::Double(absl::string_view key, double fallback, double min, double max) {
  YAML::Node child = Child(key);
  if (!child.IsDefined()) return fallback;
  std::optional<double> v = ReadDouble(child, Path(key), diag_);
  if (!v) return fallback;
  if (*v < min || *v > max) {
    diag_->Error(child.Mark(),
                 absl::StrCat(Path(key), ": ", *v, " is out of range [", min, ", ", max, "]"));
    return fallback;
  }
  return *v;
}

bool MapReader::Bool(absl::string_view key, bool fallback) {
  YAML::Node child = Child(key);
  if (!child.IsDefined()) return fallback;
  return ReadBool(child, Path(key), diag_).value_or(fallback);
}

absl::Duration MapReader::Duration(absl::string_view key, absl::Duration fallback) {
  YAML::Node child = Child(key);
  if (!child.IsDefined()) return fallback;
  return ReadDuration(child, Path(key), diag_).value_or(fallback);
}

std::vector<std::string> MapReader::StringList(absl::string_view key) {
  YAML::Node child = Child(key);
  if (!child.IsDefined()) return {};
  return ReadStringList(child, Path(key), diag_);
}

void MapReader::Finish() {
  if (finished_ || !valid_) {
    finished_ = true;
    return;
  }
  finished_ = true;
  std::vector<std::string> candidates(known_.begin(), known_.end());
  std::sort(candidates.begin(), candidates.end());
  absl::flat_hash_set<std::string> seen;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    // A copy: yaml-cpp's iterator hands out a temporary proxy, so a reference
    // to its member would dangle.
    const YAML::Node key = it->first;
    if (!key.IsScalar()) {
      diag_->Error(key.Mark(),
                   absl::StrCat(what_.empty() ? "document" : what_, ": keys must be strings"));
      continue;
    }
    if (!seen.insert(key.Scalar()).second) {
      diag_->Error(key.Mark(), absl::StrCat("duplicate key \"", Path(key.Scalar()), "\""));
      continue;
    }
    if (known_.contains(key.Scalar())) continue;
    std::string message = absl::StrCat("unknown key \"", Path(key.Scalar()), "\"");
    if (std::string hint = DidYouMean(key.Scalar(), candidates); !hint.empty()) {
      absl::StrAppend(&message, "; did you mean \"", hint, "\"?");
    }
    diag_->Error(key.Mark(), message);
  }
}

std::string DidYouMean(absl::string_view word, const std::vector<std::string>& candidates) {
  // Levenshtein distance, two rows.
  auto distance = [](absl::string_view a, absl::string_view b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        const size_t substitute =
            prev[j - 1] + (absl::ascii_tolower(a[i - 1]) == absl::ascii_tolower(b[j - 1]) ? 0 : 1);
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, substitute});
      }
      std::swap(prev, cur);
    }
    return prev[b.size()];
  };
  std::string best;
  size_t best_distance = std::max<size_t>(2, word.size() / 3) + 1;
  for (const std::string& candidate : candidates) {
    const size_t d = distance(word, candidate);
    // A candidate that shares nothing with the word is no hint ("xy" -> "id").
    if (d < best_distance && d < candidate.size()) {
      best_distance = d;
      best = candidate;
    }
  }
  return best;
}

}  // namespace kpid

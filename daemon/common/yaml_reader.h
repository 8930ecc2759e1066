// Strict reading of YAML documents into typed structs, with every problem
// reported as "file:line:col: message" (1-based, from yaml-cpp's marks).
//
//   Diagnostics diag("kpid.yaml");
//   absl::StatusOr<YAML::Node> root = LoadYaml(text, &diag);
//   MapReader kafka(root["kafka"], "kafka", &diag);
//   std::string topic = kafka.String("topic", "process-events");
//   kafka.Finish();  // reports unknown keys, with a did-you-mean
//   if (!diag.ok()) return diag.ToStatus();
//
// Readers never throw: yaml-cpp exceptions are caught here, at the edge.
// Not thread-safe; one Diagnostics per document being read.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "yaml-cpp/yaml.h"

namespace kpid {

// Collects located errors for one file.
class Diagnostics {
 public:
  explicit Diagnostics(std::string filename) : filename_(std::move(filename)) {}

  void Error(const YAML::Mark& mark, absl::string_view message);
  // For problems without a position (e.g. the file cannot be read).
  void Error(absl::string_view message);

  bool ok() const { return errors_.empty(); }
  const std::vector<std::string>& errors() const { return errors_; }
  const std::string& filename() const { return filename_; }
  // InvalidArgument with one error per line, or OK.
  absl::Status ToStatus() const;

 private:
  std::string filename_;
  std::vector<std::string> errors_;
};

// Parses `text`; a syntax error is recorded in `diag` and yields nullopt.
std::optional<YAML::Node> LoadYaml(absl::string_view text, Diagnostics* diag);

// Scalar conversions that record an error at the node and return nullopt.
std::optional<std::string> ReadString(const YAML::Node& node, absl::string_view what,
                                      Diagnostics* diag);
std::optional<int64_t> ReadInt(const YAML::Node& node, absl::string_view what, Diagnostics* diag);
std::optional<double> ReadDouble(const YAML::Node& node, absl::string_view what, Diagnostics* diag);
std::optional<bool> ReadBool(const YAML::Node& node, absl::string_view what, Diagnostics* diag);
std::optional<absl::Duration> ReadDuration(const YAML::Node& node, absl::string_view what,
                                           Diagnostics* diag);
// A sequence of strings; an entry that is not a string is reported and skipped.
std::vector<std::string> ReadStringList(const YAML::Node& node, absl::string_view what,
                                        Diagnostics* diag);

// Reads one YAML mapping. Every key asked for is marked as known; Finish()
// reports the keys nobody asked for, and duplicate keys.
class MapReader {
 public:
  // `node` may be undefined (the key was absent): then every getter returns
  // its default and Finish() reports nothing. `what` names the map in errors.
  MapReader(const YAML::Node& node, std::string what, Diagnostics* diag);
  ~MapReader();

  bool present() const { return valid_; }
  const YAML::Node& node() const { return node_; }
  YAML::Mark mark() const { return node_.Mark(); }

  // The raw child (undefined when absent); marks the key as known.
  YAML::Node Child(absl::string_view key);
  // Records "missing required key" when absent.
  YAML::Node Required(absl::string_view key);

  std::string String(absl::string_view key, absl::string_view fallback = "");
  int64_t Int(absl::string_view key, int64_t fallback, int64_t min, int64_t max);
  double Double(absl::string_view key, double fallback, double min, double max);
  bool Bool(absl::string_view key, bool fallback);
  absl::Duration Duration(absl::string_view key, absl::Duration fallback);
  std::vector<std::string> StringList(absl::string_view key);

  // Reports unknown and duplicate keys. Called by the destructor if not
  // called before.
  void Finish();

 private:
  std::string Path(absl::string_view key) const;

  YAML::Node node_;
  std::string what_;
  Diagnostics* diag_;
  bool valid_ = false;
  bool finished_ = false;
  absl::flat_hash_set<std::string> known_;
};

// The candidate closest to `word` by edit distance, if it is close enough to
// be a plausible typo; "" otherwise.
std::string DidYouMean(absl::string_view word, const std::vector<std::string>& candidates);

}  // namespace kpid

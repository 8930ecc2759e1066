// Structured logging in logfmt, one line per record on stderr:
//
//   ts=2026-11-27T13:00:00.123Z level=info msg="embedded broker up" bootstrap=127.0.0.1:39021
//
//   kpid::log::Info("embedded broker up", {{"bootstrap", address}});
//   kpid::log::SetMinLevel(kpid::log::Level::kDebug);
//
// Thread-safe: each record is formatted into one buffer and written with a
// single write(2), so lines from different threads never interleave. Not for
// the per-event path: bad events are counted in metrics, and only a sample is
// logged.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kpid::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

using Field = std::pair<absl::string_view, absl::string_view>;

void SetMinLevel(Level level);
absl::StatusOr<Level> ParseLevel(absl::string_view name);
bool Enabled(Level level);

void Write(Level level, absl::string_view msg, std::initializer_list<Field> fields = {});

inline void Debug(absl::string_view msg, std::initializer_list<Field> fields = {}) {
  Write(Level::kDebug, msg, fields);
}
inline void Info(absl::string_view msg, std::initializer_list<Field> fields = {}) {
  Write(Level::kInfo, msg, fields);
}
inline void Warn(absl::string_view msg, std::initializer_list<Field> fields = {}) {
  Write(Level::kWarn, msg, fields);
}
inline void Error(absl::string_view msg, std::initializer_list<Field> fields = {}) {
  Write(Level::kError, msg, fields);
}

}  // namespace kpid::log

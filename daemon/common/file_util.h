// Small file helpers with absl::Status errors.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kpid {

absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes to a temporary file beside `path`, fsyncs it and renames it over
// `path`, so readers see the old contents or the new, never a torn file.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

}  // namespace kpid

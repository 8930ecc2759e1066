// Early-return helpers for absl::Status, which Debian's Abseil (20220623)
// does not ship yet.
//
//   absl::StatusOr<Config> Load(const std::string& path) {
//     KPID_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
//     KPID_RETURN_IF_ERROR(Validate(text));
//     ...
//   }
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define KPID_RETURN_IF_ERROR(expr)                                  \
  do {                                                              \
    if (::absl::Status kpid_status_ = (expr); !kpid_status_.ok()) { \
      return kpid_status_;                                          \
    }                                                               \
  } while (false)

#define KPID_STATUS_CONCAT_INNER_(a, b) a##b
#define KPID_STATUS_CONCAT_(a, b) KPID_STATUS_CONCAT_INNER_(a, b)

#define KPID_ASSIGN_OR_RETURN(lhs, expr) \
  KPID_ASSIGN_OR_RETURN_IMPL_(KPID_STATUS_CONCAT_(kpid_statusor_, __LINE__), lhs, expr)

#define KPID_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                \
  if (!statusor.ok()) {                                  \
    return std::move(statusor).status();                 \
  }                                                      \
  lhs = *std::move(statusor)

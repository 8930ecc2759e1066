#include "daemon/common/duration.h"

#include <array>
#include <cstdint>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace kpid {
namespace {

struct Unit {
  absl::string_view name;
  int64_t millis;
};

// Longest unit first; "ms" sits before "m" so the longer spelling wins.
constexpr std::array<Unit, 7> kUnits = {{
    {"y", 365LL * 24 * 3600 * 1000},
    {"w", 7LL * 24 * 3600 * 1000},
    {"d", 24LL * 3600 * 1000},
    {"h", 3600LL * 1000},
    {"ms", 1},
    {"m", 60LL * 1000},
    {"s", 1000},
}};

// Order in which units must appear (y > w > d > h > m > s > ms).
int Rank(absl::string_view unit) {
  constexpr std::array<absl::string_view, 7> kOrder = {"y", "w", "d", "h", "m", "s", "ms"};
  for (size_t i = 0; i < kOrder.size(); ++i) {
    if (kOrder[i] == unit) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace

absl::StatusOr<absl::Duration> ParsePromDuration(absl::string_view text) {
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("invalid duration \"", text, "\": ", why,
                                                   " (expected e.g. 90s, 5m, 1h30m, 7d)"));
  };
  if (text.empty()) return invalid("empty");
  if (text == "0") return absl::ZeroDuration();

  int64_t total_ms = 0;
  int last_rank = -1;
  size_t i = 0;
  while (i < text.size()) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) {
      return invalid("expected a number");
    }
    int64_t value = 0;
    while (i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) {
      const int digit = text[i] - '0';
      if (value > (std::numeric_limits<int64_t>::max() - digit) / 10) return invalid("too large");
      value = value * 10 + digit;
      ++i;
    }
    const Unit* unit = nullptr;
    for (const Unit& u : kUnits) {
      if (text.substr(i, u.name.size()) == u.name) {
        unit = &u;
        break;
      }
    }
    if (unit == nullptr) return invalid("missing or unknown unit");
    i += unit->name.size();
    const int rank = Rank(unit->name);
    if (rank <= last_rank) return invalid("units must go from largest to smallest, each once");
    last_rank = rank;
    if (value > (std::numeric_limits<int64_t>::max() - total_ms) / unit->millis) {
      return invalid("too large");
    }
    total_ms += value * unit->millis;
  }
  return absl::Milliseconds(total_ms);
}

std::string FormatPromDuration(absl::Duration d) {
  int64_t ms = absl::ToInt64Milliseconds(d);
  if (ms <= 0) return "0s";
  std::string out;
  // Days are the largest unit written: "7d" and "14d" read better than
  // "1w" and "2w", and match how configs spell windows.
  constexpr std::array<Unit, 5> kFormatOrder = {{
      {"d", 24LL * 3600 * 1000},
      {"h", 3600LL * 1000},
      {"m", 60LL * 1000},
      {"s", 1000},
      {"ms", 1},
  }};
  for (const Unit& u : kFormatOrder) {
    if (ms >= u.millis) {
      absl::StrAppend(&out, ms / u.millis, u.name);
      ms %= u.millis;
    }
  }
  return out;
}

}  // namespace kpid

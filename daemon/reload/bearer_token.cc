#include "daemon/reload/bearer_token.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace kpid::reload {

bool BearerTokenMatches(absl::string_view authorization, absl::string_view expected) {
  constexpr absl::string_view kScheme = "bearer ";
  if (expected.empty() || authorization.size() < kScheme.size() ||
      !absl::EqualsIgnoreCase(authorization.substr(0, kScheme.size()), kScheme)) {
    return false;
  }
  const absl::string_view given = absl::StripLeadingAsciiWhitespace(authorization.substr(7));
  if (given.size() != expected.size()) return false;
  // volatile: the compiler may not turn this into an early-exit comparison.
  volatile unsigned char diff = 0;
  for (size_t i = 0; i < given.size(); ++i) {
    diff = diff | static_cast<unsigned char>(given[i] ^ expected[i]);
  }
  return diff == 0;
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot read http.reload_token_file"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string token(absl::StripAsciiWhitespace(text.str()));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": http.reload_token_file is empty"));
  }
  return token;
}

}  // namespace kpid::reload

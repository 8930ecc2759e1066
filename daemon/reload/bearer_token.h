// The `Authorization: Bearer <token>` check of POST /-/reload.
//
//   if (!BearerTokenMatches(request.get_header_value("Authorization"), token)) -> 401
//
// Constant time in the token's content: the comparison looks at every byte
// whatever the first difference, so response timing does not reveal how
// much of a guess was right (only whether its length was).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kpid::reload {

// True when `authorization` is "Bearer <token>" (scheme case-insensitive, as
// RFC 7235 says) and the token equals `expected`. An empty `expected` never
// matches: a configured but empty token must not open the door.
bool BearerTokenMatches(absl::string_view authorization, absl::string_view expected);

// The token in `path`: its content with surrounding whitespace (the usual
// trailing newline) trimmed; an error when unreadable or empty.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace kpid::reload

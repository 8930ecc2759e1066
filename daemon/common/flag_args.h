// Command-line spelling that absl flags do not accept by themselves.
//
//   std::vector<std::string> storage;
//   std::vector<char*> args = kpid::NormalizeFlagArgs(argc, argv, &storage);
//   absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
//
// - `--bootstrap-file` means `--bootstrap_file`: absl flags are spelled with
//   '_', the docs and most CLIs with '-'.
// - `--output -` means `--output=-`: absl would read the lone "-" as a typo.
// Nothing after a bare `--` is touched.
#pragma once

#include <string>
#include <vector>

namespace kpid {

// Returns argv rewritten; the pointers point into `storage`, which must
// outlive them.
std::vector<char*> NormalizeFlagArgs(int argc, char** argv, std::vector<std::string>* storage);

}  // namespace kpid

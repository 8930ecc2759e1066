#include "daemon/common/flag_args.h"

#include <algorithm>
#include <cstddef>

namespace kpid {

std::vector<char*> NormalizeFlagArgs(int argc, char** argv, std::vector<std::string>* storage) {
  storage->clear();
  storage->reserve(static_cast<size_t>(argc));
  bool flags_done = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (i > 0 && !flags_done && arg == "--") flags_done = true;
    if (i > 0 && !flags_done && arg.size() > 2 && arg[0] == '-') {
      const size_t dashes = arg[1] == '-' ? 2 : 1;
      const size_t end = std::min(arg.find('='), arg.size());
      for (size_t j = dashes; j < end; ++j) {
        if (arg[j] == '-') arg[j] = '_';
      }
    }
    storage->push_back(std::move(arg));
  }
  for (size_t i = 1; i + 1 < storage->size(); ++i) {
    std::string& arg = (*storage)[i];
    if (arg == "--") break;
    if ((*storage)[i + 1] == "-" && arg.size() > 1 && arg[0] == '-' &&
        arg.find('=') == std::string::npos) {
      arg += "=-";
      storage->erase(storage->begin() + static_cast<std::ptrdiff_t>(i) + 1);
    }
  }
  std::vector<char*> out;
  for (std::string& s : *storage) out.push_back(s.data());
  return out;
}

}  // namespace kpid

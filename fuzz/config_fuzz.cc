// Fuzzes the config parser: any text must give a Config or located errors,
// never a crash, a hang or an escaped yaml-cpp exception.
#include <cstddef>
#include <cstdint>

#include "daemon/model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<kpid::model::Config> config = kpid::model::ParseConfig(text, "fuzz.yaml");
  if (config.ok() && config->processes.empty()) __builtin_trap();  // processes is required
  return 0;
}

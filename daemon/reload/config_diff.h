// Which configuration changes a running kpid can take without a restart.
//
//   std::vector<std::string> keys = RestartRequiredChanges(running, loaded);
//   if (!keys.empty()) ... refuse: "processes[0].stages changed: restart kpid to apply ..."
//
// Reloadable now: `rules` (and the rule files), `alertmanagers` and
// `alerting` (the notifier is rebuilt), `http.reload_token_file`, and the
// kpi-loadgen knobs (`simulate`), which the daemon ignores. Everything else
// shapes the engine (Kafka, processes, stages, windows, dimensions, clock,
// horizons, listeners); applying it live would need the workers' state
// migrated, so it needs a restart. So do the listeners' `tls` sections:
// the listeners would have to be rebuilt.
//
// The verdict is structural: both configs, minus their reloadable keys, are
// compared with Config's defaulted operator==. So a key added to Config later
// is restart-only until someone makes it reloadable here; the named keys only
// make the message precise.
#pragma once

#include <string>
#include <vector>

#include "daemon/model/config.h"

namespace kpid::reload {

// The keys whose change needs a restart, in config order ("kafka.topic",
// "processes[0].stages", ...); empty when `next` can be applied live.
std::vector<std::string> RestartRequiredChanges(const model::Config& running,
                                                const model::Config& next);

}  // namespace kpid::reload

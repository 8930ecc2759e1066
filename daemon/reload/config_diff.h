// Which configuration changes a running kpid can take without a restart.
//
//   std::vector<std::string> keys = RestartRequiredChanges(running, loaded);
//   if (!keys.empty()) ... refuse: "windows changed: restart kpid to apply"
//   if (!EngineReshapeChanges(running, loaded).empty()) ... reshape the engines
//
// Reloadable: `rules` (and the rule files), `alertmanagers` and
// `alerting` (the notifier is rebuilt), `http.reload_token_file`, the
// kpi-loadgen knobs (`simulate`), which the daemon ignores, and what
// EngineReshapeChanges names: `processes` (added, removed, reordered;
// their stages added, removed, reordered, SLAs; kpi_tree) and `dimensions`
// (names added, removed, reordered; max_series_per_process). Those reshape
// the engines: every partition's state moves into engines for the new
// config, matched by id (engine::EngineRegistry::Reshape).
//
// Restart only, named by key: kafka.* (the consumer, the group and the
// state files' names), the listeners and their `tls` (the listeners would
// have to be rebuilt), `state_dir`, `clock` (the engines' clocks and the
// readers' window end), `windows` and `retention` (the aggregator's bucket
// layout: a window added live would read buckets filled before it existed
// as if complete, and rules refer to windows by position), the horizons
// and bounds (case_ttl, dedup_horizon, max_*: the trackers' timers and
// per-partition shares) and `checkpoint_interval`.
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
// "windows", ...); empty when `next` can be applied live.
std::vector<std::string> RestartRequiredChanges(const model::Config& running,
                                                const model::Config& next);

// The engine-shaping keys that changed ("dimensions.names", "processes"):
// applied live by reshaping the engines; empty when their shape stays.
std::vector<std::string> EngineReshapeChanges(const model::Config& running,
                                              const model::Config& next);

}  // namespace kpid::reload

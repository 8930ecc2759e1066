// The pre-optimization tracker (legacy_case_tracker.h) interned dimensions
// with the same DimensionTable the daemon still uses: no frozen copy needed.
#pragma once

#include "daemon/cases/dimension_table.h"

namespace kpid::bench_legacy {

using cases::DimsId;
using DimensionTable = cases::DimensionTable;

}  // namespace kpid::bench_legacy

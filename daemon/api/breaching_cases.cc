#include "daemon/api/breaching_cases.h"

#include <utility>

namespace kpid::api {

PublishedBreachingCases::PublishedBreachingCases(aggregate::ShardSource engines)
    : engines_(std::move(engines)) {}

std::vector<BreachingCaseRecord> PublishedBreachingCases::Breaching() const {
  std::shared_ptr<const model::Config> config;
  return Breaching(&config);
}

std::vector<BreachingCaseRecord> PublishedBreachingCases::Breaching(
    std::shared_ptr<const model::Config>* config) const {
  std::vector<BreachingCaseRecord> out;
  const aggregate::ShardSet set = engines_();
  *config = set.config;
  for (size_t e = 0; e < set.open_cases.size() && e < set.tables.size(); ++e) {
    if (set.open_cases[e] == nullptr) continue;
    for (const cases::BreachingCase& c : set.open_cases[e]->breaching) {
      out.push_back({c.case_id, c.process, c.stage, c.entered_at, c.deadline,
                     set.tables[e]->Values(c.process, c.dims)});
    }
  }
  return out;
}

}  // namespace kpid::api

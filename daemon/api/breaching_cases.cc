#include "daemon/api/breaching_cases.h"

#include <utility>

namespace kpid::api {

PublishedBreachingCases::PublishedBreachingCases(
    ViewSource views, std::vector<const cases::DimensionTable*> dimensions)
    : views_(std::move(views)), dimensions_(std::move(dimensions)) {}

std::vector<BreachingCaseRecord> PublishedBreachingCases::Breaching() const {
  std::vector<BreachingCaseRecord> out;
  const std::vector<std::shared_ptr<const cases::OpenCasesView>> views = views_();
  for (size_t w = 0; w < views.size() && w < dimensions_.size(); ++w) {
    if (views[w] == nullptr) continue;
    for (const cases::BreachingCase& c : views[w]->breaching) {
      out.push_back({c.case_id, c.process, c.stage, c.entered_at, c.deadline,
                     dimensions_[w]->Values(c.process, c.dims)});
    }
  }
  return out;
}

}  // namespace kpid::api

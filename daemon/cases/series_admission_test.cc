#include "daemon/cases/series_admission.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace kpid::cases {
namespace {

model::Config TwoProcesses(int limit) {
  return *model::ParseConfig(
      absl::StrCat("dimensions: {names: [region], max_series_per_process: ", limit,
                   "}\nprocesses:\n  - {id: a, stages: [{id: s, sla: 1h}]}\n"
                   "  - {id: b, stages: [{id: s, sla: 1h}]}\n"),
      "t.yaml");
}

TEST(SeriesAdmission, AdmitsUpToTheLimitPerProcessAndKeepsVerdicts) {
  SeriesAdmission admission(TwoProcesses(2));
  EXPECT_EQ(admission.limit(), 2);
  EXPECT_TRUE(admission.Admit(0, 11));
  EXPECT_TRUE(admission.Admit(0, 11));  // the same combination: no second unit
  EXPECT_TRUE(admission.Admit(0, 22));
  EXPECT_EQ(admission.Admitted(0), 2u);
  // Two admitted = the limit: a third is refused, the first two stay admitted.
  EXPECT_FALSE(admission.Admit(0, 33));
  EXPECT_FALSE(admission.Admit(0, 33));
  EXPECT_TRUE(admission.Admit(0, 22));
  EXPECT_EQ(admission.Admitted(0), 2u);
  // Process b has its own table.
  EXPECT_TRUE(admission.Admit(1, 33));
  EXPECT_EQ(admission.Admitted(1), 1u);
}

TEST(SeriesAdmission, RegisterAdmitsWhateverTheCount) {
  SeriesAdmission admission(TwoProcesses(1));
  EXPECT_TRUE(admission.Admit(0, 4));
  admission.Register(0, 8);  // restored: admitted beyond the limit of 1
  admission.Register(0, 4);  // known: no second unit
  EXPECT_EQ(admission.Admitted(0), 2u);
  EXPECT_TRUE(admission.Admit(0, 8));
  EXPECT_FALSE(admission.Admit(0, 12));
}

TEST(SeriesAdmission, HashesEqualBeyondTheStateBitsShareAVerdict) {
  // The two low bits of a slot are its state: 4 and 5 are one combination,
  // and so are 0 and 4 (a zero base is made 4, empty being 0).
  SeriesAdmission admission(TwoProcesses(2));
  EXPECT_TRUE(admission.Admit(0, 0));
  EXPECT_TRUE(admission.Admit(0, 4));
  EXPECT_TRUE(admission.Admit(0, 5));
  EXPECT_EQ(admission.Admitted(0), 1u);
  EXPECT_TRUE(admission.Admit(0, 8));  // 2 of 2
  EXPECT_FALSE(admission.Admit(0, 12));
}

}  // namespace
}  // namespace kpid::cases

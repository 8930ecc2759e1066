#include "tools/kpictl/render.h"

#include "gtest/gtest.h"
#include "tools/kpictl/table.h"

namespace kpid::kpictl {
namespace {

TEST(FormatTest, Values) {
  EXPECT_EQ(FormatValue(2.0 / 3, ValueKind::kRatio), "66.7%");
  EXPECT_EQ(FormatValue(1234567.891, ValueKind::kMoney), "1,234,567.89");
  EXPECT_EQ(FormatValue(-999.5, ValueKind::kMoney), "-999.50");
  EXPECT_EQ(FormatValue(1204, ValueKind::kCount), "1,204");
  EXPECT_EQ(FormatValue(8.25, ValueKind::kScore), "8.25");
  EXPECT_EQ(FormatValue(absl::nullopt, ValueKind::kRatio), "n/a");
}

TEST(FormatTest, Durations) {
  EXPECT_EQ(FormatDuration(0.5), "0.5s");
  EXPECT_EQ(FormatDuration(40), "40s");
  EXPECT_EQ(FormatDuration(1500), "25m");
  EXPECT_EQ(FormatDuration(5400), "1h 30m");
  EXPECT_EQ(FormatDuration(90000), "1d 1h");     // 25h
  EXPECT_EQ(FormatDuration(86400 + 300), "1d");  // minutes dropped beside days
}

TEST(FormatTest, Deltas) {
  EXPECT_EQ(FormatDelta(Compare(0.5, 0.6, 0.1), ValueKind::kRatio), "-10.0 pp");
  EXPECT_EQ(FormatDelta(Compare(12, 10, 0.1), ValueKind::kCount), "+2");
  EXPECT_EQ(FormatDelta(Compare(5400, 1800, 0.1), ValueKind::kDuration), "+1h");
  EXPECT_EQ(FormatDelta(Compare(10, 10, 0.1), ValueKind::kMoney), "0.00");
  EXPECT_EQ(FormatDelta(Compare(absl::nullopt, 10, 0.1), ValueKind::kMoney), "");
  EXPECT_EQ(FormatRelative(Compare(12, 10, 0.1)), "+20.0%");
  EXPECT_EQ(FormatRelative(Compare(9, 10, 0.1)), "-10.0%");
  EXPECT_EQ(FormatRelative(Compare(3, 0, 0.1)), "from 0");
  EXPECT_EQ(FormatRelative(Compare(0, 0, 0.1)), "");
}

Table Sample() {
  return Table{{"Name", "Value"}, {false, true}, {{"a|b", "1"}, {"long name", "1,000"}}};
}

TEST(TableTest, TextAlignsColumns) {
  EXPECT_EQ(RenderTable(Sample(), Format::kTable),
            "Name       Value\n"
            "---------  -----\n"
            "a|b            1\n"
            "long name  1,000\n");
}

TEST(TableTest, MarkdownEscapesPipesAndAlignsNumbersRight) {
  EXPECT_EQ(RenderTable(Sample(), Format::kMarkdown),
            "| Name | Value |\n"
            "|---|---:|\n"
            "| a\\|b | 1 |\n"
            "| long name | 1,000 |\n");
}

TEST(TableTest, CsvQuotesWhatNeedsIt) {
  Table t{{"k", "v"}, {}, {{"a,b", "say \"hi\""}, {"plain", ""}}};
  EXPECT_EQ(RenderTable(t, Format::kCsv), "k,v\r\n\"a,b\",\"say \"\"hi\"\"\"\r\nplain,\r\n");
}

TEST(TableTest, DocumentsInMarkdown) {
  Document d{"Title", {"intro"}, {{"Section", {"- note"}, {Sample()}}}};
  EXPECT_EQ(RenderDocument(d, Format::kMarkdown),
            "# Title\n\nintro\n\n## Section\n\n- note\n\n"
            "| Name | Value |\n|---|---:|\n| a\\|b | 1 |\n| long name | 1,000 |\n");
}

TEST(TableTest, ParseFormat) {
  EXPECT_EQ(*ParseFormat("md"), Format::kMarkdown);
  EXPECT_EQ(ParseFormat("xml").status().message(),
            "unknown format \"xml\" (table, markdown, csv, json)");
}

TEST(JsonTest, ProtobufMappingKeepsZerosAndLeavesAbsentRatiosOut) {
  v1::StageWindow s;
  s.set_stage("lead");
  s.set_rework_ratio(0);  // present and zero
  const std::string json = ToJson(s);
  EXPECT_NE(json.find("\"exited\": \"0\""), std::string::npos) << json;  // uint64: a string
  EXPECT_NE(json.find("\"reworkRatio\": 0"), std::string::npos) << json;
  EXPECT_EQ(json.find("conversion"), std::string::npos) << json;
}

}  // namespace
}  // namespace kpid::kpictl

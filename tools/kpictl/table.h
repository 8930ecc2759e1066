// Output formats of kpictl: a readable text table (default), markdown that
// pastes cleanly into a review doc, and CSV (RFC 4180). JSON is not here:
// kpictl prints messages with Protobuf's JSON mapping (ToJson).
//
//   Table t{{"KPI", "Value"}, {false, true}};
//   t.rows.push_back({"revenue", "4,000.00"});
//   std::cout << RenderTable(t, Format::kMarkdown);
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace kpid::kpictl {

enum class Format { kTable, kMarkdown, kCsv, kJson };

// "table", "markdown" (or "md"), "csv", "json".
absl::StatusOr<Format> ParseFormat(absl::string_view name);

struct Table {
  std::vector<std::string> columns;
  std::vector<bool> right_aligned;  // per column; missing: left
  std::vector<std::vector<std::string>> rows;
};

// A titled document of sections, each with lines of text (notes, bullets)
// and an optional table: what table and markdown render; CSV takes tables.
struct Section {
  std::string heading;
  std::vector<std::string> lines;
  std::vector<Table> tables;
};
struct Document {
  std::string title;
  std::vector<std::string> lines;
  std::vector<Section> sections;
};

// kTable, kMarkdown or kCsv; kJson renders as kTable.
std::string RenderTable(const Table& table, Format format);
// kTable or kMarkdown (anything else renders as kTable).
std::string RenderDocument(const Document& document, Format format);

// Protobuf's canonical JSON mapping, indented, with fields at their
// default values printed (unset optional fields stay out), newline-terminated.
std::string ToJson(const google::protobuf::Message& message);

}  // namespace kpid::kpictl

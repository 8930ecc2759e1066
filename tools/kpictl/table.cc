#include "tools/kpictl/table.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "google/protobuf/util/json_util.h"

namespace kpid::kpictl {
namespace {

// Columns on a terminal: UTF-8 code points (every character kpictl prints
// is one column wide).
size_t DisplayWidth(absl::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

std::string Pad(absl::string_view s, size_t width, bool right) {
  const std::string fill(width - std::min(width, DisplayWidth(s)), ' ');
  return right ? absl::StrCat(fill, s) : absl::StrCat(s, fill);
}

bool RightAligned(const Table& t, size_t column) {
  return column < t.right_aligned.size() && t.right_aligned[column];
}

std::string Text(const Table& t) {
  std::vector<size_t> widths(t.columns.size(), 0);
  for (size_t c = 0; c < t.columns.size(); ++c) widths[c] = DisplayWidth(t.columns[c]);
  for (const auto& row : t.rows) {
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c) {
      widths[c] = std::max(widths[c], DisplayWidth(row[c]));
    }
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::vector<std::string> padded;
    for (size_t c = 0; c < widths.size(); ++c) {
      padded.push_back(Pad(c < cells.size() ? cells[c] : "", widths[c], RightAligned(t, c)));
    }
    std::string s = absl::StrJoin(padded, "  ");
    s.erase(s.find_last_not_of(' ') + 1);
    return absl::StrCat(s, "\n");
  };
  std::string out = line(t.columns);
  std::vector<std::string> rules;
  for (size_t w : widths) rules.push_back(std::string(w, '-'));
  absl::StrAppend(&out, line(rules));
  for (const auto& row : t.rows) absl::StrAppend(&out, line(row));
  return out;
}

std::string MarkdownCell(absl::string_view s) {
  return absl::StrReplaceAll(s, {{"|", "\\|"}, {"\n", " "}});
}

std::string Markdown(const Table& t) {
  auto line = [](const std::vector<std::string>& cells, size_t n) {
    std::vector<std::string> escaped;
    for (size_t c = 0; c < n; ++c)
      escaped.push_back(MarkdownCell(c < cells.size() ? cells[c] : ""));
    return absl::StrCat("| ", absl::StrJoin(escaped, " | "), " |\n");
  };
  const size_t n = t.columns.size();
  std::string out = line(t.columns, n);
  std::vector<std::string> rules;
  for (size_t c = 0; c < n; ++c) rules.push_back(RightAligned(t, c) ? "---:" : "---");
  absl::StrAppend(&out, "|", absl::StrJoin(rules, "|"), "|\n");
  for (const auto& row : t.rows) absl::StrAppend(&out, line(row, n));
  return out;
}

std::string CsvField(absl::string_view s) {
  if (s.find_first_of(",\"\r\n") == absl::string_view::npos) return std::string(s);
  return absl::StrCat("\"", absl::StrReplaceAll(s, {{"\"", "\"\""}}), "\"");
}

std::string Csv(const Table& t) {
  auto line = [](const std::vector<std::string>& cells) {
    std::vector<std::string> fields;
    for (const std::string& c : cells) fields.push_back(CsvField(c));
    return absl::StrCat(absl::StrJoin(fields, ","), "\r\n");
  };
  std::string out = line(t.columns);
  for (const auto& row : t.rows) absl::StrAppend(&out, line(row));
  return out;
}

}  // namespace

absl::StatusOr<Format> ParseFormat(absl::string_view name) {
  if (name == "table") return Format::kTable;
  if (name == "markdown" || name == "md") return Format::kMarkdown;
  if (name == "csv") return Format::kCsv;
  if (name == "json") return Format::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown format \"", name, "\" (table, markdown, csv, json)"));
}

std::string RenderTable(const Table& table, Format format) {
  switch (format) {
    case Format::kMarkdown:
      return Markdown(table);
    case Format::kCsv:
      return Csv(table);
    default:
      return Text(table);
  }
}

std::string RenderDocument(const Document& doc, Format format) {
  const bool md = format == Format::kMarkdown;
  std::string out;
  auto heading = [&](const std::string& text, char underline, absl::string_view hashes) {
    if (md) {
      absl::StrAppend(&out, hashes, " ", text, "\n\n");
    } else {
      absl::StrAppend(&out, text, "\n", std::string(DisplayWidth(text), underline), "\n\n");
    }
  };
  auto lines = [&](const std::vector<std::string>& ls) {
    if (ls.empty()) return;
    for (const std::string& l : ls) absl::StrAppend(&out, l, "\n");
    absl::StrAppend(&out, "\n");
  };
  heading(doc.title, '=', "#");
  lines(doc.lines);
  for (const Section& s : doc.sections) {
    heading(s.heading, '-', "##");
    lines(s.lines);
    for (const Table& t : s.tables) absl::StrAppend(&out, RenderTable(t, format), "\n");
  }
  // One trailing newline, not a blank line.
  while (absl::EndsWith(out, "\n\n")) out.pop_back();
  return out;
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  std::string json;
  // Fails only for messages with unresolvable Any fields; kpictl prints none.
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!absl::EndsWith(json, "\n")) json.push_back('\n');
  return json;
}

}  // namespace kpid::kpictl

#include "daemon/common/yaml_reader.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kpid {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Every test reads "f.yaml"; marks are 1-based "line:col" in the text shown.
class YamlReaderTest : public ::testing::Test {
 protected:
  YAML::Node Parse(const char* text) {
    std::optional<YAML::Node> node = LoadYaml(text, &diag_);
    EXPECT_TRUE(node.has_value()) << text;
    return node.value_or(YAML::Node());
  }
  const std::vector<std::string>& errors() const { return diag_.errors(); }

  Diagnostics diag_{"f.yaml"};
};

TEST_F(YamlReaderTest, DiagnosticsFormatsOneBasedMarks) {
  YAML::Mark mark;
  mark.line = 2;
  mark.column = 4;
  diag_.Error(mark, "boom");
  diag_.Error(YAML::Mark::null_mark(), "no position");
  diag_.Error("cannot read");
  EXPECT_FALSE(diag_.ok());
  EXPECT_EQ(diag_.filename(), "f.yaml");
  EXPECT_THAT(errors(),
              ElementsAre("f.yaml:3:5: boom", "f.yaml: no position", "f.yaml: cannot read"));
  absl::Status status = diag_.ToStatus();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "f.yaml:3:5: boom\nf.yaml: no position\nf.yaml: cannot read");
}

TEST_F(YamlReaderTest, DiagnosticsOkWhenEmpty) {
  EXPECT_TRUE(diag_.ok());
  EXPECT_TRUE(diag_.ToStatus().ok());
}

TEST_F(YamlReaderTest, LoadYamlParses) {
  YAML::Node root = Parse("a: 1\nb: [x, y]\n");
  EXPECT_TRUE(root.IsMap());
  EXPECT_TRUE(diag_.ok());
}

TEST_F(YamlReaderTest, LoadYamlEmptyIsNull) {
  YAML::Node root = Parse("");
  EXPECT_TRUE(root.IsNull());
  root = Parse("# only a comment\n");
  EXPECT_TRUE(root.IsNull());
  EXPECT_TRUE(diag_.ok());
}

TEST_F(YamlReaderTest, LoadYamlSyntaxErrors) {
  // "a: b: c": the second ':' is at column 5.
  EXPECT_FALSE(LoadYaml("a: b: c\n", &diag_).has_value());
  // The unclosed '[' is noticed at the end of input: line 2, column 1.
  EXPECT_FALSE(LoadYaml("a: [1, 2\n", &diag_).has_value());
  // An alias to an anchor never defined: at the '*', column 4.
  EXPECT_FALSE(LoadYaml("a: *nope\n", &diag_).has_value());
  EXPECT_THAT(errors(), ElementsAre("f.yaml:1:5: illegal map value",
                                    "f.yaml:2:1: end of sequence flow not found",
                                    "f.yaml:1:4: the referenced anchor is not defined"));
}

TEST_F(YamlReaderTest, ReadString) {
  YAML::Node root = Parse("s: hello\nn: 42\nl: [a]\nz: ~\n");
  EXPECT_EQ(ReadString(root["s"], "s", &diag_), "hello");
  EXPECT_EQ(ReadString(root["n"], "n", &diag_), "42");  // any scalar is a string
  EXPECT_EQ(ReadString(root["l"], "l", &diag_), std::nullopt);
  EXPECT_EQ(ReadString(root["z"], "z", &diag_), std::nullopt);
  EXPECT_THAT(errors(),
              ElementsAre("f.yaml:3:4: l: expected a string", "f.yaml:4:4: z: expected a string"));
}

TEST_F(YamlReaderTest, ReadInt) {
  YAML::Node root = Parse(
      "a: 12\n"                      // 1
      "b: -7\n"                      // 2
      "c: 12x\n"                     // 3
      "d: 1.5\n"                     // 4
      "e: {x: 1}\n"                  // 5
      "f: 99999999999999999999\n");  // 6
  EXPECT_EQ(ReadInt(root["a"], "a", &diag_), 12);
  EXPECT_EQ(ReadInt(root["b"], "b", &diag_), -7);
  EXPECT_EQ(ReadInt(root["c"], "c", &diag_), std::nullopt);
  EXPECT_EQ(ReadInt(root["d"], "d", &diag_), std::nullopt);
  EXPECT_EQ(ReadInt(root["e"], "e", &diag_), std::nullopt);
  EXPECT_EQ(ReadInt(root["f"], "f", &diag_), std::nullopt);
  EXPECT_THAT(errors(), ElementsAre("f.yaml:3:4: c: expected an integer, got \"12x\"",
                                    "f.yaml:4:4: d: expected an integer, got \"1.5\"",
                                    "f.yaml:5:4: e: expected an integer",
                                    "f.yaml:6:4: f: expected an integer, got "
                                    "\"99999999999999999999\""));
}

TEST_F(YamlReaderTest, ReadDouble) {
  YAML::Node root = Parse(
      "a: 0.25\n"   // 1
      "b: 3\n"      // 2
      "c: nan\n"    // 3
      "d: inf\n"    // 4
      "e: lots\n"   // 5
      "f: [1]\n");  // 6
  EXPECT_EQ(ReadDouble(root["a"], "a", &diag_), 0.25);
  EXPECT_EQ(ReadDouble(root["b"], "b", &diag_), 3.0);
  EXPECT_EQ(ReadDouble(root["c"], "c", &diag_), std::nullopt);
  EXPECT_EQ(ReadDouble(root["d"], "d", &diag_), std::nullopt);
  EXPECT_EQ(ReadDouble(root["e"], "e", &diag_), std::nullopt);
  EXPECT_EQ(ReadDouble(root["f"], "f", &diag_), std::nullopt);
  EXPECT_THAT(errors(), ElementsAre("f.yaml:3:4: c: expected a finite number, got \"nan\"",
                                    "f.yaml:4:4: d: expected a finite number, got \"inf\"",
                                    "f.yaml:5:4: e: expected a finite number, got \"lots\"",
                                    "f.yaml:6:4: f: expected a number"));
}

TEST_F(YamlReaderTest, ReadBool) {
  YAML::Node root = Parse("a: true\nb: False\nc: yes\n");
  EXPECT_EQ(ReadBool(root["a"], "a", &diag_), true);
  EXPECT_EQ(ReadBool(root["b"], "b", &diag_), false);
  EXPECT_EQ(ReadBool(root["c"], "c", &diag_), std::nullopt);
  EXPECT_THAT(errors(), ElementsAre("f.yaml:3:4: c: expected true or false, got \"yes\""));
}

TEST_F(YamlReaderTest, ReadDuration) {
  YAML::Node root = Parse(
      "a: 1h30m\n"      // 1
      "b: 5 minutes\n"  // 2
      "c: -5m\n"        // 3
      "d: {m: 5}\n");   // 4
  EXPECT_EQ(ReadDuration(root["a"], "a", &diag_), absl::Minutes(90));
  EXPECT_EQ(ReadDuration(root["b"], "b", &diag_), std::nullopt);
  EXPECT_EQ(ReadDuration(root["c"], "c", &diag_), std::nullopt);
  EXPECT_EQ(ReadDuration(root["d"], "d", &diag_), std::nullopt);
  EXPECT_THAT(errors(),
              ElementsAre("f.yaml:2:4: b: invalid duration \"5 minutes\": missing or unknown unit "
                          "(expected e.g. 90s, 5m, 1h30m, 7d)",
                          "f.yaml:3:4: c: invalid duration \"-5m\": expected a number (expected "
                          "e.g. 90s, 5m, 1h30m, 7d)",
                          "f.yaml:4:4: d: expected a duration such as 90s, 5m, 1h, 7d"));
}

TEST_F(YamlReaderTest, ReadStringListSkipsAndReportsNonStrings) {
  // "l: [a, [b], c]": the inner '[' is at column 8.
  YAML::Node root = Parse("l: [a, [b], c]\nm: a\n");
  EXPECT_THAT(ReadStringList(root["l"], "l", &diag_), ElementsAre("a", "c"));
  EXPECT_THAT(ReadStringList(root["m"], "m", &diag_), IsEmpty());
  EXPECT_THAT(errors(),
              ElementsAre("f.yaml:1:8: l[1]: expected a string", "f.yaml:2:4: m: expected a list"));
}

TEST_F(YamlReaderTest, MapReaderGettersAndDefaults) {
  YAML::Node root = Parse(
      "name: kpid\n"      // 1
      "count: 7\n"        // 2
      "ratio: 0.5\n"      // 3
      "on: true\n"        // 4
      "every: 90s\n"      // 5
      "tags: [x, y]\n");  // 6
  MapReader r(root, "m", &diag_);
  EXPECT_TRUE(r.present());
  EXPECT_EQ(r.String("name"), "kpid");
  EXPECT_EQ(r.Int("count", 1, 0, 10), 7);
  EXPECT_EQ(r.Double("ratio", 0, 0, 1), 0.5);
  EXPECT_EQ(r.Bool("on", false), true);
  EXPECT_EQ(r.Duration("every", absl::ZeroDuration()), absl::Seconds(90));
  EXPECT_THAT(r.StringList("tags"), ElementsAre("x", "y"));
  // Absent keys: fallbacks.
  EXPECT_EQ(r.String("missing", "dflt"), "dflt");
  EXPECT_EQ(r.Int("missing", 3, 0, 10), 3);
  EXPECT_EQ(r.Double("missing", 0.1, 0, 1), 0.1);
  EXPECT_EQ(r.Bool("missing", true), true);
  EXPECT_EQ(r.Duration("missing", absl::Hours(1)), absl::Hours(1));
  EXPECT_THAT(r.StringList("missing"), IsEmpty());
  EXPECT_FALSE(r.Child("missing").IsDefined());
  r.Finish();
  EXPECT_THAT(errors(), IsEmpty());
}

TEST_F(YamlReaderTest, MapReaderBadValuesFallBack) {
  YAML::Node root = Parse(
      "count: 11\n"    // 1
      "low: -1\n"      // 2
      "ratio: 1.5\n"   // 3
      "on: maybe\n"    // 4
      "every: soon\n"  // 5
      "name: [a]\n");  // 6
  MapReader r(root, "m", &diag_);
  EXPECT_EQ(r.Int("count", 4, 0, 10), 4);
  EXPECT_EQ(r.Int("low", 4, 0, 10), 4);
  EXPECT_EQ(r.Double("ratio", 0.5, 0, 1), 0.5);
  EXPECT_EQ(r.Bool("on", true), true);
  EXPECT_EQ(r.Duration("every", absl::Minutes(1)), absl::Minutes(1));
  EXPECT_EQ(r.String("name", "x"), "x");
  r.Finish();
  EXPECT_THAT(
      errors(),
      ElementsAre("f.yaml:1:8: m.count: 11 is out of range [0, 10]",
                  "f.yaml:2:6: m.low: -1 is out of range [0, 10]",
                  "f.yaml:3:8: m.ratio: 1.5 is out of range [0, 1]",
                  "f.yaml:4:5: m.on: expected true or false, got \"maybe\"",
                  "f.yaml:5:8: m.every: invalid duration \"soon\": expected a number (expected "
                  "e.g. 90s, 5m, 1h30m, 7d)",
                  "f.yaml:6:7: m.name: expected a string"));
}

TEST_F(YamlReaderTest, MapReaderUnknownKeysWithDidYouMean) {
  YAML::Node root = Parse(
      "topic: t\n"     // 1
      "grup_id: g\n"   // 2
      "zzzzzz: 1\n");  // 3
  {
    MapReader r(root, "kafka", &diag_);
    r.String("topic");
    r.String("group_id");
  }  // the destructor finishes
  EXPECT_THAT(errors(),
              ElementsAre("f.yaml:2:1: unknown key \"kafka.grup_id\"; did you mean \"group_id\"?",
                          "f.yaml:3:1: unknown key \"kafka.zzzzzz\""));
}

TEST_F(YamlReaderTest, MapReaderTopLevelPathHasNoPrefix) {
  YAML::Node root = Parse("windowz: [5m]\n");
  MapReader r(root, "", &diag_);
  r.Child("windows");
  r.Finish();
  EXPECT_THAT(errors(),
              ElementsAre("f.yaml:1:1: unknown key \"windowz\"; did you mean \"windows\"?"));
}

TEST_F(YamlReaderTest, MapReaderDuplicateAndNonStringKeys) {
  YAML::Node root = Parse(
      "topic: a\n"  // 1
      "topic: b\n"  // 2
      "~: 1\n"      // 3
      "[x]: 2\n");  // 4
  MapReader r(root, "kafka", &diag_);
  EXPECT_EQ(r.String("topic"), "a");  // the first one wins
  r.Finish();
  EXPECT_THAT(errors(), ElementsAre("f.yaml:2:1: duplicate key \"kafka.topic\"",
                                    "f.yaml:3:1: kafka: keys must be strings",
                                    "f.yaml:4:1: kafka: keys must be strings"));
}

TEST_F(YamlReaderTest, MapReaderRequired) {
  // The error points at the map (its first key, line 2 column 3).
  YAML::Node root = Parse(
      "kafka:\n"        // 1
      "  topic: t\n");  // 2
  MapReader r(root["kafka"], "kafka", &diag_);
  EXPECT_TRUE(r.Required("topic").IsDefined());
  EXPECT_FALSE(r.Required("brokers").IsDefined());
  r.Finish();
  EXPECT_THAT(errors(), ElementsAre("f.yaml:2:3: missing required key \"kafka.brokers\""));
}

TEST_F(YamlReaderTest, MapReaderNotAMap) {
  YAML::Node root = Parse("kafka: [a, b]\n");
  MapReader r(root["kafka"], "kafka", &diag_);
  EXPECT_FALSE(r.present());
  EXPECT_EQ(r.String("topic", "t"), "t");
  EXPECT_FALSE(r.Required("brokers").IsDefined());  // no second error
  r.Finish();
  MapReader doc(Parse("- a\n"), "", &diag_);
  EXPECT_FALSE(doc.present());
  EXPECT_THAT(errors(), ElementsAre("f.yaml:1:8: kafka: expected a mapping",
                                    "f.yaml:1:1: document: expected a mapping"));
}

TEST_F(YamlReaderTest, MapReaderAbsentOrNullIsEmpty) {
  YAML::Node root = Parse("kafka:\n");
  {
    MapReader null_map(root["kafka"], "kafka", &diag_);
    EXPECT_FALSE(null_map.present());
    EXPECT_EQ(null_map.Int("partitions", 4, 1, 10), 4);
    EXPECT_FALSE(null_map.Required("brokers").IsDefined());
  }
  {
    MapReader absent(YAML::Node(YAML::NodeType::Undefined), "http", &diag_);
    EXPECT_FALSE(absent.present());
    EXPECT_EQ(absent.String("listen", "0.0.0.0:1"), "0.0.0.0:1");
  }
  EXPECT_THAT(errors(), IsEmpty());
}

TEST_F(YamlReaderTest, MapReaderFinishIsIdempotent) {
  YAML::Node root = Parse("x: 1\n");
  {
    MapReader r(root, "m", &diag_);
    r.Finish();
    r.Finish();
  }
  EXPECT_THAT(errors(), ElementsAre("f.yaml:1:1: unknown key \"m.x\""));
}

TEST_F(YamlReaderTest, MapReaderChildCopesWithNonStringKeys) {
  YAML::Node root = Parse("[a]: 1\nb: 2\n");
  MapReader r(root, "m", &diag_);
  EXPECT_EQ(r.Int("b", 0, 0, 9), 2);
  r.Finish();
  EXPECT_THAT(errors(), ElementsAre("f.yaml:1:1: m: keys must be strings"));
}

TEST(DidYouMean, FindsCloseTypos) {
  const std::vector<std::string> keys = {"brokers", "group_id", "topic", "windows", "window"};
  EXPECT_EQ(DidYouMean("topik", keys), "topic");
  EXPECT_EQ(DidYouMean("TOPIC", keys), "topic");  // case-insensitive
  EXPECT_EQ(DidYouMean("grup_id", keys), "group_id");
  EXPECT_EQ(DidYouMean("brokres", keys), "brokers");
  EXPECT_EQ(DidYouMean("windws", keys), "windows");  // the closest wins
}

TEST(DidYouMean, NothingWhenFar) {
  const std::vector<std::string> keys = {"brokers", "topic"};
  EXPECT_EQ(DidYouMean("zzzzzz", keys), "");
  EXPECT_EQ(DidYouMean("partitions", keys), "");
  EXPECT_EQ(DidYouMean("topic", {}), "");
}

TEST(DidYouMean, ToleranceGrowsWithLength) {
  // Up to max(2, len/3) edits, and never a wholesale replacement.
  EXPECT_EQ(DidYouMean("ud", {"id"}), "id");
  EXPECT_EQ(DidYouMean("ab", {"xy"}), "");
  EXPECT_EQ(DidYouMean("abc", {"xyz"}), "");
  EXPECT_EQ(DidYouMean("max_series_per_proc", {"max_series_per_process"}),
            "max_series_per_process");
}

}  // namespace
}  // namespace kpid

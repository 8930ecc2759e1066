// /metrics bodies being sent while the next scrapes run, on real threads:
// workers write facts into their shards all along; HTTP clients scrape
// HttpServer over loopback, reading slowly, while other scrapes re-render,
// replace EngineMetrics' kept chunks and recycle bodies' own text
// (HttpServer::RecycleBody); other threads hold bodies from
// HttpServer::RenderMetrics() and walk them a piece at a time, as the
// server's content provider does, across later scrapes. Run under
// ThreadSanitizer in CI (label "tsan").
//
// The holders are what keeps a body "being sent" for long: over loopback
// the kernel takes a body of this size (~400 KB) into the socket's send
// buffer (which grows to tcp_wmem's 4 MB) almost at once, so a server
// thread seldom stays inside its send while another scrape runs, however
// slowly the client reads. The HTTP clients cover the rest of the path: the
// body's own text handed from the sending thread to the next render, and
// the bytes as they arrive.
//
// What must hold: a body's bytes once sent are those it had when rendered
// (the kept lines it refers to are never rewritten or freed under it);
// every body parses line by line, has every series, and no counter goes down
// from one scrape to the next; once the workers stop, a scrape is that of an
// engine reading every series afresh, and the counts are the facts written.
#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/cases/clock.h"
#include "daemon/cases/dimension_table.h"
#include "daemon/export/engine_metrics.h"
#include "daemon/export/text_writer.h"
#include "daemon/http/http_server.h"
#include "daemon/ingest/event_view_testing.h"
#include "gtest/gtest.h"

namespace kpid::http {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1767225600);
constexpr int kWorkers = 2;
constexpr int kProcesses = 2;
constexpr int kStages = 3;
constexpr int kRegions = 12;  // dimension values, each in every worker and process

model::Config TestConfig() {
  model::Config c;
  c.windows = {absl::Minutes(5), absl::Hours(1)};
  c.retention = absl::Hours(2);
  c.dimensions.names = {"region"};
  c.dimensions.max_series_per_process = kRegions;
  for (const char* id : {"lead_to_cash", "support"}) {
    model::ProcessConfig p;
    p.id = id;
    p.stages = {{"first", absl::Hours(1), {}},
                {"second", absl::Hours(1), {}},
                {"third", absl::Hours(1), {}}};
    c.processes.push_back(p);
  }
  return c;
}

// One case through every stage, all at kNow - 1 s (inside every window, so
// every ratio and quantile has a denominator once a series had one case).
void WriteCase(aggregate::AggregateShard* shard, int process, cases::DimsId dims) {
  const absl::Time at = kNow - absl::Seconds(1);
  shard->CaseStarted(process, dims, at);
  for (int stage = 0; stage < kStages; ++stage) {
    shard->StageEntered(process, stage, dims, at, false);
    shard->StageExited(process, stage, dims, at, cases::ExitOutcome::kAdvanced,
                       absl::Minutes(1 + stage), true);
    if (stage + 1 < kStages) shard->Transition(process, stage, stage + 1, at);
  }
  shard->CaseCompleted(process, dims, at, 1.5, absl::Minutes(10));
  shard->Cost(process, dims, at, 0.5);
}

// A body parsed strictly: every line a HELP, a TYPE or a sample of the
// family they announced, each family once; the values by series.
struct ParsedBody {
  std::string error;  // empty: well-formed
  std::map<std::string, double> values;
  std::map<std::string, std::string> type_of;  // by series: its family's TYPE
};

bool IsNameChar(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
         (!first && c >= '0' && c <= '9');
}

// `name{a="x",b="y"}`: labels well-formed, values escaped as the format says.
bool IsSeries(absl::string_view s) {
  size_t i = 0;
  while (i < s.size() && IsNameChar(s[i], i == 0)) ++i;
  if (i == 0) return false;
  if (i == s.size()) return true;
  if (s[i] != '{' || s.back() != '}') return false;
  ++i;
  while (i < s.size() - 1) {
    const size_t name_begin = i;
    while (i < s.size() && IsNameChar(s[i], i == name_begin)) ++i;
    if (i == name_begin || s.substr(i, 2) != "=\"") return false;
    for (i += 2; i < s.size() && s[i] != '"'; ++i) {
      if (s[i] == '\n') return false;
      if (s[i] == '\\' && (++i == s.size() || (s[i] != '\\' && s[i] != '"' && s[i] != 'n'))) {
        return false;
      }
    }
    if (i >= s.size() - 1) return false;  // unterminated value
    ++i;
    if (s[i] == ',') ++i;
  }
  return i == s.size() - 1;
}

ParsedBody Parse(absl::string_view body) {
  ParsedBody out;
  if (body.empty() || body.back() != '\n') {
    out.error = "empty or not ending in a newline";
    return out;
  }
  body.remove_suffix(1);
  std::set<std::string> families;
  std::string family, type;
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    auto fail = [&](absl::string_view why) {
      if (out.error.empty()) out.error = absl::StrCat(why, ": '", line, "'");
    };
    if (absl::StartsWith(line, "# HELP ")) {
      std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 3));
      if (parts.size() < 4 || !families.insert(std::string(parts[2])).second) {
        fail("bad or repeated HELP");
      }
      family = std::string(parts.size() > 2 ? parts[2] : "");
      type.clear();
      continue;
    }
    if (absl::StartsWith(line, "# TYPE ")) {
      std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
      if (parts.size() != 4 || parts[2] != family || !type.empty()) fail("bad TYPE");
      type = std::string(parts.size() == 4 ? parts[3] : "");
      continue;
    }
    const size_t close = line.rfind('}');
    const size_t space = line.find(' ', close == absl::string_view::npos ? 0 : close);
    double value = 0;
    if (space == absl::string_view::npos || !IsSeries(line.substr(0, space)) ||
        !absl::SimpleAtod(line.substr(space + 1), &value)) {
      fail("not a sample line");
      continue;
    }
    const absl::string_view series = line.substr(0, space);
    if (type.empty() || !absl::StartsWith(series, family)) fail("sample outside its family");
    if (!out.values.emplace(std::string(series), value).second) fail("repeated series");
    out.type_of[std::string(series)] = type;
  }
  return out;
}

// Checks a body against the series every body has and the scrape before it
// from the same reader: counters and totals histograms never go down.
// Returns the failures (none: empty), and moves `body`'s values to `last`.
std::string Check(absl::string_view body, const std::set<std::string>& series,
                  std::map<std::string, double>* last) {
  ParsedBody parsed = Parse(body);
  if (!parsed.error.empty()) return parsed.error;
  if (parsed.values.size() != series.size()) {
    return absl::StrCat(parsed.values.size(), " series, not ", series.size());
  }
  for (const auto& [key, value] : parsed.values) {
    if (series.count(key) == 0) return absl::StrCat("unexpected series ", key);
    const std::string& type = parsed.type_of[key];
    auto before = last->find(key);
    if ((type == "counter" || type == "histogram") && before != last->end() &&
        value < before->second) {
      return absl::StrCat(key, " went down from ", before->second, " to ", value);
    }
  }
  *last = std::move(parsed.values);
  return "";
}

// GET /metrics from 127.0.0.1:`port` as a slow client: a small receive
// buffer and a pause per read. False (and why in *body) when it fails.
bool SlowGet(int port, std::string* body) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(60, 0);  // a slow sanitized scrape
  client.set_socket_options([](int fd) {
    const int bytes = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
  });
  body->clear();
  httplib::Result result = client.Get("/metrics", [&](const char* data, size_t size) {
    body->append(data, size);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    return true;
  });
  if (result && result->status == 200) return true;
  *body = absl::StrCat("GET /metrics failed: ", httplib::to_string(result.error()), " status ",
                       result ? result->status : 0);
  return false;
}

TEST(MetricsScrapeStressTest, BodiesStayAsRenderedWhileLaterScrapesRun) {
  const model::Config config = TestConfig();
  const cases::ManualClock clock(kNow);  // never moves: read by every scrape
  std::vector<std::unique_ptr<cases::DimensionTable>> tables;
  std::vector<std::unique_ptr<aggregate::AggregateShard>> shards;
  std::vector<std::vector<std::vector<cases::DimsId>>> dims(kWorkers);  // [worker][process][region]
  for (int w = 0; w < kWorkers; ++w) {
    tables.push_back(std::make_unique<cases::DimensionTable>(config));
    shards.push_back(std::make_unique<aggregate::AggregateShard>(config));
    for (int p = 0; p < kProcesses; ++p) {
      dims[w].emplace_back();
      for (int r = 0; r < kRegions; ++r) {
        dims[w][p].push_back(
            tables[w]->Resolve(p, ingest::MakeAttributes({{"region", absl::StrCat("r", r)}})));
        WriteCase(shards[w].get(), p, dims[w][p].back());
      }
    }
  }
  std::vector<const aggregate::AggregateShard*> shard_ptrs;
  std::vector<const cases::DimensionTable*> table_ptrs;
  for (int w = 0; w < kWorkers; ++w) {
    shard_ptrs.push_back(shards[w].get());
    table_ptrs.push_back(tables[w].get());
  }
  auto metrics = std::make_shared<exporter::EngineMetrics>(&config, shard_ptrs, table_ptrs, &clock);
  // Chunks of a few series: a scrape shares most of a family's chunks with
  // the bodies before it and rebuilds the few whose series got facts.
  metrics->set_text_chunk_bytes(2000);
  auto fresh = std::make_shared<exporter::EngineMetrics>(&config, shard_ptrs, table_ptrs, &clock);
  fresh->set_cache_window_reads(false);

  HttpServer::Options options;
  options.listen = "127.0.0.1:0";
  options.collectables = {metrics};
  absl::StatusOr<std::unique_ptr<HttpServer>> started = HttpServer::Start(std::move(options));
  ASSERT_TRUE(started.ok()) << started.status();
  HttpServer& server = **started;
  // cpp-httplib is Debian's shared library, not built with ThreadSanitizer:
  // its function-local statics (parsing tables, client and server side) are
  // read past their guard with loads TSan does not see, so the first use of
  // each must come before the threads that share them. One scrape here, on
  // this thread for the client's (the readers are started after it) and on
  // one of the server's threads for the server's: that thread returns to its
  // pool's queue (a mutex the others take) before any other request.
  {
    std::string body;
    ASSERT_TRUE(SlowGet(server.port(), &body)) << body;
    absl::SleepFor(absl::Milliseconds(200));
  }

  // The series of every body: those of the first, which must hold, per
  // process, kRegions process series and kRegions x kStages stage series
  // (each region's series of the two workers summed into one).
  std::set<std::string> series;
  {
    const ParsedBody first = Parse(server.RenderMetrics().Flatten());
    ASSERT_EQ(first.error, "");
    for (const auto& [key, value] : first.values) series.insert(key);
    int started_series = 0, entered_series = 0;
    for (const std::string& key : series) {
      started_series += absl::StartsWith(key, "kpid_process_cases_started_total{");
      entered_series += absl::StartsWith(key, "kpid_stage_entered_total{");
    }
    EXPECT_EQ(started_series, kProcesses * kRegions);            // 2 x 12 = 24
    EXPECT_EQ(entered_series, kProcesses * kRegions * kStages);  // 2 x 12 x 3 = 72
  }

  std::atomic<bool> stop_readers{false};
  std::atomic<bool> stop_writers{false};
  std::atomic<int> failures{0};
  std::atomic<uint64_t> scrapes{0};  // bodies scraped by anyone, so far
  // Held bodies of kept chunks sent while two later scrapes went through the cache.
  std::atomic<int> held_past_two_scrapes{0};
  std::atomic<bool> saw_kept_and_rebuilt{false};
  auto report = [&](const std::string& who, const std::string& what) {
    if (failures.fetch_add(1) < 5) ADD_FAILURE() << who << ": " << what;
  };

  // Workers: a case at a time into three "hot" regions that move on every
  // 500 ms, so a scrape finds some chunks changed and others not, however
  // fast the build renders.
  std::vector<uint64_t> cases_written(kWorkers, 0);
  std::vector<std::thread> writers;
  const absl::Time writers_began = absl::Now();
  for (int w = 0; w < kWorkers; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937 rng(w);
      uint64_t n = 0;
      while (!stop_writers.load(std::memory_order_relaxed)) {
        const int hot = static_cast<int>((absl::Now() - writers_began) / absl::Milliseconds(500));
        const int process = static_cast<int>(rng() % kProcesses);
        const int region = (hot + static_cast<int>(rng() % 3)) % kRegions;
        WriteCase(shards[w].get(), process, dims[w][process][region]);
        ++n;
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
      cases_written[w] = n;
    });
  }

  // HTTP scrapers (SlowGet).
  constexpr int kMinScrapes = 3;
  std::vector<std::atomic<int>> done(4);  // by reader: two scrapers, then two holders
  std::vector<std::thread> readers;
  for (size_t c = 0; c < 2; ++c) {
    readers.emplace_back([&, c] {
      std::map<std::string, double> last;
      while (!stop_readers.load(std::memory_order_relaxed)) {
        std::string body;
        if (!SlowGet(server.port(), &body)) {
          report("http", body);
          return;
        }
        scrapes.fetch_add(1);
        const std::string error = Check(body, series, &last);
        if (!error.empty()) report("http", error);
        done[c].fetch_add(1);
      }
    });
  }

  // Holders: a body as the server renders it, copied at once, then walked
  // ~4 KB at a time from where the last piece ended (as the server's
  // content provider is called), with pauses. A body that refers to kept
  // chunks (rendered through the text cache, not by a scrape that found it
  // taken) waits halfway until four more bodies were rendered, so that
  // later scrapes through the cache have replaced the chunks it refers to
  // where their series changed, and taken the memory of those replaced
  // before them for reuse where no body refers to it (engine_metrics.cc
  // TakeSpare), while it still has half to send. It waits on a relaxed
  // load: nothing orders its reads after those scrapes' writes but the
  // ownership under test, so ThreadSanitizer sees a write to lines it
  // still refers to as the race it is.
  for (size_t h = 2; h < 4; ++h) {
    readers.emplace_back([&, h] {
      std::map<std::string, double> last;
      while (!stop_readers.load(std::memory_order_relaxed)) {
        const exporter::TextBody body = server.RenderMetrics();
        const uint64_t rendered_as = scrapes.fetch_add(1) + 1;
        // Of this scrape or a later one.
        const exporter::EngineMetrics::TextCacheStats stats = metrics->text_cache_stats();
        if (stats.kept > 0 && stats.rendered > 0) saw_kept_and_rebuilt.store(true);
        const bool refers_to_kept = exporter::TextBody(body).TakeText().size() < body.size();
        const std::string at_start = exporter::TextBody(body).Flatten();
        std::string sent;
        bool waited = !refers_to_kept;
        while (sent.size() < body.size()) {
          if (!waited && sent.size() >= body.size() / 2) {
            const absl::Time give_up = absl::Now() + absl::Seconds(10);
            while (scrapes.load(std::memory_order_relaxed) < rendered_as + 4 &&
                   absl::Now() < give_up && !stop_readers.load(std::memory_order_relaxed)) {
              absl::SleepFor(absl::Milliseconds(1));
            }
            waited = true;
          }
          const size_t before = sent.size();
          body.Write(sent.size(), [&](absl::string_view part) {
            sent.append(part.data(), std::min<size_t>(part.size(), 4096));
            return false;
          });
          if (sent.size() == before) break;  // shorter than its size: fails below
          std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        if (refers_to_kept && metrics->text_cache_stats().scrapes >= stats.scrapes + 2) {
          held_past_two_scrapes.fetch_add(1);
        }
        if (sent != at_start) report("held", "body changed while being sent");
        const std::string error = Check(sent, series, &last);
        if (!error.empty()) report("held", error);
        done[h].fetch_add(1);
      }
    });
  }

  // A few seconds, and at least a few scrapes by every reader (TSan makes
  // each ~10x slower) and held bodies that two later scrapes passed (most
  // bodies do not refer to kept chunks: their scrape found the cache taken);
  // two minutes at most.
  const absl::Time begin = absl::Now();
  auto enough = [&] {
    if (absl::Now() - begin > absl::Minutes(2)) return true;
    for (const std::atomic<int>& n : done) {
      if (n.load() < kMinScrapes) return false;
    }
    if (held_past_two_scrapes.load() < kMinScrapes) return false;
    return absl::Now() - begin > absl::Seconds(3);
  };
  while (!enough() && failures.load() == 0) absl::SleepFor(absl::Milliseconds(50));
  stop_readers.store(true);
  for (std::thread& t : readers) t.join();
  stop_writers.store(true);
  for (std::thread& t : writers) t.join();

  EXPECT_EQ(failures.load(), 0);
  for (const std::atomic<int>& n : done) EXPECT_GE(n.load(), kMinScrapes);
  EXPECT_GE(held_past_two_scrapes.load(), kMinScrapes);
  EXPECT_TRUE(saw_kept_and_rebuilt.load());

  // At rest: the cached scrape is a fresh one, and the cases started are
  // the ones written: kWorkers x kProcesses x kRegions at setup (48) plus
  // every case the workers wrote since.
  const std::string body = server.RenderMetrics().Flatten();
  EXPECT_EQ(body, exporter::RenderText({fresh}));
  const ParsedBody final_body = Parse(body);
  ASSERT_EQ(final_body.error, "");
  double cases_started = 0;
  for (const auto& [key, value] : final_body.values) {
    if (absl::StartsWith(key, "kpid_process_cases_started_total{")) cases_started += value;
  }
  uint64_t expected = kWorkers * kProcesses * kRegions;
  for (uint64_t n : cases_written) expected += n;
  EXPECT_EQ(cases_started, static_cast<double>(expected));
}

}  // namespace
}  // namespace kpid::http

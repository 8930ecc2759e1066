// kpid-bench-bare-consumer: the ceiling for kpid's ingest throughput. A
// librdkafka consumer that assigns every partition of a topic by hand, from
// the beginning (no consumer group, no commits), and only counts messages.
//
//   kpid-bench-bare-consumer --brokers 127.0.0.1:40123 --topic process-events --expect 400000
//   {"events":400000,"seconds":0.571,"events_per_sec":700420,"cpu_seconds":0.98,...}
//
//   kpid-bench-bare-consumer --brokers B --topic T --watermarks
//   {"partitions":16,"messages":400000,"low_offsets_nonzero":0}
//
// Time and CPU (getrusage, all threads of the process) are measured from the
// first message received to the Nth, so connecting and fetching metadata are
// not counted. Settings are librdkafka's defaults (queued.min.messages
// = 100000 and fetch.wait.max.ms = 500, where kpid sets 1000000 and 100; with
// kpid's values this consumer costs the same, RESULTS.md §22); note that
// librdkafka stops fetching while the consumer queue holds that many
// messages and resumes only on its next ~1 s wake-up, so a run where this
// process fell behind for a moment shows a one-second stall (use the median
// of several runs). --property k=v
// (repeatable) sets any librdkafka property, for experiments: with
// queued.min.messages=10000000 the whole topic is prefetched and the count
// measures how fast a local queue drains instead. Exits 1 when N messages do
// not arrive within --timeout-sec.
#include <librdkafka/rdkafka.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace {

struct Args {
  std::string brokers;
  std::string topic;
  int64_t expect = 0;
  double timeout_sec = 60;
  bool watermarks = false;
  std::vector<std::pair<std::string, std::string>> properties;
};

constexpr char kUsage[] =
    "usage: kpid-bench-bare-consumer --brokers HOST:PORT --topic T --expect N\n"
    "                                [--timeout-sec S] [--property key=value]...\n"
    "       kpid-bench-bare-consumer --brokers HOST:PORT --topic T --watermarks\n";

[[noreturn]] void Usage(const char* problem) {
  if (problem != nullptr) std::fprintf(stderr, "kpid-bench-bare-consumer: %s\n", problem);
  std::fputs(kUsage, stderr);
  std::exit(2);
}

Args ParseArgs(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    std::string value;
    const size_t eq = flag.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = flag.substr(eq + 1);
      flag.resize(eq);
    }
    auto take = [&]() -> std::string {
      if (inline_value) return value;
      if (i + 1 >= argc) Usage((flag + " needs a value").c_str());
      return argv[++i];
    };
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (flag == "--brokers") {
      args.brokers = take();
    } else if (flag == "--topic") {
      args.topic = take();
    } else if (flag == "--expect") {
      args.expect = std::strtoll(take().c_str(), nullptr, 10);
    } else if (flag == "--timeout-sec") {
      args.timeout_sec = std::strtod(take().c_str(), nullptr);
    } else if (flag == "--watermarks") {
      args.watermarks = true;
    } else if (flag == "--property") {
      const std::string kv = take();
      const size_t sep = kv.find('=');
      if (sep == std::string::npos) Usage("--property wants key=value");
      args.properties.emplace_back(kv.substr(0, sep), kv.substr(sep + 1));
    } else {
      Usage(("unknown flag " + flag).c_str());
    }
  }
  if (args.brokers.empty() || args.topic.empty()) Usage("--brokers and --topic are required");
  if (!args.watermarks && args.expect <= 0) Usage("--expect N (N > 0) is required");
  return args;
}

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

rd_kafka_t* NewConsumer(const Args& args) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  std::vector<std::pair<std::string, std::string>> settings = {
      {"bootstrap.servers", args.brokers},
      // Only needed so librdkafka accepts a consumer; partitions are assigned
      // by hand, so the group is never joined and nothing is committed.
      {"group.id", "kpid-bench-bare-consumer"},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "false"},
      {"client.id", "kpid-bench-bare-consumer"},
  };
  settings.insert(settings.end(), args.properties.begin(), args.properties.end());
  for (const auto& [key, value] : settings) {
    if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK) {
      std::fprintf(stderr, "kpid-bench-bare-consumer: %s: %s\n", key.c_str(), err);
      std::exit(2);
    }
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  if (rk == nullptr) {
    std::fprintf(stderr, "kpid-bench-bare-consumer: %s\n", err);
    std::exit(1);
  }
  return rk;
}

// Partition count of the topic, or -1.
int PartitionCount(rd_kafka_t* rk, const std::string& topic) {
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* metadata = nullptr;
  int count = -1;
  for (int attempt = 0; attempt < 10 && count < 0; ++attempt) {
    if (rd_kafka_metadata(rk, 0, rkt, &metadata, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    if (metadata->topic_cnt == 1 && metadata->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      count = metadata->topics[0].partition_cnt;
    }
    rd_kafka_metadata_destroy(metadata);
  }
  rd_kafka_topic_destroy(rkt);
  return count;
}

int PrintWatermarks(rd_kafka_t* rk, const std::string& topic, int partitions) {
  int64_t messages = 0;
  int low_nonzero = 0;
  for (int p = 0; p < partitions; ++p) {
    int64_t low = 0, high = 0;
    rd_kafka_resp_err_t e =
        rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, 5000);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::fprintf(stderr, "kpid-bench-bare-consumer: watermarks of partition %d: %s\n", p,
                   rd_kafka_err2str(e));
      return 1;
    }
    messages += high - low;
    if (low != 0) ++low_nonzero;
  }
  std::printf("{\"partitions\":%d,\"messages\":%lld,\"low_offsets_nonzero\":%d}\n", partitions,
              static_cast<long long>(messages), low_nonzero);
  return 0;
}

int Consume(rd_kafka_t* rk, const Args& args, int partitions) {
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(list, args.topic.c_str(), p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_resp_err_t e = rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    std::fprintf(stderr, "kpid-bench-bare-consumer: assign: %s\n", rd_kafka_err2str(e));
    return 1;
  }

  // The same batched call kpid's workers use, on the consumer's own queue.
  rd_kafka_queue_t* queue = rd_kafka_queue_get_consumer(rk);
  std::vector<rd_kafka_message_t*> batch(1024);
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline =
      Clock::now() +
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(args.timeout_sec));
  int64_t count = 0;
  int64_t errors = 0;
  Clock::time_point first, last;
  double cpu_first = 0, cpu_last = 0;
  while (count < args.expect && Clock::now() < deadline) {
    // The call waits until the batch is full or the timeout passes; asking
    // for no more than what is left keeps the last batch from waiting 100 ms.
    const size_t want = static_cast<size_t>(
        std::min<int64_t>(static_cast<int64_t>(batch.size()), args.expect - count));
    const ssize_t n = rd_kafka_consume_batch_queue(queue, 100, batch.data(), want);
    for (ssize_t i = 0; i < n; ++i) {
      if (batch[i]->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (count == 0) {
          first = Clock::now();
          cpu_first = CpuSeconds();
        }
        ++count;
      } else {
        ++errors;
      }
      rd_kafka_message_destroy(batch[i]);
    }
  }
  last = Clock::now();
  cpu_last = CpuSeconds();
  rd_kafka_queue_destroy(queue);

  if (count < args.expect) {
    std::fprintf(stderr,
                 "kpid-bench-bare-consumer: only %lld of %lld messages within %.0f s "
                 "(%lld errors)\n",
                 static_cast<long long>(count), static_cast<long long>(args.expect),
                 args.timeout_sec, static_cast<long long>(errors));
    return 1;
  }
  const double seconds = std::chrono::duration<double>(last - first).count();
  // The first message starts the clock, so N - 1 arrive inside the interval.
  const double rate = seconds > 0 ? static_cast<double>(count - 1) / seconds : 0;
  std::printf(
      "{\"events\":%lld,\"seconds\":%.6f,\"events_per_sec\":%.0f,\"cpu_seconds\":%.3f,"
      "\"errors\":%lld}\n",
      static_cast<long long>(count), seconds, rate, cpu_last - cpu_first,
      static_cast<long long>(errors));
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  rd_kafka_t* rk = NewConsumer(args);
  const int partitions = PartitionCount(rk, args.topic);
  int rc = 1;
  if (partitions <= 0) {
    std::fprintf(stderr, "kpid-bench-bare-consumer: topic %s not found on %s\n", args.topic.c_str(),
                 args.brokers.c_str());
  } else if (args.watermarks) {
    rc = PrintWatermarks(rk, args.topic, partitions);
  } else {
    rc = Consume(rk, args, partitions);
  }
  // No group was joined: closing only stops the fetchers.
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return rc;
}

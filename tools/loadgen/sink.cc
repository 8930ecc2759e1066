#include "tools/loadgen/sink.h"

#include <librdkafka/rdkafka.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "daemon/common/duration.h"
#include "daemon/common/log.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/type_resolver.h"
#include "google/protobuf/util/type_resolver_util.h"

namespace kpid::loadgen {
namespace {

using kpid::v1::ProcessEvent;

constexpr absl::string_view kJsonContentType = "application/json";

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

// Encodes `event` in `format` into *out (replacing it).
absl::Status Encode(const ProcessEvent& event, Format format, std::string* out) {
  if (format == Format::kJson) return ToJsonDeterministic(event, out);
  SerializeDeterministic(event, out);
  return absl::OkStatus();
}

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

int64_t Millis(absl::Duration d) { return absl::ToInt64Milliseconds(d); }

// Appends events to a FILE*: length-delimited protobuf or JSON lines.
class FileSink : public EventSink {
 public:
  FileSink(std::string path, FILE* file, bool owned, Format format)
      : path_(std::move(path)), file_(file), owned_(owned), format_(format) {
    buffer_.resize(1 << 20);
    std::setvbuf(file_, buffer_.data(), _IOFBF, buffer_.size());
  }

  ~FileSink() override {
    if (file_ != nullptr) Close().IgnoreError();
  }

  absl::Status Write(const ProcessEvent& event) override {
    if (file_ == nullptr) return absl::FailedPreconditionError("write after close");
    frame_.clear();
    if (format_ == Format::kProtobuf) {
      SerializeDeterministic(event, &body_);
      AppendVarint(body_.size(), &frame_);
      frame_.append(body_);
    } else {
      if (absl::Status s = ToJsonDeterministic(event, &frame_); !s.ok()) return s;
      frame_.push_back('\n');
    }
    if (std::fwrite(frame_.data(), 1, frame_.size(), file_) != frame_.size()) {
      return ErrnoError("cannot write", path_);
    }
    return absl::OkStatus();
  }

  void Poll(absl::Duration timeout) override { absl::SleepFor(timeout); }

  absl::Status Close() override {
    if (file_ == nullptr) return absl::OkStatus();
    absl::Status status;
    if (std::fflush(file_) != 0) status = ErrnoError("cannot write", path_);
    if (owned_ && std::fclose(file_) != 0 && status.ok())
      status = ErrnoError("cannot close", path_);
    file_ = nullptr;
    return status;
  }

 private:
  std::string path_;
  FILE* file_;
  bool owned_;
  Format format_;
  std::vector<char> buffer_;  // stdio buffer: outlives every write to file_
  std::string body_;
  std::string frame_;
};

// A librdkafka producer. Delivery reports, errors and flushes are served on
// the calling thread (rd_kafka_poll / rd_kafka_flush), so its counters need no
// synchronization; only the log callback runs on librdkafka's threads, and it
// touches nothing here.
class KafkaSink : public EventSink {
 public:
  explicit KafkaSink(const KafkaSinkOptions& options) : options_(options) {}

  ~KafkaSink() override {
    if (rk_ != nullptr) {
      rd_kafka_purge(rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      rd_kafka_poll(rk_, 0);
      rd_kafka_destroy(rk_);
    }
  }

  absl::Status Open() {
    char errstr[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    std::vector<std::pair<std::string, std::string>> settings = {
        {"bootstrap.servers", options_.brokers},
        {"client.id", "kpi-loadgen"},
        {"linger.ms", "5"},
        {"batch.num.messages", "100000"},
        {"batch.size", "1000000"},
        {"queue.buffering.max.messages", "1000000"},
        {"queue.buffering.max.kbytes", "1048576"},
        {"message.timeout.ms", absl::StrCat(std::max<int64_t>(1, Millis(options_.timeout)))},
    };
    for (const auto& [key, value] : options_.properties) settings.emplace_back(key, value);
    for (const auto& [key, value] : settings) {
      if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), errstr, sizeof(errstr)) !=
          RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return absl::InvalidArgumentError(absl::StrCat("kafka property ", key, ": ", errstr));
      }
    }
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_conf_set_dr_msg_cb(conf, &KafkaSink::OnDelivery);
    rd_kafka_conf_set_error_cb(conf, &KafkaSink::OnError);
    rd_kafka_conf_set_log_cb(conf, &KafkaSink::OnLog);
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk_ == nullptr) {  // conf is still ours
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(absl::StrCat("cannot create kafka producer: ", errstr));
    }

    // Fail fast, with a clear message, when nobody answers at that address.
    const rd_kafka_metadata_t* metadata = nullptr;
    rd_kafka_resp_err_t err =
        rd_kafka_metadata(rk_, 1, nullptr, &metadata, static_cast<int>(Millis(options_.timeout)));
    rd_kafka_poll(rk_, 0);  // collect error callbacks for last_error_
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(
          absl::StrCat("cannot reach kafka brokers ", options_.brokers, " within ",
                       FormatPromDuration(options_.timeout), ": ", rd_kafka_err2str(err),
                       last_error_.empty() ? "" : absl::StrCat(" (", last_error_, ")")));
    }
    bool found = false;
    for (int i = 0; i < metadata->topic_cnt; ++i) {
      if (options_.topic == metadata->topics[i].topic && metadata->topics[i].err == 0) {
        found = true;
      }
    }
    rd_kafka_metadata_destroy(metadata);
    if (!found) {
      log::Warn("topic not found on the brokers; relying on their auto-creation",
                {{"topic", options_.topic}, {"brokers", options_.brokers}});
    }
    return absl::OkStatus();
  }

  absl::Status Write(const ProcessEvent& event) override {
    if (absl::Status s = Encode(event, options_.format, &value_); !s.ok()) return s;
    for (;;) {
      if (failed_ > 0) return DeliveryError();
      rd_kafka_resp_err_t err = Produce(event.case_id());
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        return absl::UnavailableError(
            absl::StrCat("cannot produce to ", options_.topic, ": ", rd_kafka_err2str(err)));
      }
      // The local queue is full: serve delivery reports until there is room.
      rd_kafka_poll(rk_, 100);
    }
    ++produced_;
    if (++since_poll_ >= 128) {
      since_poll_ = 0;
      rd_kafka_poll(rk_, 0);
    }
    return failed_ > 0 ? DeliveryError() : absl::OkStatus();
  }

  void Poll(absl::Duration timeout) override {
    rd_kafka_poll(rk_, static_cast<int>(std::max<int64_t>(0, Millis(timeout))));
  }

  absl::Status Close() override {
    if (closed_) return absl::OkStatus();
    closed_ = true;
    rd_kafka_flush(rk_, static_cast<int>(Millis(options_.timeout)));
    const int left = rd_kafka_outq_len(rk_);
    if (failed_ > 0) return DeliveryError();
    if (left > 0) {
      return absl::DeadlineExceededError(
          absl::StrCat(left, " kafka requests/messages still undelivered after ",
                       FormatPromDuration(options_.timeout),
                       last_error_.empty() ? "" : absl::StrCat(" (", last_error_, ")")));
    }
    return absl::OkStatus();
  }

 private:
  rd_kafka_resp_err_t Produce(const std::string& key) {
    void* value = const_cast<char*>(value_.data());
    if (options_.format == Format::kJson) {
      return rd_kafka_producev(
          rk_, RD_KAFKA_V_TOPIC(options_.topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
          RD_KAFKA_V_VALUE(value, value_.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_HEADER("content-type", kJsonContentType.data(),
                            static_cast<ssize_t>(kJsonContentType.size())),
          RD_KAFKA_V_END);
    }
    return rd_kafka_producev(rk_, RD_KAFKA_V_TOPIC(options_.topic.c_str()),
                             RD_KAFKA_V_KEY(key.data(), key.size()),
                             RD_KAFKA_V_VALUE(value, value_.size()),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  }

  absl::Status DeliveryError() const {
    return absl::UnavailableError(absl::StrCat(
        failed_, " of ", produced_, " events not delivered to ", options_.topic, ": ",
        first_failure_, last_error_.empty() ? "" : absl::StrCat(" (", last_error_, ")")));
  }

  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
    auto* self = static_cast<KafkaSink*>(opaque);
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
    if (self->failed_++ == 0) self->first_failure_ = rd_kafka_err2str(message->err);
  }

  static void OnError(rd_kafka_t*, int err, const char* reason, void* opaque) {
    auto* self = static_cast<KafkaSink*>(opaque);
    self->last_error_ = reason;
    if (err == RD_KAFKA_RESP_ERR__FATAL) log::Error("kafka fatal error", {{"error", reason}});
  }

  // librdkafka's own log lines (connection failures and the like), as logfmt.
  static void OnLog(const rd_kafka_t*, int level, const char* facility, const char* message) {
    if (level > 4) return;  // notice, info, debug
    log::Warn("librdkafka", {{"facility", facility}, {"message", message}});
  }

  KafkaSinkOptions options_;
  rd_kafka_t* rk_ = nullptr;
  std::string value_;
  int64_t produced_ = 0;
  int64_t failed_ = 0;
  int since_poll_ = 0;
  bool closed_ = false;
  std::string first_failure_;
  std::string last_error_;
};

}  // namespace

absl::StatusOr<Format> ParseFormat(absl::string_view name) {
  if (name == "protobuf") return Format::kProtobuf;
  if (name == "json") return Format::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown format \"", name, "\"; want protobuf or json"));
}

void SerializeDeterministic(const ProcessEvent& event, std::string* out) {
  out->clear();
  google::protobuf::io::StringOutputStream stream(out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  event.SerializeToCodedStream(&coded);
}

absl::Status ToJsonDeterministic(const ProcessEvent& event, std::string* out) {
  // MessageToJsonString does the same, but from bytes serialized in the
  // message's (random) map order.
  static google::protobuf::util::TypeResolver* const resolver =
      google::protobuf::util::NewTypeResolverForDescriptorPool(
          "type.googleapis.com", google::protobuf::DescriptorPool::generated_pool());
  static const std::string* const type_url = new std::string(
      absl::StrCat("type.googleapis.com/", ProcessEvent::descriptor()->full_name()));
  std::string binary;
  SerializeDeterministic(event, &binary);
  out->clear();
  auto status = google::protobuf::util::BinaryToJsonString(resolver, *type_url, binary, out);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("cannot encode JSON: ", status.ToString()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ProcessEvent>> ReadDelimitedEvents(absl::string_view bytes) {
  std::vector<ProcessEvent> events;
  google::protobuf::io::CodedInputStream input(reinterpret_cast<const uint8_t*>(bytes.data()),
                                               static_cast<int>(bytes.size()));
  while (!input.ExpectAtEnd()) {
    uint32_t size;
    if (!input.ReadVarint32(&size)) {
      return absl::DataLossError(absl::StrCat("bad length prefix of event ", events.size()));
    }
    const auto limit = input.PushLimit(static_cast<int>(size));
    ProcessEvent event;
    if (!event.ParseFromCodedStream(&input) || !input.ConsumedEntireMessage() ||
        input.BytesUntilLimit() != 0) {
      return absl::DataLossError(absl::StrCat("cannot parse event ", events.size()));
    }
    input.PopLimit(limit);
    events.push_back(std::move(event));
  }
  return events;
}

absl::StatusOr<std::unique_ptr<EventSink>> OpenFileSink(const std::string& path, Format format) {
  if (path == "-") return std::make_unique<FileSink>("stdout", stdout, false, format);
  FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return ErrnoError("cannot open", path);
  return std::make_unique<FileSink>(path, file, true, format);
}

absl::StatusOr<std::unique_ptr<EventSink>> OpenKafkaSink(const KafkaSinkOptions& options) {
  if (options.brokers.empty()) return absl::InvalidArgumentError("no kafka brokers given");
  if (options.topic.empty()) return absl::InvalidArgumentError("no kafka topic given");
  auto sink = std::make_unique<KafkaSink>(options);
  if (absl::Status s = sink->Open(); !s.ok()) return s;
  return sink;
}

absl::StatusOr<std::string> ReadBootstrapFile(const std::string& path, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  auto read = [&path]() -> std::string {
    std::ifstream in(path);
    if (!in) return "";
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  };
  for (;;) {
    std::string text = read();
    // A writer may be halfway through: take a line only once it is complete
    // or has stayed the same for a moment.
    if (!text.empty() && text.back() != '\n') {
      absl::SleepFor(absl::Milliseconds(100));
      if (read() != text && absl::Now() < deadline) continue;
    }
    std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
    const absl::string_view address = absl::StripAsciiWhitespace(lines.front());
    if (!address.empty()) return std::string(address);
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("no broker address in ", path, " after ", FormatPromDuration(timeout),
                       " (is kpid running with kafka.brokers: embedded and this bootstrap_file?)"));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

}  // namespace kpid::loadgen

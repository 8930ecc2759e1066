// Where kpi-loadgen's events go: a file (or stdout) or a Kafka topic, as
// binary protobuf or canonical proto3 JSON (DESIGN §2).
//
//   KPID_ASSIGN_OR_RETURN(std::unique_ptr<EventSink> sink,
//                         OpenFileSink("events.bin", Format::kProtobuf));
//   KPID_RETURN_IF_ERROR(sink->Write(event));
//   KPID_RETURN_IF_ERROR(sink->Close());
//
// Encodings are deterministic: map entries are written sorted by key, so equal
// events give equal bytes (protobuf's default map order is random per map).
//
// Thread-safety: a sink belongs to one thread (librdkafka's delivery reports
// are served on the thread that calls Write / Poll / Close).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "kpid/v1/event.pb.h"

namespace kpid::loadgen {

enum class Format { kProtobuf, kJson };

// "protobuf" or "json".
absl::StatusOr<Format> ParseFormat(absl::string_view name);

// Binary protobuf of `event`, map entries sorted by key.
void SerializeDeterministic(const kpid::v1::ProcessEvent& event, std::string* out);

// Canonical proto3 JSON of `event` (what MessageToJsonString prints) on one
// line, map entries sorted by key.
absl::Status ToJsonDeterministic(const kpid::v1::ProcessEvent& event, std::string* out);

// Reads a length-delimited stream (varint size, then that many bytes of
// ProcessEvent) as written by a protobuf file sink. For tests and tools.
absl::StatusOr<std::vector<kpid::v1::ProcessEvent>> ReadDelimitedEvents(absl::string_view bytes);

class EventSink {
 public:
  virtual ~EventSink() = default;

  // Writes or queues one event. After an error the sink is unusable: stop
  // writing and Close() it.
  virtual absl::Status Write(const kpid::v1::ProcessEvent& event) = 0;

  // Waits up to `timeout` doing background work (Kafka delivery reports);
  // callers pace themselves with it instead of sleeping.
  virtual void Poll(absl::Duration timeout) = 0;

  // Flushes everything written; an error when any event was not delivered.
  virtual absl::Status Close() = 0;
};

// Writes to `path` ("-" = stdout): protobuf as varint-length-delimited
// messages, JSON as one object per line.
absl::StatusOr<std::unique_ptr<EventSink>> OpenFileSink(const std::string& path, Format format);

struct KafkaSinkOptions {
  std::string brokers;  // bootstrap.servers, "host:port[,host:port]"
  std::string topic;
  Format format = Format::kProtobuf;
  // How long the brokers may take to answer at open, a message may take to
  // be delivered (message.timeout.ms), and Close() may take to flush.
  absl::Duration timeout = absl::Seconds(30);
  // Extra librdkafka properties (TLS, SASL, tuning), applied last.
  std::map<std::string, std::string> properties;
};

// A librdkafka producer: key = case_id; JSON values carry the header
// `content-type: application/json`. Fails when the brokers do not answer a
// metadata request within options.timeout.
absl::StatusOr<std::unique_ptr<EventSink>> OpenKafkaSink(const KafkaSinkOptions& options);

// The broker address in `path` (its first line, trimmed), waiting up to
// `timeout` for the file to exist and hold one — e.g. the bootstrap_file the
// daemon writes when it starts its embedded broker.
absl::StatusOr<std::string> ReadBootstrapFile(const std::string& path, absl::Duration timeout);

}  // namespace kpid::loadgen

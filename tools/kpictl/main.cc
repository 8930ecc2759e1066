// kpictl: kpid's command-line client (DESIGN §5, docs/kpictl.md).
//
//   kpictl snapshot [--process P] [--window 1h,7d] [--offset 7d] [--dim region=emea] [--local]
//   kpictl alerts [--process P] [--all]
//   kpictl cases --breaching [--process P] [--stage S] [--limit N]
//   kpictl report weekly [--process P] [--threshold 10%] [--top N] [--dim k=v]
//   common: --addr host:port  --format table|markdown|csv|json  --timeout 10s
//   TLS (kpid's grpc.tls): --tls-ca FILE  [--tls-cert FILE --tls-key FILE]  [--tls-server-name N]
#include <iostream>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "daemon/api/proto_time.h"
#include "daemon/common/duration.h"
#include "daemon/common/file_util.h"
#include "daemon/common/flag_args.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "kpid/v1/kpi_service.grpc.pb.h"
#include "tools/kpictl/render.h"
#include "tools/kpictl/report.h"
#include "tools/kpictl/table.h"

ABSL_FLAG(std::string, addr, "localhost:50051", "kpid's gRPC address (config grpc.listen).");
ABSL_FLAG(std::string, format, "table", "Output: table, markdown, csv or json.");
ABSL_FLAG(std::string, timeout, "10s", "Give up on kpid after this long.");
ABSL_FLAG(std::string, process, "", "Only this process (default: all).");
ABSL_FLAG(std::vector<std::string>, window, {},
          "snapshot: windows, comma-separated, each a configured one (default: all).");
ABSL_FLAG(std::string, offset, "0s", "snapshot: windows end this long before now.");
ABSL_FLAG(std::vector<std::string>, dim, {},
          "Dimension filter, comma-separated name=value pairs (e.g. region=emea).");
ABSL_FLAG(bool, local, false,
          "snapshot, report weekly: ask only the replica at --addr (its partitions) instead of "
          "every replica of the consumer group.");
ABSL_FLAG(bool, all, false, "alerts: include inactive alert instances.");
ABSL_FLAG(bool, breaching, false, "cases: list the open cases past their stage SLA.");
ABSL_FLAG(std::string, stage, "", "cases: only this stage (with --process).");
ABSL_FLAG(int, limit, 0, "cases: at most this many (default 100).");
ABSL_FLAG(std::string, threshold, "10%",
          "report weekly: flag KPIs that moved more than this (10% or 0.1).");
ABSL_FLAG(int, top, 10, "report weekly: how many breaching cases to list.");
ABSL_FLAG(bool, tls, false,
          "Connect over TLS, trusting the system's CAs (implied by any other --tls-* flag).");
ABSL_FLAG(std::string, tls_ca, "", "TLS: PEM file of the CA(s) kpid's certificate must chain to.");
ABSL_FLAG(std::string, tls_cert, "",
          "TLS: PEM client certificate, for kpid with grpc.tls.client_ca_file (with --tls-key).");
ABSL_FLAG(std::string, tls_key, "", "TLS: PEM private key of --tls-cert.");
ABSL_FLAG(std::string, tls_server_name, "",
          "TLS: the name kpid's certificate must carry (default: the host of --addr).");

namespace kpid::kpictl {
namespace {

constexpr const char kUsage[] = R"(kpictl: kpid's command-line client.

Usage:
  kpictl snapshot [--process P] [--window 1h,7d] [--offset 7d] [--dim region=emea] [--local]
  kpictl alerts [--process P] [--all]
  kpictl cases --breaching [--process P] [--stage S] [--limit N]
  kpictl report weekly [--process P] [--threshold 10%] [--top N] [--dim k=v] [--local]

snapshot and report weekly cover every replica of kpid's consumer group (kpid asks its
peers); --local asks only the replica at --addr. A partial answer says which replicas
did not answer.
Common flags: --addr host:port (default localhost:50051), --format table|markdown|csv|json,
--timeout 10s. TLS (kpid's grpc.tls): --tls-ca FILE, --tls-cert FILE --tls-key FILE (mutual
TLS), --tls-server-name NAME, or --tls alone for a certificate from a CA the system trusts.
Exit status: 0 ok, 1 kpid unreachable or refused the request, 2 usage.)";

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNIMPLEMENTED:
      return "unimplemented";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "resource exhausted";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "failed precondition";
    case grpc::StatusCode::CANCELLED:
      return "cancelled";
    case grpc::StatusCode::INTERNAL:
      return "internal error";
    default:
      return "error";
  }
}

// A failed call, in one line: what went wrong and where.
int CallFailed(const std::string& what, const grpc::Status& status) {
  std::string message = absl::StrReplaceAll(status.error_message(), {{"\n", " "}});
  const std::string addr = absl::GetFlag(FLAGS_addr);
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      std::cerr << "kpictl: cannot reach kpid at " << addr << ": " << message << "\n";
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      std::cerr << "kpictl: kpid at " << addr << " did not answer " << what << " within "
                << absl::GetFlag(FLAGS_timeout) << "\n";
      break;
    case grpc::StatusCode::INVALID_ARGUMENT:
      std::cerr << "kpictl: " << what << ": " << message << "\n";
      break;
    default:
      std::cerr << "kpictl: " << what << ": " << CodeName(status.error_code()) << " (code "
                << status.error_code() << "): " << message << "\n";
  }
  return 1;
}

int Usage(const std::string& message) {
  std::cerr << "kpictl: " << message << "\n\n" << kUsage << "\n";
  return 2;
}

// The channel the --tls* flags ask for: plaintext without any of them.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& addr) {
  const std::string ca = absl::GetFlag(FLAGS_tls_ca);
  const std::string cert = absl::GetFlag(FLAGS_tls_cert);
  const std::string key = absl::GetFlag(FLAGS_tls_key);
  const std::string server_name = absl::GetFlag(FLAGS_tls_server_name);
  if (!absl::GetFlag(FLAGS_tls) && ca.empty() && cert.empty() && key.empty() &&
      server_name.empty()) {
    return grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
  }
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  grpc::SslCredentialsOptions ssl;
  for (auto [flag, file, pem] : {std::tuple{"--tls-ca", &ca, &ssl.pem_root_certs},
                                 std::tuple{"--tls-cert", &cert, &ssl.pem_cert_chain},
                                 std::tuple{"--tls-key", &key, &ssl.pem_private_key}}) {
    if (file->empty()) continue;
    absl::StatusOr<std::string> text = ReadFile(*file);
    if (!text.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(flag, ": ", text.status().message()));
    }
    *pem = *std::move(text);
  }
  grpc::ChannelArguments args;
  if (!server_name.empty()) args.SetSslTargetNameOverride(server_name);
  return grpc::CreateCustomChannel(addr, grpc::SslCredentials(ssl), args);
}

class Client {
 public:
  Client(std::shared_ptr<grpc::Channel> channel, absl::Duration timeout)
      : stub_(v1::KpiService::NewStub(std::move(channel))), timeout_(timeout) {}

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    return context;
  }
  v1::KpiService::Stub& stub() { return *stub_; }

 private:
  std::unique_ptr<v1::KpiService::Stub> stub_;
  absl::Duration timeout_;
};

absl::StatusOr<absl::Duration> DurationFlag(const std::string& name, const std::string& text) {
  absl::StatusOr<absl::Duration> d = ParsePromDuration(text);
  if (!d.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, ": ", d.status().message()));
  }
  return d;
}

absl::Status FillDims(google::protobuf::Map<std::string, std::string>* dims) {
  for (const std::string& pair : absl::GetFlag(FLAGS_dim)) {
    std::vector<std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[0].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--dim: \"", pair, "\" is not name=value"));
    }
    (*dims)[kv[0]] = kv[1];
  }
  return absl::OkStatus();
}

absl::StatusOr<double> ThresholdFlag() {
  const std::string flag = absl::GetFlag(FLAGS_threshold);
  absl::string_view text = flag;
  const bool percent = absl::ConsumeSuffix(&text, "%");
  double v = 0;
  if (!absl::SimpleAtod(text, &v) || v < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--threshold: \"", flag, "\" is not a percentage (10%) or ratio (0.1)"));
  }
  return percent ? v / 100 : v;
}

void Print(const Document& doc, const Table& csv, const google::protobuf::Message& message,
           Format format) {
  switch (format) {
    case Format::kJson:
      std::cout << ToJson(message);
      break;
    case Format::kCsv:
      std::cout << RenderTable(csv, format);
      break;
    default:
      std::cout << RenderDocument(doc, format);
  }
}

void PrintTable(const Table& table, const google::protobuf::Message& message, Format format) {
  if (format == Format::kJson) {
    std::cout << ToJson(message);
  } else {
    std::cout << RenderTable(table, format);
  }
}

// Every replica's partitions (kpid fans out to its peers), unless --local.
v1::Scope ScopeFlag() { return absl::GetFlag(FLAGS_local) ? v1::SCOPE_LOCAL : v1::SCOPE_GLOBAL; }

int Snapshot(Client& client, Format format) {
  v1::GetSnapshotRequest request;
  request.set_scope(ScopeFlag());
  request.set_process(absl::GetFlag(FLAGS_process));
  for (const std::string& w : absl::GetFlag(FLAGS_window)) {
    absl::StatusOr<absl::Duration> d = DurationFlag("window", w);
    if (!d.ok()) return Usage(std::string(d.status().message()));
    api::ToProto(*d, request.add_windows());
  }
  absl::StatusOr<absl::Duration> offset = DurationFlag("offset", absl::GetFlag(FLAGS_offset));
  if (!offset.ok()) return Usage(std::string(offset.status().message()));
  api::ToProto(*offset, request.mutable_offset());
  if (absl::Status s = FillDims(request.mutable_dimensions()); !s.ok()) {
    return Usage(std::string(s.message()));
  }
  v1::Snapshot snapshot;
  grpc::Status status = client.stub().GetSnapshot(client.Context().get(), request, &snapshot);
  if (!status.ok()) return CallFailed("snapshot", status);
  Print(SnapshotDocument(snapshot), SnapshotCsv(snapshot), snapshot, format);
  return 0;
}

int Alerts(Client& client, Format format) {
  v1::ListAlertsRequest request;
  request.set_process(absl::GetFlag(FLAGS_process));
  request.set_include_inactive(absl::GetFlag(FLAGS_all));
  v1::ListAlertsResponse response;
  grpc::Status status = client.stub().ListAlerts(client.Context().get(), request, &response);
  if (!status.ok()) return CallFailed("alerts", status);
  PrintTable(AlertsTable(response, format == Format::kCsv), response, format);
  return 0;
}

int Cases(Client& client, Format format) {
  if (!absl::GetFlag(FLAGS_breaching)) {
    return Usage("cases: only --breaching is supported (open cases past their stage SLA)");
  }
  v1::ListBreachingCasesRequest request;
  request.set_process(absl::GetFlag(FLAGS_process));
  request.set_stage(absl::GetFlag(FLAGS_stage));
  request.set_limit(absl::GetFlag(FLAGS_limit));
  v1::ListBreachingCasesResponse response;
  grpc::Status status =
      client.stub().ListBreachingCases(client.Context().get(), request, &response);
  if (!status.ok()) return CallFailed("cases", status);
  PrintTable(CasesTable(response, format == Format::kCsv), response, format);
  return 0;
}

int ReportWeekly(Client& client, Format format) {
  absl::StatusOr<double> threshold = ThresholdFlag();
  if (!threshold.ok()) return Usage(std::string(threshold.status().message()));
  v1::GetSnapshotRequest request;
  request.set_scope(ScopeFlag());
  request.set_process(absl::GetFlag(FLAGS_process));
  api::ToProto(absl::Hours(24 * 7), request.add_windows());
  if (absl::Status s = FillDims(request.mutable_dimensions()); !s.ok()) {
    return Usage(std::string(s.message()));
  }
  v1::Snapshot current;
  grpc::Status status = client.stub().GetSnapshot(client.Context().get(), request, &current);
  if (!status.ok()) return CallFailed("report weekly (last 7d)", status);
  // The second call's "now" is a few milliseconds later with a wall clock:
  // far below the 7d window's 168-minute buckets.
  api::ToProto(absl::Hours(24 * 7), request.mutable_offset());
  v1::Snapshot previous;
  status = client.stub().GetSnapshot(client.Context().get(), request, &previous);
  if (!status.ok()) return CallFailed("report weekly (7d before)", status);

  WeeklyInputs inputs;
  inputs.current = &current;
  inputs.previous = &previous;
  inputs.threshold = *threshold;
  v1::ListBreachingCasesRequest cases_request;
  cases_request.set_process(absl::GetFlag(FLAGS_process));
  cases_request.set_limit(absl::GetFlag(FLAGS_top));
  v1::ListBreachingCasesResponse cases;
  status = client.stub().ListBreachingCases(client.Context().get(), cases_request, &cases);
  if (status.ok()) {
    inputs.breaching = &cases;
  } else {
    inputs.breaching_unavailable = status.error_message();
  }
  absl::StatusOr<WeeklyReport> report = BuildWeeklyReport(inputs);
  if (!report.ok()) {
    std::cerr << "kpictl: report weekly: " << report.status().message() << "\n";
    return 1;
  }
  Print(ReportDocument(*report), ReportCsv(*report), *report, format);
  return 0;
}

int Main(int argc, char** argv) {
  // --help prints "kpictl: " before the message itself.
  absl::SetProgramUsageMessage(absl::StripPrefix(kUsage, "kpictl: "));
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "kpictl/main.cc");
  };
  absl::SetFlagsUsageConfig(usage_config);
  std::vector<std::string> storage;
  std::vector<char*> normalized = NormalizeFlagArgs(argc, argv, &storage);
  std::vector<char*> args =
      absl::ParseCommandLine(static_cast<int>(normalized.size()), normalized.data());
  std::vector<std::string> command(args.begin() + 1, args.end());
  if (command.empty()) return Usage("a command is required");

  absl::StatusOr<Format> format = ParseFormat(absl::GetFlag(FLAGS_format));
  if (!format.ok()) return Usage(std::string(format.status().message()));
  absl::StatusOr<absl::Duration> timeout = DurationFlag("timeout", absl::GetFlag(FLAGS_timeout));
  if (!timeout.ok()) return Usage(std::string(timeout.status().message()));
  if (absl::GetFlag(FLAGS_top) < 0 || absl::GetFlag(FLAGS_limit) < 0) {
    return Usage("--top and --limit must not be negative");
  }

  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(absl::GetFlag(FLAGS_addr));
  if (!channel.ok()) return Usage(std::string(channel.status().message()));
  Client client(*std::move(channel), *timeout);
  const std::string& verb = command[0];
  if (verb == "snapshot" && command.size() == 1) return Snapshot(client, *format);
  if (verb == "alerts" && command.size() == 1) return Alerts(client, *format);
  if (verb == "cases" && command.size() == 1) return Cases(client, *format);
  if (verb == "report" && command.size() == 2 && command[1] == "weekly") {
    return ReportWeekly(client, *format);
  }
  return Usage(absl::StrCat("unknown command \"", absl::StrJoin(command, " "), "\""));
}

}  // namespace
}  // namespace kpid::kpictl

int main(int argc, char** argv) { return kpid::kpictl::Main(argc, argv); }

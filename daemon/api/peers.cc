#include "daemon/api/peers.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "daemon/api/proto_time.h"
#include "daemon/common/log.h"
#include "daemon/export/metric_builder.h"
#include "grpcpp/client_context.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/channel_arguments.h"
#include "kpid/v1/kpi_service.grpc.pb.h"

namespace kpid::api {
namespace {

std::string ReplicaOf(const v1::Snapshot& s) {
  return s.replicas().empty() ? std::string() : s.replicas(0).replica();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ResolveHostPort(const std::string& name_port) {
  const size_t colon = name_port.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("\"", name_port, "\" is not name:port"));
  }
  const std::string name = name_port.substr(0, colon);
  const std::string port = name_port.substr(colon + 1);
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(name.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("resolving \"", name_port, "\": ", gai_strerror(rc)));
  }
  std::vector<std::string> addresses;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char host[NI_MAXHOST] = {};
    if (getnameinfo(a->ai_addr, a->ai_addrlen, host, sizeof(host), nullptr, 0, NI_NUMERICHOST) !=
        0) {
      continue;
    }
    addresses.push_back(a->ai_family == AF_INET6 ? absl::StrCat("[", host, "]:", port)
                                                 : absl::StrCat(host, ":", port));
  }
  freeaddrinfo(found);
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  return addresses;
}

PeerDirectory::PeerDirectory(Options options) : options_(std::move(options)) {
  if (!options_.config.dns.empty()) refresher_ = std::thread([this] { Refresh(); });
}

PeerDirectory::~PeerDirectory() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  stop_cv_.SignalAll();
  if (refresher_.joinable()) refresher_.join();
}

void PeerDirectory::Refresh() {
  const Resolver resolve = options_.resolve ? options_.resolve : ResolveHostPort;
  while (true) {
    absl::StatusOr<std::vector<std::string>> found = resolve(options_.config.dns);
    MutexLock lock(&mu_);
    if (found.ok()) {
      resolved_ = *std::move(found);
    } else {
      log::Warn("peers.dns not resolved; keeping the last peers",
                {{"dns", options_.config.dns}, {"error", found.status().ToString()}});
    }
    const absl::Time next = absl::Now() + options_.config.refresh_interval;
    while (!stop_ && !stop_cv_.WaitWithDeadline(&mu_, next)) {
    }
    if (stop_) return;
  }
}

std::vector<std::string> PeerDirectory::Addresses() const {
  std::vector<std::string> addresses = options_.config.addresses;
  MutexLock lock(&mu_);
  addresses.insert(addresses.end(), resolved_.begin(), resolved_.end());
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  // A loop, not erase_if: -Wthread-safety analyses a lambda apart from the
  // lock held around it.
  std::vector<std::string> others;
  for (std::string& a : addresses) {
    if (a != options_.self_listen && self_.count(a) == 0) others.push_back(std::move(a));
  }
  return others;
}

void PeerDirectory::MarkSelf(const std::string& address) {
  MutexLock lock(&mu_);
  self_.insert(address);
}

GlobalSnapshots::GlobalSnapshots(Options options) : options_(std::move(options)) {}

std::shared_ptr<grpc::Channel> GlobalSnapshots::ChannelTo(const std::string& address) {
  MutexLock lock(&mu_);
  std::shared_ptr<grpc::Channel>& channel = channels_[address];
  if (channel == nullptr) {
    grpc::ChannelArguments arguments;
    if (options_.credentials != nullptr && !options_.tls_server_name.empty()) {
      arguments.SetSslTargetNameOverride(options_.tls_server_name);
    }
    channel = grpc::CreateCustomChannel(
        address,
        options_.credentials != nullptr ? options_.credentials : grpc::InsecureChannelCredentials(),
        arguments);
  }
  return channel;
}

void GlobalSnapshots::Record(bool ok, absl::Duration took) {
  const double seconds = absl::ToDoubleSeconds(took);
  int bucket = 0;
  while (bucket < kBuckets && seconds > kBounds[bucket]) ++bucket;
  MutexLock lock(&mu_);
  ++(ok ? ok_ : errors_);
  ++buckets_[bucket];
  seconds_sum_ += seconds;
}

std::vector<GlobalSnapshots::Outcome> GlobalSnapshots::FanOut(
    const std::vector<std::string>& addresses, const v1::GetSnapshotRequest& request,
    absl::Time deadline, const std::function<void()>& meanwhile) {
  struct Call {
    std::string address;
    grpc::ClientContext context;
    v1::Snapshot response;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<v1::Snapshot>> reader;
    absl::Time started;
    absl::Duration took;
  };
  grpc::CompletionQueue queue;
  std::vector<std::unique_ptr<Call>> calls;
  const absl::Time started = absl::Now();
  const absl::Time call_deadline = std::min(deadline, started + options_.config()->peers.timeout);
  for (const std::string& address : addresses) {
    auto call = std::make_unique<Call>();
    call->address = address;
    call->started = started;
    call->context.set_deadline(absl::ToChronoTime(call_deadline));
    auto stub = v1::KpiService::NewStub(ChannelTo(address));
    call->reader = stub->PrepareAsyncGetSnapshot(&call->context, request, &queue);
    call->reader->StartCall();
    call->reader->Finish(&call->response, &call->status, call.get());
    calls.push_back(std::move(call));
  }
  meanwhile();
  // Every call completes by its deadline, so this waits at most until then.
  for (size_t done = 0; done < calls.size(); ++done) {
    void* tag = nullptr;
    bool ok = false;
    if (!queue.Next(&tag, &ok)) break;
    static_cast<Call*>(tag)->took = absl::Now() - static_cast<Call*>(tag)->started;
  }
  queue.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (queue.Next(&tag, &ok)) {
  }

  std::vector<Outcome> outcomes;
  for (std::unique_ptr<Call>& call : calls) {
    Record(call->status.ok(), call->took);
    Outcome& o = outcomes.emplace_back(Outcome{call->address, absl::UnknownError("")});
    if (call->status.ok()) {
      o.snapshot = std::move(call->response);
    } else {
      o.snapshot = absl::Status(static_cast<absl::StatusCode>(call->status.error_code()),
                                call->status.error_message());
    }
  }
  return outcomes;
}

absl::StatusOr<v1::Snapshot> GlobalSnapshots::Read(const v1::GetSnapshotRequest& request,
                                                   absl::Time deadline, const LocalRead& local) {
  v1::GetSnapshotRequest peer_request = request;
  peer_request.set_scope(v1::SCOPE_LOCAL);
  peer_request.set_include_merge_inputs(true);
  std::vector<std::string> addresses = options_.peers->Addresses();
  std::vector<ReplicaAnswer> failed;
  std::string self;

  // Answers from this replica itself (reached through a peer address) are
  // dropped and the address remembered; the merge also skips duplicates.
  const auto keep = [&](std::vector<Outcome>* outcomes) {
    std::vector<std::string> answered;
    for (Outcome& o : *outcomes) {
      if (o.snapshot.ok() && ReplicaOf(*o.snapshot) == self) {
        options_.peers->MarkSelf(o.address);
      } else if (!o.snapshot.ok()) {
        failed.push_back({o.address, o.snapshot.status()});
      } else {
        answered.push_back(o.address);
      }
    }
    return answered;
  };

  if (!request.has_as_of()) {
    // Round 1 (clock: event only): every replica's latest event time.
    v1::GetSnapshotRequest clock = peer_request;
    clock.set_clock_only(true);
    absl::StatusOr<v1::Snapshot> own = local(clock);
    if (!own.ok()) return own.status();
    self = ReplicaOf(*own);
    absl::Time as_of = FromProto(own->as_of());
    if (options_.config()->clock == model::ClockMode::kEvent && !addresses.empty()) {
      std::vector<Outcome> outcomes = FanOut(addresses, clock, deadline, [] {});
      for (const Outcome& o : outcomes) {
        if (o.snapshot.ok() && ReplicaOf(*o.snapshot) != self) {
          as_of = std::max(as_of, FromProto(o.snapshot->as_of()));
        }
      }
      addresses = keep(&outcomes);
    }
    ToProto(as_of, peer_request.mutable_as_of());
  }

  // Round 2: every replica reads the same buckets.
  absl::StatusOr<v1::Snapshot> own = absl::UnknownError("not read");
  std::vector<Outcome> outcomes =
      FanOut(addresses, peer_request, deadline, [&] { own = local(peer_request); });
  if (!own.ok()) return own.status();
  if (self.empty()) self = ReplicaOf(*own);
  addresses = keep(&outcomes);

  std::vector<ReplicaAnswer> answers;
  answers.push_back({"", *std::move(own)});
  for (Outcome& o : outcomes) {
    if (o.snapshot.ok() && ReplicaOf(*o.snapshot) != self) {
      answers.push_back({o.address, std::move(o.snapshot)});
    }
  }
  for (ReplicaAnswer& f : failed) answers.push_back(std::move(f));
  return MergeSnapshots(*options_.config(), request, answers, options_.kpi_tree);
}

std::vector<prometheus::MetricFamily> GlobalSnapshots::Collect() const {
  using exporter::AddCounter;
  using exporter::Family;
  MutexLock lock(&mu_);
  prometheus::MetricFamily requests =
      Family("kpid_peer_requests_total",
             "GetSnapshot calls this replica made to its peers for global snapshots, by result.",
             prometheus::MetricType::Counter);
  AddCounter(&requests, {{"result", "ok"}}, static_cast<double>(ok_));
  AddCounter(&requests, {{"result", "error"}}, static_cast<double>(errors_));
  prometheus::MetricFamily duration =
      Family("kpid_peer_request_duration_seconds",
             "Time from sending a peer GetSnapshot call to its answer or failure.",
             prometheus::MetricType::Histogram);
  prometheus::ClientMetric metric;
  uint64_t cumulative = 0;
  for (int b = 0; b <= kBuckets; ++b) {
    cumulative += buckets_[b];
    prometheus::ClientMetric::Bucket bucket;
    bucket.cumulative_count = cumulative;
    bucket.upper_bound = b < kBuckets ? kBounds[b] : std::numeric_limits<double>::infinity();
    metric.histogram.bucket.push_back(bucket);
  }
  metric.histogram.sample_count = cumulative;
  metric.histogram.sample_sum = seconds_sum_;
  duration.metric.push_back(std::move(metric));
  return {std::move(requests), std::move(duration)};
}

}  // namespace kpid::api

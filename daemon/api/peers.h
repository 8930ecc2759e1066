// The global view (issue 8): a SCOPE_GLOBAL GetSnapshot on any replica asks
// every peer of the consumer group for its local answer and merges them
// exactly (daemon/api/snapshot_merge.h).
//
//   PeerDirectory peers({.config = config.peers, .self_listen = config.grpc_listen});
//   GlobalSnapshots global({.peers = &peers, .credentials = creds, ...});
//   absl::StatusOr<v1::Snapshot> s = global.Read(request, deadline, local_read);
//
// One end for all: every replica must read the same buckets, so the
// coordinator pins as_of on the peers' requests. With `clock: wall` it is
// the coordinator's clock (replicas differ by clock skew only). With `clock:
// event` each replica's "now" is the latest event time of its own
// partitions, so a first, cheap round (clock_only: no shard is read) learns
// every replica's and the answer ends at the latest of them: the time the
// whole topic has reached, which is what a single replica owning every
// partition would call now. Ending at the coordinator's own event time
// instead would leave out the other partitions' newest events, and which
// ones would depend on the replica asked.
//
// Calls run concurrently (one completion queue) with the local read; each
// peer call ends by min(the caller's deadline, now + peers.timeout). A peer
// that fails in either round is listed in Snapshot.replicas with its error
// and the answer is partial. Peers are asked with scope LOCAL, so a peer
// never fans out in turn.
//
// Thread safety: PeerDirectory and GlobalSnapshots are thread-safe. The DNS
// refresh runs on PeerDirectory's own thread, never on the request path.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/api/snapshot_merge.h"
#include "daemon/common/mutex.h"
#include "daemon/model/config.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "kpid/v1/kpi_service.pb.h"
#include "prometheus/collectable.h"

namespace kpid::api {

// "name:port" -> "ip:port" for every A/AAAA record (IPv6 as "[ip]:port"),
// sorted, via getaddrinfo.
absl::StatusOr<std::vector<std::string>> ResolveHostPort(const std::string& name_port);

class PeerDirectory {
 public:
  using Resolver = std::function<absl::StatusOr<std::vector<std::string>>(const std::string&)>;
  struct Options {
    model::PeersConfig config;
    // This replica's grpc.listen: never a peer.
    std::string self_listen;
    // Empty: ResolveHostPort. A parameter for tests.
    Resolver resolve = nullptr;
  };

  // With config.dns, starts the refresh thread, which resolves at once and
  // then every refresh_interval; a failed resolution keeps the last result.
  explicit PeerDirectory(Options options);
  ~PeerDirectory();  // stops the refresh thread
  PeerDirectory(const PeerDirectory&) = delete;
  PeerDirectory& operator=(const PeerDirectory&) = delete;

  // The static addresses and the last resolved ones, without this replica's
  // (its listen address, and addresses that answered as this replica).
  std::vector<std::string> Addresses() const;
  // `address` answered with this replica's replica_id: skip it from now on.
  void MarkSelf(const std::string& address);

 private:
  void Refresh();

  const Options options_;
  mutable Mutex mu_;
  CondVar stop_cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> resolved_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> self_ ABSL_GUARDED_BY(mu_);
  std::thread refresher_;
};

class GlobalSnapshots final : public prometheus::Collectable {
 public:
  // This replica's own answer to a (LOCAL) request.
  using LocalRead = std::function<absl::StatusOr<v1::Snapshot>(const v1::GetSnapshotRequest&)>;

  struct Options {
    // The config the engines are shaped by now (a reload may change
    // processes and stages; peers, timeouts and the clock need a restart).
    std::function<std::shared_ptr<const model::Config>()> config;
    PeerDirectory* peers = nullptr;
    // Null: insecure channels.
    std::shared_ptr<grpc::ChannelCredentials> credentials;
    // With credentials: the name every peer's certificate is checked
    // against; empty: the host of the address dialled.
    std::string tls_server_name;
    WindowKpiTree kpi_tree;
  };

  explicit GlobalSnapshots(Options options);

  // The global snapshot of `request` (its scope is ignored): at most one
  // clock round and one read round, each bounded by min(deadline, now +
  // peers.timeout). Fails only when the local read fails.
  absl::StatusOr<v1::Snapshot> Read(const v1::GetSnapshotRequest& request, absl::Time deadline,
                                    const LocalRead& local);

  // kpid_peer_requests_total{result="ok"|"error"},
  // kpid_peer_request_duration_seconds.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  struct Outcome {
    std::string address;
    absl::StatusOr<v1::Snapshot> snapshot;
  };
  // Asks every address concurrently with `request` while `local` reads.
  std::vector<Outcome> FanOut(const std::vector<std::string>& addresses,
                              const v1::GetSnapshotRequest& request, absl::Time deadline,
                              const std::function<void()>& meanwhile);
  std::shared_ptr<grpc::Channel> ChannelTo(const std::string& address);
  void Record(bool ok, absl::Duration took);

  static constexpr int kBuckets = 10;
  static constexpr double kBounds[kBuckets] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

  const Options options_;
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
  uint64_t ok_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t errors_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t buckets_[kBuckets + 1] ABSL_GUARDED_BY(mu_) = {};  // not cumulative; last: +Inf
  double seconds_sum_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kpid::api

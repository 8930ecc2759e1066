#include "daemon/api/peers.h"

#include <atomic>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kpid::api {
namespace {

using ::testing::ElementsAre;

bool WaitFor(const std::function<bool()>& condition) {
  for (int i = 0; i < 200 && !condition(); ++i) absl::SleepFor(absl::Milliseconds(10));
  return condition();
}

TEST(PeerDirectoryTest, StaticAndResolvedPeersWithoutThisReplica) {
  std::atomic<int> resolutions{0};
  PeerDirectory peers({
      .config = {.addresses = {"10.0.0.9:50051", "10.0.0.1:50051"},
                 .dns = "kpid-peers:50051",
                 .refresh_interval = absl::Seconds(1),
                 .tls = {}},
      .self_listen = "10.0.0.1:50051",
      .resolve = [&](const std::string& name) -> absl::StatusOr<std::vector<std::string>> {
        EXPECT_EQ(name, "kpid-peers:50051");
        if (resolutions++ > 0) return absl::UnavailableError("dns down");
        return std::vector<std::string>{"10.0.0.2:50051", "10.0.0.9:50051"};
      },
  });
  ASSERT_TRUE(WaitFor([&] { return peers.Addresses().size() == 2; }));
  // Sorted, the static and resolved 10.0.0.9 once, our own listen address out.
  EXPECT_THAT(peers.Addresses(), ElementsAre("10.0.0.2:50051", "10.0.0.9:50051"));
  // An address that answered as this replica is skipped from then on.
  peers.MarkSelf("10.0.0.2:50051");
  EXPECT_THAT(peers.Addresses(), ElementsAre("10.0.0.9:50051"));
  // A failed refresh keeps the last result.
  ASSERT_TRUE(WaitFor([&] { return resolutions >= 2; }));
  EXPECT_THAT(peers.Addresses(), ElementsAre("10.0.0.9:50051"));
}

TEST(ResolveHostPortTest, LoopbackAndErrors) {
  absl::StatusOr<std::vector<std::string>> found = ResolveHostPort("127.0.0.1:50051");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_THAT(*found, ElementsAre("127.0.0.1:50051"));
  EXPECT_FALSE(ResolveHostPort("no-port").ok());
  EXPECT_FALSE(ResolveHostPort("kpid-no-such-host.invalid:50051").ok());
}

}  // namespace
}  // namespace kpid::api

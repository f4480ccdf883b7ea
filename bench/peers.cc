#include "peers.h"

#include <utility>

#include "workloads.h"

namespace evh::bench {

// The one place that knows which peers this build has (bench/CMakeLists.txt defines the macros).
const std::vector<const PeerImpl*>& built_peers() {
  static const std::vector<const PeerImpl*> peers = [] {
    std::vector<const PeerImpl*> v;
#if EVH_BENCH_HAVE_LIBUV
    v.push_back(&libuv_peer());
#endif
#if EVH_BENCH_HAVE_ASIO
    v.push_back(&asio_peer());
#endif
#if EVH_BENCH_HAVE_LIBEVENT
    v.push_back(&libevent_peer());
#endif
    return v;
  }();
  return peers;
}

const PeerImpl* find_peer(std::string_view name) {
  for (const PeerImpl* p : built_peers()) {
    if (p->name == name) return p;
  }
  return nullptr;
}

std::vector<std::string> with_peers(std::vector<std::string> base) {
  for (const PeerImpl* p : built_peers()) base.emplace_back(p->name);
  return base;
}

const PeerImpl& peer(std::string_view impl) {
  const PeerImpl* p = find_peer(impl);
  if (p == nullptr) throw BenchError("no peer named " + std::string(impl) + " in this build");
  return *p;
}

}  // namespace evh::bench

// IsolateLife: the rarely used parts of an isolate's life, kept out of the isolate's four cache
// lines and created on first use — attached resources, exit and error listeners, pause
// capabilities and the IsolateMutexes the isolate holds.
#pragma once

#include <evh/isolate.h>

#include <mutex>
#include <vector>

namespace evh::detail {

class PortState;

struct IsolateLife {
  // The isolate's open ports other than its main port (timer port included), guarded by the
  // isolate's ports_lock_ (not `mu`): delivery to an extra port looks here.
  std::vector<PortState*> extra_ports;

  // Guards everything below except `held`. Taken by attach/detach (any thread) and by the exit
  // path, which calls each resource with it held so that detach() can wait out a running call.
  std::mutex mu;
  IsolateResource* resources = nullptr;  // intrusive list of attached resources
  bool exited = false;                   // the exit path has begun: attach() fails
};

}  // namespace evh::detail

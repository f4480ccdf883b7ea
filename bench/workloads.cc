#include "workloads.h"

#include <iterator>

namespace evh::bench {

const std::vector<Workload>& all_workloads() {
  // Built on first use rather than through static registrars, so the table order is the order
  // written here and not the link order.
  static const std::vector<Workload> workloads = [] {
    std::vector<Workload> all;
    for (auto part : {timer_workloads, messaging_workloads, scheduling_workloads, isolate_workloads,
                      fd_workloads, process_workloads, lua_workloads}) {
      auto some = part();
      all.insert(all.end(), std::make_move_iterator(some.begin()),
                 std::make_move_iterator(some.end()));
    }
    return all;
  }();
  return workloads;
}

const Workload* find_workload(std::string_view name) {
  for (const Workload& w : all_workloads()) {
    if (w.name == name) return &w;
  }
  return nullptr;
}

}  // namespace evh::bench

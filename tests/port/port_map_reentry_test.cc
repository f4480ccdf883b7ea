// A post by id and an embedder's runner that calls back into the runtime from its post().
#include <evh/runtime.h>
#include <evh/task_runner.h>
#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "port/port_map.h"
#include "test_util.h"

namespace evh {
namespace {

using test::expect_receive;
using test::ReleaseCounter;

// An embedder's runner (a "UI thread") whose post() first runs `on_post` once — code that calls
// back into the runtime — then queues the task for the test thread to run.
class ReentrantRunner final : public TaskRunner {
 public:
  std::function<void()> on_post;

  void post(Task& task) noexcept override {
    if (on_post) std::exchange(on_post, nullptr)();
    std::lock_guard lock(mu_);
    tasks_.push_back(&task);
  }
  // Runs what is queued, including what the runs queue.
  void run_all() {
    for (;;) {
      Task* t = nullptr;
      {
        std::lock_guard lock(mu_);
        if (tasks_.empty()) return;
        t = tasks_.front();
        tasks_.pop_front();
      }
      t->run();
    }
  }

 private:
  std::mutex mu_;
  std::deque<Task*> tasks_;
};

// Opens receivers until one's port is in the same port-map shard as `port`; the others stay
// open in `spare` (closing them would not matter, but keeps the ids from being reused).
Receiver receiver_in_shard_of(Runtime& rt, PortId port, std::vector<Receiver>& spare) {
  for (;;) {
    Receiver r = std::move(rt.open_receiver()).value();
    if (detail::PortMap::shard_of(r.id()) == detail::PortMap::shard_of(port)) return r;
    spare.push_back(std::move(r));
  }
}

// Issue 14, defect 7: Runtime::post held the port map's shard lock (read) across the whole
// enqueue, including the runner's post(). A runner that closed a port of the same shard there
// took the shard's write lock on the same thread and spun for ever, waiting for its own read
// lock to go. Now the runner is called once the lock is let go: the post succeeds, the port is
// closed, the message is delivered on the runner and its payload released exactly once.
TEST(PortMapReentry, RunnerPostClosingAPortOfTheSameShardDoesNotDeadlock) {
  ReleaseCounter c;
  ReentrantRunner runner;  // outlives the runtime's isolates: their last turns run here
  {
    Runtime rt;
    auto rx = rt.open_receiver();
    SendPort out = *rt.send_port(rx->id());
    auto iso = rt.spawn(make_handler([out](Isolate&, Message& m) {
                          (void)out.post(Message::u64(m.kind() == Message::Kind::native));
                        }),
                        IsolateOptions{.runner = &runner});
    ASSERT_TRUE(iso.ok());
    const PortId main = (*iso)->main_port();
    std::vector<Receiver> spare;
    std::optional<Receiver> neighbour = receiver_in_shard_of(rt, main, spare);
    const PortId neighbour_id = neighbour->id();
    std::optional<Receiver> opened;
    Status posted_from_runner = Errc::invalid_argument;
    runner.on_post = [&] {
      neighbour.reset();                                        // a write lock on the post's shard
      opened = std::move(rt.open_receiver()).value();           // a write lock on some shard
      posted_from_runner = rt.post(rx->id(), Message::u64(7));  // a read lock
    };
    ASSERT_TRUE(rt.post(main, c.make()).ok());  // before the fix: never returned
    EXPECT_TRUE(posted_from_runner.ok());
    EXPECT_TRUE(opened.has_value());
    EXPECT_EQ(rt.post(neighbour_id, c.make()).error(), Errc::unknown_port);
    EXPECT_EQ(c.finalized.load(), 1u);  // the failed post's payload, released by the post
    EXPECT_EQ(expect_receive(*rx).as_u64(), 7u);
    runner.run_all();
    EXPECT_EQ(expect_receive(*rx).as_u64(), 1u);  // delivered, as a native payload
    EXPECT_EQ(c.finalized.load(), 2u);            // released after the handler returned
    (*iso)->destroy();
    runner.run_all();
    rt.shutdown();
  }
  EXPECT_EQ(c.finalized.load(), 2u);
  EXPECT_EQ(c.taken.load(), 0u);
}

// The same with the runner killing the isolate it is handed, and posting to it again: the
// second post finds the isolate scheduled (nothing to hand over) and its payload is released
// with the dead isolate's queue — each payload exactly once, and nothing runs after the kill.
TEST(PortMapReentry, RunnerPostKillingItsIsolateReleasesEachPayloadOnce) {
  ReleaseCounter c;
  ReentrantRunner runner;
  {
    Runtime rt;
    int handled = 0;
    auto iso = rt.spawn(make_handler([&handled](Isolate&, Message&) { ++handled; }),
                        IsolateOptions{.runner = &runner});
    ASSERT_TRUE(iso.ok());
    const PortId main = (*iso)->main_port();
    Status second = Errc::invalid_argument;
    runner.on_post = [&] {
      second = rt.post(main, c.make());
      (*iso)->kill(KillPriority::immediate);
    };
    ASSERT_TRUE(rt.post(main, c.make()).ok());
    EXPECT_TRUE(second.ok());
    runner.run_all();
    EXPECT_EQ(handled, 0);
    EXPECT_EQ(rt.post(main, c.make()).error(), Errc::unknown_port);
    rt.shutdown();
  }
  EXPECT_EQ(c.finalized.load(), 3u);
  EXPECT_EQ(c.taken.load(), 0u);
}

}  // namespace
}  // namespace evh

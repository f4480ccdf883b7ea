// EventHandlerImpl: the I/O thread, its command queue, its registrations and its timeouts.
//
// Parts:
//   - the command path: any thread validates what it can (fd, file type, port) and pushes a
//     32-byte POD `Command` as an inline-bytes Message into an MPSC queue (no allocation);
//   - the wake-up protocol: `awake_` is true while the loop is awake or a wake-up is already on
//     its way. A sender pushes (seq_cst CAS on the queue's tail) and then loads `awake_`
//     (seq_cst); only a sender that finds it false and swaps it to true writes the eventfd. The
//     loop stores false (seq_cst) and then re-checks the queue's tail (seq_cst) before it sleeps.
//     In the single order of seq_cst operations one of the two sees the other, so a command is
//     never left unnoticed while the loop sleeps, and there is at most one eventfd write per
//     sleep — not one per command;
//   - the loop: wait → execute commands → dispatch this batch's readiness → expire deadlines →
//     re-arm the native timer if the earliest deadline changed. Commands run before the batch is
//     dispatched, and events are matched to registrations by a token with a generation, so a
//     close executed in this pass drops the readiness observed in the same batch;
//   - registrations: fd → FdEntry (one Registration, or several for a shared listening socket);
//   - deadlines: two DeadlineHeaps (port timeouts, accept back-offs) and one native timer armed
//     to the earlier of their tops.
//
// Threads: the public entry points are thread-safe; everything under "I/O thread" runs on the
// loop thread only (debug builds check it).
#pragma once

#include <evh/event_handler.h>
#include <evh/runtime.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/mpsc_queue.h"
#include "timer/deadline_heap.h"
#include "io/poller.h"

namespace evh::detail {

enum class CommandKind : std::uint8_t {
  add,
  modify,
  remove,
  close,
  tokens,
  backoff,
  set_timeout,
  clear_timeout,
  drop_port,  // the port has closed: end its registrations and its timeout, without notices
};

// What travels through the queue: plain bytes, copied into an inline Message.
struct Command {
  CommandKind kind = CommandKind::add;
  FdMode mode = FdMode::level;
  FdSharing sharing = FdSharing::exclusive;
  bool owned = false;  // add: FdOptions::owned
  std::int32_t fd = -1;
  FdEvents interest = FdEvents::none;
  std::uint32_t count = 0;  // add: the window; tokens: how many
  PortId port = PortId::none;
  std::int64_t deadline_ns = 0;
};
static_assert(sizeof(Command) <= Message::kInlineBytes);

class EventHandlerImpl {
 public:
  EventHandlerImpl(Runtime& runtime, std::unique_ptr<Poller> poller, EventHandlerOptions options);
  ~EventHandlerImpl();
  EventHandlerImpl(const EventHandlerImpl&) = delete;
  EventHandlerImpl& operator=(const EventHandlerImpl&) = delete;

  // Starts the I/O thread; the error when it cannot be created.
  Status start() noexcept;

  // Any thread.
  Status add_fd(int fd, PortId port, FdEvents interest, FdOptions options) noexcept;
  Status command(CommandKind kind, int fd, PortId port, FdEvents interest,
                 std::uint32_t count) noexcept;
  Result<int> accept(int listen_fd, PortId port) noexcept;
  Status set_timeout(PortId port, MonoTime deadline) noexcept;
  Status clear_timeout(PortId port) noexcept;
  // `port` has closed (its owner tells the handler): its registrations end without a notice,
  // owned fds are closed, its timeout is dropped.
  Status drop_port(PortId port) noexcept;
  void shutdown() noexcept;
  EventHandlerStats stats() const noexcept;
  const char* backend() const noexcept { return backend_; }

 private:
  struct Registration {
    PortId port = PortId::none;
    FdEvents interest = FdEvents::none;
    std::uint32_t window = 0;  // 0: unlimited
    std::uint32_t outstanding = 0;
    bool armed = true;  // false after a oneshot report, until modify

    bool has_room() const noexcept { return window == 0 || outstanding < window; }
  };
  struct FdEntry {
    int fd = -1;
    std::uint32_t generation = 0;
    FdMode mode = FdMode::level;
    FdSharing sharing = FdSharing::exclusive;
    std::vector<Registration> regs;
    std::size_t next = 0;  // round-robin cursor (shared fds)
    // What the kernel was last told: armed for `kernel_interest`, or parked.
    bool kernel_armed = true;
    FdEvents kernel_interest = FdEvents::none;
    bool backing_off = false;
    bool owned = false;  // closed by the handler when the entry ends
    std::chrono::nanoseconds backoff{0};
    MonoTime backoff_until{};

    std::uint64_t token() const noexcept {
      return (std::uint64_t{generation} << 32) | static_cast<std::uint32_t>(fd);
    }
  };

  Status submit(const Command& c) noexcept;
  // A command that names only a port (clear_timeout, drop_port).
  Status port_command(CommandKind kind, PortId port) noexcept;

  // I/O thread.
  void loop() noexcept;
  bool run_commands(std::uint32_t limit) noexcept;  // true when it stopped with more queued
  void execute(const Command& c) noexcept;
  void do_add(const Command& c) noexcept;
  void do_modify(const Command& c) noexcept;
  void do_end(const Command& c, IoNotice final_notice) noexcept;
  void do_tokens(const Command& c) noexcept;
  void do_backoff(const Command& c) noexcept;
  void dispatch(const PollEvent& event) noexcept;
  // Tells the kernel what the entry's registrations can take now; `force` re-arms even when
  // nothing changed (modify_fd's re-check of conditions that already hold).
  void sync_kernel(FdEntry& e, bool force = false) noexcept;
  void drop_entry(int fd) noexcept;
  // Removes the registration at `index` of `e` without a notice; ends the entry (closing an
  // owned fd) when it was the last. False when the entry is gone.
  bool remove_registration(FdEntry& e, std::size_t index) noexcept;
  void do_drop_port(PortId port) noexcept;
  void index_add(PortId port, int fd);
  void index_remove(PortId port, int fd) noexcept;
  void expire() noexcept;
  void update_timer() noexcept;
  void teardown() noexcept;
  bool post(PortId port, const IoEvent& event) noexcept;  // false: the port is gone
  void post_error(PortId port, int fd, int error) noexcept;
  Registration* find(FdEntry& e, PortId port) noexcept;
  void assert_loop_thread() const noexcept;

  Runtime& runtime_;
  std::unique_ptr<Poller> poller_;  // reset by shutdown(): that closes its fds
  const char* const backend_;
  const EventHandlerOptions options_;

  // Senders' side.
  MpscQueue queue_;
  std::atomic<bool> awake_{true};
  std::atomic<bool> stopping_{false};      // new commands are refused
  std::atomic<std::uint32_t> senders_{0};  // senders between their stopping_ check and push
  std::atomic<bool> stop_{false};          // the loop finishes after its next pass
  std::atomic<std::uint64_t> wakeup_writes_{0};

  // I/O thread's.
  std::unordered_map<int, FdEntry> fds_;
  // Which fds each port has registrations on: what drop_port ends.
  std::unordered_map<PortId, std::vector<int>> port_fds_;
  DeadlineHeap timeouts_;          // key: PortId
  DeadlineHeap backoffs_;          // key: fd
  std::optional<MonoTime> armed_;  // what the native timer is armed to
  std::uint32_t next_generation_ = 1;
  std::vector<PollEvent> events_;
  std::atomic<std::uint64_t> commands_{0};
  std::atomic<std::uint64_t> passes_{0};
  std::atomic<std::uint64_t> notifications_{0};
  std::atomic<std::uint64_t> timeouts_fired_{0};
  std::atomic<std::uint64_t> deadline_arms_{0};
  std::atomic<std::uint64_t> registrations_{0};

  std::mutex shutdown_mu_;  // serialises shutdown() callers
  bool shut_down_ = false;  // guarded by shutdown_mu_
  std::thread thread_;
  std::thread::id loop_id_;
};

// For tests: a handler over any poller (a fake one), started.
Result<std::unique_ptr<EventHandler>> make_event_handler(Runtime& runtime,
                                                         std::unique_ptr<Poller> poller,
                                                         EventHandlerOptions options = {});

}  // namespace evh::detail

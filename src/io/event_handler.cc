#include "io/event_handler.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "base/assert.h"
#include "io/epoll_poller.h"
#include "runtime/runtime_impl.h"
#include "sync/spin.h"

namespace evh {
namespace detail {
namespace {

constexpr FdEvents kInterestBits = FdEvents::readable | FdEvents::writable | FdEvents::read_closed;

std::error_code errno_code(int e) noexcept {
  return {e, std::generic_category()};
}

std::int64_t to_ns(MonoTime t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

MonoTime from_ns(std::int64_t ns) noexcept {
  return MonoTime(std::chrono::duration_cast<MonoClock::duration>(std::chrono::nanoseconds(ns)));
}

// The caller-side checks: what the sending thread can know without the I/O thread.
Status check_fd(int fd) noexcept {
  if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) return errno_code(EBADF);
  struct stat st;
  if (::fstat(fd, &st) != 0) return errno_code(errno);
  // epoll_ctl refuses regular files and directories with EPERM (they are always "ready").
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) return errno_code(EPERM);
  return {};
}

}  // namespace

EventHandlerImpl::EventHandlerImpl(Runtime& runtime, std::unique_ptr<Poller> poller,
                                   EventHandlerOptions options)
    : runtime_(runtime),
      poller_(std::move(poller)),
      backend_(poller_->name()),
      options_(options),
      events_(Poller::kMaxEvents) {}

EventHandlerImpl::~EventHandlerImpl() {
  shutdown();
}

Status EventHandlerImpl::start() noexcept {
  try {
    thread_ = std::thread([this] { loop(); });
  } catch (const std::system_error& e) {
    stopping_.store(true);
    return e.code();
  }
  pthread_setname_np(thread_.native_handle(), "evh-io");
  return {};
}

// ---- senders ----------------------------------------------------------------------------------

Status EventHandlerImpl::submit(const Command& c) noexcept {
  // seq_cst: pairs with shutdown()'s store of stopping_ and load of senders_: either this
  // sender sees stopping_, or shutdown sees it counted and waits for its push to finish.
  senders_.fetch_add(1, std::memory_order_seq_cst);
  if (stopping_.load(std::memory_order_seq_cst)) {
    senders_.fetch_sub(1, std::memory_order_release);
    return Errc::shutting_down;
  }
  queue_.push(Message::bytes(std::as_bytes(std::span<const Command, 1>(&c, 1))));
  // seq_cst load after the push's seq_cst CAS: pairs with the loop's store(false) then
  // has_claimed() before it sleeps (see the header). The plain load keeps the common case — the
  // loop is awake or already being woken — free of a read-modify-write on a shared line.
  if (!awake_.load(std::memory_order_seq_cst) &&
      !awake_.exchange(true, std::memory_order_seq_cst)) {
    wakeup_writes_.fetch_add(1, std::memory_order_relaxed);
    poller_->wake();
  }
  // release: pairs with shutdown()'s acquire load of senders_, so that the loop's final drain
  // (after stop_) sees this push complete.
  senders_.fetch_sub(1, std::memory_order_release);
  return {};
}

Status EventHandlerImpl::add_fd(int fd, PortId port, FdEvents interest,
                                FdOptions options) noexcept {
  if (auto s = check_fd(fd); !s) return s;
  if (any(interest & ~kInterestBits)) return Errc::invalid_argument;
  if (options.sharing == FdSharing::accept_round_robin && options.mode == FdMode::oneshot) {
    return Errc::invalid_argument;
  }
  if (port == PortId::none) return Errc::unknown_port;
  // The destination must exist now; if it closes later, the registration is dropped then (its
  // owner sends drop_port once it sees the mark this leaves on the port).
  if (auto s = runtime_.impl().note_io_port(port); !s) return s;
  Command c;
  c.kind = CommandKind::add;
  c.owned = options.owned;
  c.fd = fd;
  c.port = port;
  c.interest = interest;
  c.mode = options.sharing == FdSharing::accept_round_robin ? FdMode::level : options.mode;
  c.sharing = options.sharing;
  c.count = options.max_outstanding;
  if (c.count == 0 && (c.mode == FdMode::level || c.sharing != FdSharing::exclusive)) c.count = 1;
  return submit(c);
}

Status EventHandlerImpl::command(CommandKind kind, int fd, PortId port, FdEvents interest,
                                 std::uint32_t count) noexcept {
  if (fd < 0) return errno_code(EBADF);
  if (port == PortId::none) return Errc::unknown_port;
  if (any(interest & ~kInterestBits)) return Errc::invalid_argument;
  Command c;
  c.kind = kind;
  c.fd = fd;
  c.port = port;
  c.interest = interest;
  c.count = count;
  return submit(c);
}

Result<int> EventHandlerImpl::accept(int listen_fd, PortId port) noexcept {
  int fd;
  do {
    fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  } while (fd < 0 && errno == EINTR);
  if (fd >= 0) return fd;
  const int error = errno;
  if (error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM) {
    // The connection stays pending, so the listener stays readable: reporting it again at once
    // would be a busy loop. Park the registration for a while instead.
    (void)command(CommandKind::backoff, listen_fd, port, FdEvents::none, 0);
  }
  return errno_code(error);
}

Status EventHandlerImpl::set_timeout(PortId port, MonoTime deadline) noexcept {
  if (port == PortId::none) return Errc::unknown_port;
  Command c;
  c.kind = CommandKind::set_timeout;
  c.port = port;
  c.deadline_ns = to_ns(deadline);
  return submit(c);
}

Status EventHandlerImpl::port_command(CommandKind kind, PortId port) noexcept {
  if (port == PortId::none) return Errc::unknown_port;
  Command c;
  c.kind = kind;
  c.port = port;
  return submit(c);
}

Status EventHandlerImpl::drop_port(PortId port) noexcept {
  return port_command(CommandKind::drop_port, port);
}

Status EventHandlerImpl::clear_timeout(PortId port) noexcept {
  return port_command(CommandKind::clear_timeout, port);
}

void EventHandlerImpl::shutdown() noexcept {
  std::lock_guard serial(shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  stopping_.store(true, std::memory_order_seq_cst);
  // A sender counted here is between its stopping_ check and the end of its push: a few
  // instructions (a queue block install at worst), never a blocking call.
  Backoff backoff;
  while (senders_.load(std::memory_order_acquire) != 0) backoff.snooze();
  // release: pairs with the loop's acquire load; the loop then drains every command pushed.
  stop_.store(true, std::memory_order_release);
  if (thread_.joinable()) {
    poller_->wake();
    thread_.join();
  } else {
    // Never started: execute what was queued (nothing can have been) and end registrations.
    loop_id_ = std::this_thread::get_id();
    run_commands(~0u);
    teardown();
  }
  // Closes the epoll instance, the timerfd and the eventfd.
  poller_.reset();
}

EventHandlerStats EventHandlerImpl::stats() const noexcept {
  EventHandlerStats s;
  s.commands = commands_.load(std::memory_order_relaxed);
  s.wakeup_writes = wakeup_writes_.load(std::memory_order_relaxed);
  s.loop_passes = passes_.load(std::memory_order_relaxed);
  s.notifications = notifications_.load(std::memory_order_relaxed);
  s.timeouts = timeouts_fired_.load(std::memory_order_relaxed);
  s.deadline_arms = deadline_arms_.load(std::memory_order_relaxed);
  s.registrations = registrations_.load(std::memory_order_relaxed);
  return s;
}

// ---- the I/O thread ---------------------------------------------------------------------------

void EventHandlerImpl::assert_loop_thread() const noexcept {
  EVH_ASSERT(std::this_thread::get_id() == loop_id_, "loop-only method called off the I/O thread");
}

void EventHandlerImpl::loop() noexcept {
  loop_id_ = std::this_thread::get_id();
  bool more = false;
  for (;;) {
    update_timer();
    // seq_cst store, then seq_cst load of the queue's tail: see the header.
    awake_.store(false, std::memory_order_seq_cst);
    const bool block = !more && !queue_.has_claimed() && !stop_.load(std::memory_order_acquire);
    auto r = poller_->wait(events_, block ? PollBlock::yes : PollBlock::no);
    awake_.store(true, std::memory_order_relaxed);  // only saves senders a write
    passes_.fetch_add(1, std::memory_order_relaxed);
    more = run_commands(options_.commands_per_pass);
    // acquire: pairs with shutdown()'s release store; every command is then queued.
    if (stop_.load(std::memory_order_acquire)) break;
    if (!r) {
      // epoll_wait fails only on a programming error (EBADF, EFAULT, EINVAL); say so loudly
      // rather than spin on it.
      std::fprintf(stderr, "evh: event handler wait failed: %s\n", r.error().message().c_str());
      EVH_ASSERT(false, "poller wait failed");
      more = false;
      continue;
    }
    // Commands ran first, so a registration closed in this pass gets nothing from this batch:
    // its entry is gone, or its token's generation no longer matches.
    for (std::size_t i = 0; i < r->count; ++i) dispatch(events_[i]);
    if (r->deadline_reached) {
      armed_.reset();  // a fired timerfd is disarmed
      expire();
    }
  }
  run_commands(~0u);
  teardown();
}

bool EventHandlerImpl::run_commands(std::uint32_t limit) noexcept {
  Message m;
  for (std::uint32_t done = 0; done < limit; ++done) {
    PopResult r = queue_.pop(m);
    if (r == PopResult::pending) {
      // A sender has claimed the slot and is writing it: a few instructions.
      Backoff backoff;
      do {
        backoff.snooze();
        r = queue_.pop(m);
      } while (r == PopResult::pending);
    }
    if (r == PopResult::empty) return false;
    Command c;
    const auto bytes = m.data();
    EVH_ASSERT(bytes.size() == sizeof c, "a command is one Command");
    std::memcpy(&c, bytes.data(), sizeof c);
    execute(c);
    commands_.fetch_add(1, std::memory_order_relaxed);
  }
  return true;
}

void EventHandlerImpl::execute(const Command& c) noexcept {
  assert_loop_thread();
  switch (c.kind) {
    case CommandKind::add:
      do_add(c);
      break;
    case CommandKind::modify:
      do_modify(c);
      break;
    case CommandKind::remove:
      do_end(c, IoNotice::unregistered);
      break;
    case CommandKind::close:
      do_end(c, IoNotice::closed);
      break;
    case CommandKind::tokens:
      do_tokens(c);
      break;
    case CommandKind::backoff:
      do_backoff(c);
      break;
    case CommandKind::set_timeout:
      timeouts_.set(static_cast<std::uint64_t>(c.port), from_ns(c.deadline_ns));
      break;
    case CommandKind::clear_timeout:
      timeouts_.erase(static_cast<std::uint64_t>(c.port));
      break;
    case CommandKind::drop_port:
      do_drop_port(c.port);
      break;
  }
  registrations_.store(fds_.size(), std::memory_order_relaxed);
}

void EventHandlerImpl::teardown() noexcept {
  struct Ended {
    int fd;
    bool owned;
    std::vector<Registration> regs;
  };
  std::vector<Ended> ended;
  for (auto& [fd, e] : fds_) ended.push_back(Ended{fd, e.owned, std::move(e.regs)});
  port_fds_.clear();
  for (const auto& [fd, owned, regs] : ended) {
    drop_entry(fd);
    if (owned) ::close(fd);
    for (const auto& r : regs) {
      IoEvent ev;
      ev.notice = owned ? IoNotice::closed : IoNotice::unregistered;
      ev.fd = fd;
      (void)post(r.port, ev);
    }
  }
  while (!timeouts_.empty()) timeouts_.pop();
}

bool EventHandlerImpl::post(PortId port, const IoEvent& event) noexcept {
  const Status s = runtime_.post(port, to_message(event));
  if (s) {
    if (event.notice == IoNotice::ready) notifications_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  // shutting_down: the runtime is going away and will shut this handler down; the port is not
  // gone for good, so the registration stays until then.
  return s.error() == Errc::shutting_down;
}

void EventHandlerImpl::post_error(PortId port, int fd, int error) noexcept {
  IoEvent ev;
  ev.notice = IoNotice::error;
  ev.fd = fd;
  ev.error = error;
  (void)post(port, ev);
}

Result<std::unique_ptr<EventHandler>> make_event_handler(Runtime& runtime,
                                                         std::unique_ptr<Poller> poller,
                                                         EventHandlerOptions options) {
  if (options.commands_per_pass == 0) return Errc::invalid_argument;
  auto impl = std::make_unique<EventHandlerImpl>(runtime, std::move(poller), options);
  if (auto s = impl->start(); !s) return s.error();
  return std::make_unique<EventHandler>(std::move(impl));
}

}  // namespace detail

}  // namespace evh

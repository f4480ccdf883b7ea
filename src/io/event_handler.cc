#include "io/event_handler.h"

#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdio>

#include "base/assert.h"
#include "base/mono_time.h"
#include "sync/futex.h"

namespace evh::detail {
namespace {

constexpr FdEvents kInterestBits = FdEvents::readable | FdEvents::writable | FdEvents::read_closed;

// Only bits a caller may ask for. Not `any(interest & ~kInterestBits)`: FdEvents' operator~ keeps
// only the five public bits, so that would let a higher one — kChildExit, evh's own — through.
bool valid_interest(FdEvents interest) noexcept {
  return (static_cast<std::uint32_t>(interest) & ~static_cast<std::uint32_t>(kInterestBits)) == 0;
}

std::error_code errno_code(int e) noexcept {
  return {e, std::generic_category()};
}

}  // namespace

EventHandlerImpl::EventHandlerImpl(PortDirectory& ports, RuntimeClock clock,
                                   std::unique_ptr<Poller> poller, Sys& sys,
                                   EventHandlerOptions options)
    : poller_(std::move(poller)),
      sys_(sys),
      clock_(clock),
      backend_(poller_->name()),
      options_(options),
      delivery_(ports),
      channel_(*poller_),
      registrations_(*poller_, sys_, delivery_, timeouts_),
      events_(Poller::kMaxEvents) {}

EventHandlerImpl::~EventHandlerImpl() {
  shutdown();
}

Status EventHandlerImpl::start(DriverHost& host) noexcept {
  host_ = &host;
  if (clock_.manual()) {
    try {
      clock_.add_waiter(*this);
      clock_registered_.store(true, std::memory_order_release);
    } catch (const std::bad_alloc&) {
      host_ = nullptr;
      shutdown();
      return std::make_error_code(std::errc::not_enough_memory);
    }
  }
  host.attach_driver(*this);
  return {};
}

Status EventHandlerImpl::start() noexcept {
  try {
    thread_ = std::thread([this] { loop(); });
  } catch (const std::system_error& e) {
    channel_.close();
    return e.code();
  }
  pthread_setname_np(thread_.native_handle(), "evh-io");
  if (clock_.manual()) {
    try {
      clock_.add_waiter(*this);
      clock_registered_.store(true, std::memory_order_release);
    } catch (const std::bad_alloc&) {
      shutdown();
      return std::make_error_code(std::errc::not_enough_memory);
    }
  }
  return {};
}

void EventHandlerImpl::clock_moved() noexcept {
  if (host_ != nullptr) {
    // Driven by a pool: take the driver (waking a worker that waits in the poller, which then
    // gives it up) and run passes on this thread until every command queued before the move
    // has run and what the move made due has been posted. The pool's workers never wait for
    // the driver, so this wait always ends.
    if (stop_.load(std::memory_order_acquire)) return;
    lock_.lock(*poller_);
    while (!stop_.load(std::memory_order_acquire)) {
      drive(Poller::kNoWait);
      if (!more_) break;
    }
    lock_.unlock();
    host_->driver_released();
    return;
  }
  std::atomic<std::uint32_t> done{0};
  Command c;
  c.kind = CommandKind::clock_moved;
  c.done = &done;
  if (!channel_.submit(c)) return;  // shutting down: no timeout is posted any more
  // acquire: pairs with the loop's release store once it has expired what is due. The loop
  // never waits for a clock, so this wait always ends.
  while (done.load(std::memory_order_acquire) == 0)
    futex_wait(done, 0, std::chrono::nanoseconds(-1));
}

// ---- senders ----------------------------------------------------------------------------------

Status EventHandlerImpl::check_fd(int fd) noexcept {
  if (fd < 0) return errno_code(EBADF);
  int r;
  do {
    r = sys_.fcntl_getfd(fd);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return errno_code(EBADF);  // F_GETFD fails only for an fd that is not open
  struct stat st;
  do {
    r = sys_.fstat(fd, &st);
  } while (r < 0 && errno == EINTR);
  if (r != 0) return errno_code(errno);
  // epoll_ctl refuses regular files and directories with EPERM (they are always "ready").
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) return errno_code(EPERM);
  return {};
}

Status EventHandlerImpl::add_fd(int fd, PortId port, FdEvents interest,
                                FdOptions options) noexcept {
  if (auto s = check_fd(fd); !s) return s;
  if (!valid_interest(interest)) return Errc::invalid_argument;
  if (options.sharing == FdSharing::accept_round_robin && options.mode == FdMode::oneshot) {
    return Errc::invalid_argument;
  }
  if (port == PortId::none) return Errc::unknown_port;
  // The destination must exist now; if it closes later, the registration is dropped then (its
  // owner sends drop_port once it sees the mark this leaves on the port).
  if (auto s = delivery_.ports().note_io(port); !s) return s;
  Command c;
  c.kind = CommandKind::add;
  c.ownership = options.owned ? FdOwnership::owned : FdOwnership::borrowed;
  c.fd = fd;
  c.port = port;
  c.interest = interest;
  c.mode = options.sharing == FdSharing::accept_round_robin ? FdMode::level : options.mode;
  c.sharing = options.sharing;
  c.count = options.max_outstanding;
  if (c.count == 0 && (c.mode == FdMode::level || c.sharing != FdSharing::exclusive)) c.count = 1;
  return channel_.submit(c);
}

Status EventHandlerImpl::add_reader(int fd, PortId port, FdReader& reader, FdEvents interest,
                                    FdMode mode) noexcept {
  if (auto s = check_fd(fd); !s) return s;
  if (!valid_interest(interest)) return Errc::invalid_argument;
  if (port == PortId::none) return Errc::unknown_port;
  if (auto s = delivery_.ports().note_io(port); !s) return s;
  Command c;
  c.kind = CommandKind::add;
  c.fd = fd;
  c.port = port;
  c.interest = interest;
  c.mode = mode;
  c.reader = &reader;
  return channel_.submit(c);
}

Status EventHandlerImpl::watch_child_exit(int pidfd, PortId port, CommandKind kind) noexcept {
  EVH_ASSERT(kind == CommandKind::add || kind == CommandKind::modify, "add or modify");
  if (kind == CommandKind::add) {
    if (auto s = check_fd(pidfd); !s) return s;
  } else if (pidfd < 0) {
    return errno_code(EBADF);
  }
  if (port == PortId::none) return Errc::unknown_port;
  if (kind == CommandKind::add) {
    if (auto s = delivery_.ports().note_io(port); !s) return s;
  }
  Command c;
  c.kind = kind;
  c.fd = pidfd;
  c.port = port;
  c.interest = FdEvents::readable | kChildExit;
  c.mode = FdMode::oneshot;
  c.count = 0;  // oneshot: no window
  return channel_.submit(c);
}

Status EventHandlerImpl::command(CommandKind kind, int fd, PortId port, FdEvents interest,
                                 std::uint32_t count) noexcept {
  if (fd < 0) return errno_code(EBADF);
  if (port == PortId::none) return Errc::unknown_port;
  if (!valid_interest(interest)) return Errc::invalid_argument;
  Command c;
  c.kind = kind;
  c.fd = fd;
  c.port = port;
  c.interest = interest;
  c.count = count;
  return channel_.submit(c);
}

Result<int> EventHandlerImpl::accept(int listen_fd, PortId port) noexcept {
  int fd;
  do {
    fd = sys_.accept4(listen_fd, SOCK_CLOEXEC | SOCK_NONBLOCK);
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

Status EventHandlerImpl::set_timeout(PortId port, std::int64_t deadline_ns) noexcept {
  if (port == PortId::none) return Errc::unknown_port;
  Command c;
  c.kind = CommandKind::set_timeout;
  c.port = port;
  c.deadline_ns = deadline_ns;
  return channel_.submit(c);
}

Status EventHandlerImpl::port_command(CommandKind kind, PortId port) noexcept {
  if (port == PortId::none) return Errc::unknown_port;
  Command c;
  c.kind = kind;
  c.port = port;
  return channel_.submit(c);
}

Status EventHandlerImpl::drop_port(PortId port) noexcept {
  return port_command(CommandKind::drop_port, port);
}

Status EventHandlerImpl::clear_timeout(PortId port) noexcept {
  return port_command(CommandKind::clear_timeout, port);
}

Status EventHandlerImpl::set_deadline(std::uint64_t key, std::int64_t deadline_ns,
                                      WakeupPrecision) noexcept {
  // The native timer is exact either way (timerfd has no slack).
  return set_timeout(static_cast<PortId>(key), deadline_ns);
}

void EventHandlerImpl::clear_deadline(std::uint64_t key) noexcept {
  (void)clear_timeout(static_cast<PortId>(key));
}

void EventHandlerImpl::shutdown() noexcept {
  std::lock_guard serial(shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  channel_.close();
  // release: pairs with the acquire loads of the passes; every command is then queued.
  stop_.store(true, std::memory_order_release);
  if (host_ != nullptr) {
    // No worker takes the driver from now on; the one waiting in the poller is woken, and the
    // current holder's pass ends. Then this thread is the last holder.
    host_->detach_driver(*this);
    lock_.lock(*poller_);
    finish();
    lock_.unlock();
  } else if (thread_.joinable()) {
    poller_->wake();
    thread_.join();
  } else {
    // Never started: execute what was queued (nothing can have been) and end registrations.
    (void)lock_.try_lock();
    finish();
    lock_.unlock();
  }
  // A move of the clock now finds the handler stopped and returns at once.
  if (clock_registered_.exchange(false, std::memory_order_acq_rel)) clock_.remove_waiter(*this);
  // Closes the epoll instance, the timerfd and the eventfd.
  poller_.reset();
}

EventHandlerStats EventHandlerImpl::stats() const noexcept {
  EventHandlerStats s;
  s.commands = channel_.executed();
  s.wakeup_writes = channel_.wakeup_writes();
  s.loop_passes = passes_.load(std::memory_order_relaxed);
  s.notifications = delivery_.notifications();
  s.timeouts = timeouts_.fired();
  s.deadline_arms = timeouts_.arms();
  s.registrations = registrations_.size();
  return s;
}

// ---- the driver -------------------------------------------------------------------------------

bool EventHandlerImpl::try_acquire() noexcept {
  if (stop_.load(std::memory_order_acquire)) return false;
  return lock_.try_lock();
}

void EventHandlerImpl::release() noexcept {
  assert_driving();
  lock_.unlock();
}

void EventHandlerImpl::unpark() noexcept {
  poller_->wake();
}

void EventHandlerImpl::assert_driving() const noexcept {
  EVH_ASSERT(lock_.held_by_me(), "driver-only method called by a thread that does not drive");
}

void EventHandlerImpl::loop() noexcept {
  // The own thread holds the driver for its whole life (shutdown joins it).
  (void)lock_.try_lock();
  do {
    drive(Poller::kForever);
  } while (!stop_.load(std::memory_order_acquire));
  finish();
  lock_.unlock();
}

void EventHandlerImpl::finish() noexcept {
  assert_driving();
  channel_.drain(~0u, [this](const Command& c) { execute(c); });
  registrations_.teardown();
  timeouts_.clear();
  // On this thread, the one that drives: a ring read still in flight (a reader's, orphaned by
  // the teardown) is reaped and its buffer freed here, where the kernel lets us. The own thread
  // ends after this, and another thread destroying its single-issuer ring could not (EEXIST).
  poller_->retire();
}

void EventHandlerImpl::drive(MonoTime until) noexcept {
  assert_driving();
  timeouts_.arm(*poller_, clock_.manual() ? IoTimeouts::TimeoutClock::manual
                                          : IoTimeouts::TimeoutClock::monotonic);
  // From here on a sender wakes the poller; then one more look at the queue (see commands.h).
  channel_.sleeping();
  const bool look_only = more_ || channel_.pending() || stop_.load(std::memory_order_acquire);
  auto r = poller_->wait(events_, look_only ? Poller::kNoWait : until);
  channel_.awake();
  passes_.fetch_add(1, std::memory_order_relaxed);
  more_ = channel_.drain(options_.commands_per_pass, [this](const Command& c) { execute(c); });
  // The kernel sees the commands before anything of this pass is posted: a port that hears a
  // later notice (a fence) knows its registration is armed (see Poller::submit).
  poller_->submit();
  // acquire: pairs with shutdown()'s release store; the rest is finish()'s.
  if (stop_.load(std::memory_order_acquire)) return;
  if (!r) {
    // A signal interrupted a backend that does not retry: look again next pass.
    if (r.error() == std::errc::interrupted) return;
    // epoll_wait fails only on a programming error (EBADF, EFAULT, EINVAL); say so loudly
    // rather than spin on it.
    std::fprintf(stderr, "evh: event handler wait failed: %s\n", r.error().message().c_str());
    EVH_ASSERT(false, "poller wait failed");
    return;
  }
  // Commands ran first, so a registration closed in this pass gets nothing from this batch:
  // its entry is gone, or its token's generation no longer matches.
  // Each event's entry is a cache miss when many fds are watched: ask for the entries a few
  // events ahead, so that the misses overlap with the posting of the events before them.
  constexpr std::size_t kPrefetchAhead = 4;
  for (std::size_t i = 0; i < r->count && i < kPrefetchAhead; ++i) {
    registrations_.prefetch(events_[i]);
  }
  for (std::size_t i = 0; i < r->count; ++i) {
    if (i + kPrefetchAhead < r->count) registrations_.prefetch(events_[i + kPrefetchAhead]);
    registrations_.dispatch(events_[i]);
  }
  if (r->deadline_reached) {
    timeouts_.native_fired();
    expire();
  } else if (clock_.manual()) {
    // A timeout set at or before the manual clock's time is due now, not at a move.
    timeouts_.expire_timeouts(clock_.now_ns(), delivery_);
  }
}

void EventHandlerImpl::expire() noexcept {
  // Never early: only entries whose deadline is not after now (SEMANTICS 11). Back-offs are on
  // CLOCK_MONOTONIC whatever the runtime's clock.
  const std::int64_t mono_now = mono_now_ns();
  timeouts_.expire_timeouts(clock_.manual() ? clock_.now_ns() : mono_now, delivery_);
  while (auto fd = timeouts_.pop_ended_backoff(mono_now)) registrations_.end_backoff(*fd);
}

void EventHandlerImpl::execute(const Command& c) noexcept {
  assert_driving();
  switch (c.kind) {
    case CommandKind::add:
      registrations_.add(c);
      break;
    case CommandKind::modify:
      registrations_.modify(c);
      break;
    case CommandKind::remove:
      registrations_.end(c, IoNotice::unregistered);
      break;
    case CommandKind::close:
      registrations_.end(c, IoNotice::closed);
      break;
    case CommandKind::tokens:
      registrations_.return_tokens(c);
      break;
    case CommandKind::backoff:
      registrations_.back_off(c);
      break;
    case CommandKind::set_timeout:
      timeouts_.set_timeout(c.port, c.deadline_ns);
      break;
    case CommandKind::clear_timeout:
      timeouts_.clear_timeout(c.port);
      break;
    case CommandKind::drop_port:
      registrations_.drop_port(c.port);
      timeouts_.clear_timeout(c.port);
      break;
    case CommandKind::clock_moved:
      timeouts_.expire_timeouts(clock_.now_ns(), delivery_);
      // release: pairs with clock_moved()'s acquire load. `done` lives on the mover's stack
      // and may be gone once it is set; the wake only names its address.
      c.done->store(1, std::memory_order_release);
      futex_wake(*c.done, 1);
      break;
  }
}

Result<std::unique_ptr<EventHandlerImpl>> start_event_handler(PortDirectory& ports,
                                                              RuntimeClock clock,
                                                              std::unique_ptr<Poller> poller,
                                                              Sys& sys, EventHandlerOptions options,
                                                              DriverHost* host) {
  if (options.commands_per_pass == 0) return Errc::invalid_argument;
  auto impl = std::make_unique<EventHandlerImpl>(ports, clock, std::move(poller), sys, options);
  if (auto s = host != nullptr ? impl->start(*host) : impl->start(); !s) return s.error();
  return impl;
}

}  // namespace evh::detail

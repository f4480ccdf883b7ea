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
#include "runtime/runtime_impl.h"
#include "io/epoll_poller.h"
#include "sync/spin.h"

namespace evh {
namespace detail {
namespace {

using namespace std::chrono_literals;

constexpr auto kMinBackoff = 1ms;
constexpr auto kMaxBackoff = 1s;
constexpr FdEvents kAlwaysReported = FdEvents::error | FdEvents::hang_up;
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

EventHandlerImpl::Registration* EventHandlerImpl::find(FdEntry& e, PortId port) noexcept {
  for (auto& r : e.regs) {
    if (r.port == port) return &r;
  }
  return nullptr;
}

void EventHandlerImpl::index_add(PortId port, int fd) {
  port_fds_[port].push_back(fd);
}

void EventHandlerImpl::index_remove(PortId port, int fd) noexcept {
  auto it = port_fds_.find(port);
  if (it == port_fds_.end()) return;
  auto& fds = it->second;
  for (std::size_t i = 0; i < fds.size(); ++i) {
    if (fds[i] == fd) {
      fds[i] = fds.back();
      fds.pop_back();
      break;
    }
  }
  if (fds.empty()) port_fds_.erase(it);
}

bool EventHandlerImpl::remove_registration(FdEntry& e, std::size_t index) noexcept {
  const int fd = e.fd;
  index_remove(e.regs[index].port, fd);
  e.regs.erase(e.regs.begin() + static_cast<std::ptrdiff_t>(index));
  if (!e.regs.empty()) {
    sync_kernel(e);
    return true;
  }
  const bool owned = e.owned;
  drop_entry(fd);
  if (owned) ::close(fd);
  return false;
}

void EventHandlerImpl::do_drop_port(PortId port) noexcept {
  timeouts_.erase(static_cast<std::uint64_t>(port));
  auto it = port_fds_.find(port);
  if (it == port_fds_.end()) return;
  const std::vector<int> fds = it->second;  // a copy: remove_registration edits the index
  for (int fd : fds) {
    auto e = fds_.find(fd);
    if (e == fds_.end()) continue;
    if (Registration* r = find(e->second, port)) {
      (void)remove_registration(e->second, static_cast<std::size_t>(r - e->second.regs.data()));
    }
  }
  port_fds_.erase(port);
}

void EventHandlerImpl::do_add(const Command& c) noexcept {
  // The port may have closed since the sender checked it, and its drop_port may already have
  // run: a registration for it would never end. Drop it here, closing an owned fd.
  if (auto sp = runtime_.send_port(c.port); !sp) {
    if (c.owned) ::close(c.fd);
    return;
  }
  Registration reg;
  reg.port = c.port;
  reg.interest = c.interest;
  reg.window = c.count;
  auto it = fds_.find(c.fd);
  if (it != fds_.end()) {
    FdEntry& e = it->second;
    const bool shared =
        e.sharing == FdSharing::accept_round_robin && c.sharing == FdSharing::accept_round_robin;
    if (!shared || find(e, c.port) != nullptr) {
      post_error(c.port, c.fd, EEXIST);
      return;
    }
    e.regs.push_back(reg);
    e.owned = e.owned || c.owned;
    index_add(c.port, c.fd);
    sync_kernel(e);
    return;
  }
  FdEntry e;
  e.fd = c.fd;
  e.generation = next_generation_++;
  if (next_generation_ == 0xffff'fff0u) next_generation_ = 1;  // keeps tokens off the reserved
  e.mode = c.mode;
  e.sharing = c.sharing;
  e.regs.push_back(reg);
  e.kernel_interest = c.interest;
  e.kernel_armed = true;
  e.owned = c.owned;
  if (auto s = poller_->add(c.fd, c.interest, c.mode, e.token()); !s) {
    post_error(c.port, c.fd,
               s.error().category() == std::generic_category() ? s.error().value() : EINVAL);
    if (c.owned) ::close(c.fd);
    return;
  }
  fds_.emplace(c.fd, std::move(e));
  index_add(c.port, c.fd);
}

void EventHandlerImpl::do_modify(const Command& c) noexcept {
  auto it = fds_.find(c.fd);
  Registration* r = it == fds_.end() ? nullptr : find(it->second, c.port);
  if (r == nullptr) {
    post_error(c.port, c.fd, ENOENT);
    return;
  }
  r->interest = c.interest;
  r->armed = true;
  sync_kernel(it->second, /*force=*/true);
}

void EventHandlerImpl::do_end(const Command& c, IoNotice final_notice) noexcept {
  auto it = fds_.find(c.fd);
  Registration* r = it == fds_.end() ? nullptr : find(it->second, c.port);
  if (r == nullptr) {
    // Not this port's registration, so not its fd to close either.
    post_error(c.port, c.fd, ENOENT);
    return;
  }
  FdEntry& e = it->second;
  // An owned fd is the handler's to close, whichever way its registration ends.
  if (e.owned) final_notice = IoNotice::closed;
  index_remove(c.port, c.fd);
  e.regs.erase(e.regs.begin() + (r - e.regs.data()));
  if (e.regs.empty()) {
    drop_entry(c.fd);
    // A shared listening socket is closed with its last registration.
    if (final_notice == IoNotice::closed) ::close(c.fd);
  } else {
    sync_kernel(e);
  }
  IoEvent ev;
  ev.notice = final_notice;
  ev.fd = c.fd;
  (void)post(c.port, ev);
}

void EventHandlerImpl::do_tokens(const Command& c) noexcept {
  auto it = fds_.find(c.fd);
  Registration* r = it == fds_.end() ? nullptr : find(it->second, c.port);
  // Tokens for a registration that has ended are normal (they crossed its final notice).
  if (r == nullptr) return;
  r->outstanding -= std::min(r->outstanding, c.count);
  sync_kernel(it->second);
}

void EventHandlerImpl::do_backoff(const Command& c) noexcept {
  auto it = fds_.find(c.fd);
  if (it == fds_.end() || find(it->second, c.port) == nullptr) return;
  FdEntry& e = it->second;
  const MonoTime now = MonoClock::now();
  // Doubles while failures follow each other; starts over after a quiet second.
  if (e.backoff.count() == 0 || now - e.backoff_until > kMaxBackoff) {
    e.backoff = kMinBackoff;
  } else {
    e.backoff = std::min<std::chrono::nanoseconds>(e.backoff * 2, kMaxBackoff);
  }
  e.backing_off = true;
  e.backoff_until = now + std::chrono::duration_cast<MonoClock::duration>(e.backoff);
  backoffs_.set(static_cast<std::uint64_t>(c.fd), e.backoff_until);
  sync_kernel(e);
}

void EventHandlerImpl::sync_kernel(FdEntry& e, bool force) noexcept {
  bool armed = false;
  FdEvents interest = FdEvents::none;
  if (!e.backing_off) {
    for (const auto& r : e.regs) {
      if (r.armed && r.has_room()) {
        armed = true;
        interest |= r.interest;
      }
    }
  }
  if (!force && armed == e.kernel_armed && (!armed || interest == e.kernel_interest)) return;
  // Parked = no interest, oneshot: the kernel reports at most one error/hang-up, then nothing.
  const Status s = armed ? poller_->modify(e.fd, interest, e.mode, e.token())
                         : poller_->modify(e.fd, FdEvents::none, FdMode::oneshot, e.token());
  if (!s) {
    // The fd was closed underneath us (EBADF/ENOENT): tell every port, then end them.
    const int error = s.error().value();
    const int fd = e.fd;
    std::vector<Registration> regs = std::move(e.regs);
    drop_entry(fd);
    for (const auto& r : regs) {
      index_remove(r.port, fd);
      post_error(r.port, fd, error);
      IoEvent ev;
      ev.notice = IoNotice::unregistered;
      ev.fd = fd;
      (void)post(r.port, ev);
    }
    return;
  }
  e.kernel_armed = armed;
  e.kernel_interest = interest;
}

void EventHandlerImpl::drop_entry(int fd) noexcept {
  (void)poller_->remove(fd);  // fails harmlessly when the fd is already gone
  backoffs_.erase(static_cast<std::uint64_t>(fd));
  fds_.erase(fd);
  registrations_.store(fds_.size(), std::memory_order_relaxed);
}

void EventHandlerImpl::dispatch(const PollEvent& pe) noexcept {
  const int fd = static_cast<int>(static_cast<std::uint32_t>(pe.token));
  auto it = fds_.find(fd);
  // Stale: the registration ended (or was replaced) earlier in this pass.
  if (it == fds_.end() || it->second.token() != pe.token) return;
  FdEntry& e = it->second;
  // Parked in this pass (a back-off): the kernel reports the condition again on the re-arm.
  if (!e.kernel_armed && e.mode != FdMode::oneshot) return;
  if (e.mode == FdMode::oneshot) {
    if (!e.kernel_armed) return;
    e.kernel_armed = false;  // the kernel disarmed it with this report
  }
  const std::size_t n = e.regs.size();
  for (std::size_t tried = 0; tried < n; ++tried) {
    const std::size_t i = (e.next + tried) % n;
    Registration& r = e.regs[i];
    if (!r.armed || !r.has_room()) continue;
    const FdEvents events = pe.events & (r.interest | kAlwaysReported);
    if (!any(events)) continue;
    IoEvent ev;
    ev.notice = IoNotice::ready;
    ev.fd = fd;
    ev.events = events;
    const PortId port = r.port;
    if (!post(port, ev)) {
      // The destination is gone: drop its registration quietly (an owned fd is closed).
      (void)remove_registration(e, i);
      return;
    }
    if (r.window != 0) ++r.outstanding;
    if (e.mode == FdMode::oneshot) r.armed = false;
    e.next = i + 1;
    break;
  }
  sync_kernel(e);
}

void EventHandlerImpl::expire() noexcept {
  // Never early: only entries whose deadline is not after now (SEMANTICS 11).
  const MonoTime now = MonoClock::now();
  while (!timeouts_.empty() && timeouts_.top().deadline <= now) {
    const DeadlineHeap::Entry entry = timeouts_.pop();
    IoEvent ev;
    ev.notice = IoNotice::timeout;
    ev.deadline_ns = to_ns(entry.deadline);
    if (post(static_cast<PortId>(entry.key), ev)) {
      timeouts_fired_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  while (!backoffs_.empty() && backoffs_.top().deadline <= now) {
    const int fd = static_cast<int>(backoffs_.pop().key);
    auto it = fds_.find(fd);
    if (it == fds_.end()) continue;
    it->second.backing_off = false;
    sync_kernel(it->second);
  }
}

void EventHandlerImpl::update_timer() noexcept {
  std::optional<MonoTime> earliest;
  if (!timeouts_.empty()) earliest = timeouts_.top().deadline;
  if (!backoffs_.empty() && (!earliest || backoffs_.top().deadline < *earliest)) {
    earliest = backoffs_.top().deadline;
  }
  if (earliest == armed_) return;  // re-armed only when the earliest deadline changes
  const Status s = earliest ? poller_->set_deadline(*earliest) : poller_->clear_deadline();
  deadline_arms_.fetch_add(1, std::memory_order_relaxed);
  if (!s) {
    std::fprintf(stderr, "evh: arming the event handler's timer failed: %s\n",
                 s.error().message().c_str());
    return;
  }
  armed_ = earliest;
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

// ---- the public face ----------------------------------------------------------------------------

Message to_message(const IoEvent& event) {
  return Message::bytes(std::as_bytes(std::span<const IoEvent, 1>(&event, 1)));
}

std::optional<IoEvent> decode_io_event(const Message& message) noexcept {
  const auto bytes = message.data();
  if (bytes.size() != sizeof(IoEvent)) return std::nullopt;
  IoEvent ev;
  std::memcpy(&ev, bytes.data(), sizeof ev);
  if (ev.magic != IoEvent::kMagic) return std::nullopt;
  return ev;
}

Result<std::unique_ptr<EventHandler>> EventHandler::create(Runtime& runtime,
                                                           EventHandlerOptions options) {
  auto poller = detail::EpollPoller::create();
  if (!poller) return poller.error();
  return detail::make_event_handler(runtime, std::move(poller).value(), options);
}

EventHandler::EventHandler(std::unique_ptr<detail::EventHandlerImpl> impl) noexcept
    : impl_(std::move(impl)) {}

EventHandler::~EventHandler() {
  impl_->shutdown();
}

Status EventHandler::add_fd(int fd, PortId port, FdEvents interest, FdOptions options) noexcept {
  return impl_->add_fd(fd, port, interest, options);
}
Status EventHandler::modify_fd(int fd, PortId port, FdEvents interest) noexcept {
  return impl_->command(detail::CommandKind::modify, fd, port, interest, 0);
}
Status EventHandler::remove_fd(int fd, PortId port) noexcept {
  return impl_->command(detail::CommandKind::remove, fd, port, FdEvents::none, 0);
}
Status EventHandler::close_fd(int fd, PortId port) noexcept {
  return impl_->command(detail::CommandKind::close, fd, port, FdEvents::none, 0);
}
Status EventHandler::return_tokens(int fd, PortId port, std::uint32_t count) noexcept {
  return impl_->command(detail::CommandKind::tokens, fd, port, FdEvents::none, count);
}
Result<int> EventHandler::accept(int listen_fd, PortId port) noexcept {
  return impl_->accept(listen_fd, port);
}
Status EventHandler::set_timeout(PortId port, Clock::time_point deadline) noexcept {
  return impl_->set_timeout(port, deadline);
}
Status EventHandler::clear_timeout(PortId port) noexcept {
  return impl_->clear_timeout(port);
}
void EventHandler::shutdown() noexcept {
  impl_->shutdown();
}
EventHandlerStats EventHandler::stats() const noexcept {
  return impl_->stats();
}
const char* EventHandler::backend() const noexcept {
  return impl_->backend();
}

}  // namespace evh

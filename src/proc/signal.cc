// Signals to ports: one process-wide hub (what signals inherently are), and per watcher an
// internal isolate woken through the event handler. docs/PROCESSES.md has the why.
#include <errno.h>
#include <evh/event_handler.h>
#include <evh/isolate.h>
#include <evh/runtime.h>
#include <evh/signal.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>

namespace evh {
namespace detail {
namespace {

constexpr int kMaxSignal = 64;

std::error_code errno_code(int e) noexcept {
  return {e, std::generic_category()};
}

// The process-wide part. Created on first use and never destroyed: a handler may run on any
// thread at any time until the process ends, and must find its counters and fd there.
struct SignalHub {
  int fd = -1;  // eventfd, O_CLOEXEC | O_NONBLOCK; written by the handler, never read
  std::atomic<std::uint64_t> counts[kMaxSignal + 1] = {};

  std::mutex mu;
  int watchers[kMaxSignal + 1] = {};            // guarded by mu
  struct sigaction saved[kMaxSignal + 1] = {};  // guarded by mu: the disposition before ours
};

std::atomic<SignalHub*> g_hub{nullptr};
std::mutex g_hub_init;

void on_signal(int sig) {
  const int saved_errno = errno;
  SignalHub* hub = g_hub.load(std::memory_order_acquire);  // partner: release in hub()
  if (hub != nullptr && sig > 0 && sig <= kMaxSignal) {
    // Counted before the write: a watcher woken by this write (or any later one) reads a count
    // that includes it. Partner: the acquire load in SignalWatch::on_message.
    hub->counts[sig].fetch_add(1, std::memory_order_release);
    const std::uint64_t one = 1;
    (void)!::write(hub->fd, &one, sizeof one);
  }
  errno = saved_errno;
}

Result<SignalHub*> hub() {
  if (SignalHub* h = g_hub.load(std::memory_order_acquire)) return h;
  std::lock_guard lock(g_hub_init);
  if (SignalHub* h = g_hub.load(std::memory_order_acquire)) return h;
  const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return errno_code(errno);
  auto* h = new SignalHub;  // never deleted, see above
  h->fd = fd;
  g_hub.store(h, std::memory_order_release);
  return h;
}

bool watchable(int sig) noexcept {
  if (sig <= 0 || sig > kMaxSignal) return false;
  switch (sig) {
    case SIGKILL:
    case SIGSTOP:
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
    case SIGTRAP:
    case SIGSYS:
    case SIGABRT:
      return false;
    default:
      break;
  }
  // 32 and 33 (and up to SIGRTMIN) belong to glibc's threads and set*id.
  return sig < 32 || sig >= SIGRTMIN;
}

Status add_watcher(SignalHub& h, int sig) {
  std::lock_guard lock(h.mu);
  if (h.watchers[sig] == 0) {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(sig, &sa, &h.saved[sig]) != 0) return errno_code(errno);
  }
  ++h.watchers[sig];
  return {};
}

void remove_watcher(SignalHub& h, int sig) noexcept {
  std::lock_guard lock(h.mu);
  if (--h.watchers[sig] == 0) ::sigaction(sig, &h.saved[sig], nullptr);
}

}  // namespace

class SignalWatch {
 public:
  SignalWatch(SignalHub& hub, int sig, SendPort dest) : hub_(hub), sig_(sig), dest_(dest) {}
  ~SignalWatch() {
    if (fd_ >= 0) ::close(fd_);
  }

  void on_message(Isolate& self, Message& m) noexcept {
    auto ev = decode_io_event(m);
    if (!ev) return;
    std::lock_guard lock(mu_);
    switch (ev->notice) {
      case IoNotice::ready: {
        if (stopped_) return;
        const std::uint64_t now = hub_.counts[sig_].load(std::memory_order_acquire);
        if (now == seen_) return;  // another signal's wakeup
        SignalEvent out;
        out.signal = sig_;
        out.count = now - seen_;
        seen_ = now;
        (void)dest_.post(Message::bytes(std::as_bytes(std::span<const SignalEvent>(&out, 1))));
        return;
      }
      case IoNotice::unregistered:
      case IoNotice::error:
        // The handler shut down (or refused the watch): the fd is ours to close.
        if (fd_ >= 0 && ev->fd == fd_) {
          ::close(fd_);
          fd_ = -1;
        }
        [[fallthrough]];
      case IoNotice::closed:
        self.kill(KillPriority::before_next_event);  // nothing more will come: it ends
        return;
      case IoNotice::timeout:
        return;
    }
  }

  void stop() noexcept {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    remove_watcher(hub_, sig_);
    if (fd_ >= 0 && eh_->close_fd(fd_, port_).ok()) fd_ = -1;  // the I/O thread closes it
  }

  SignalHub& hub_;
  const int sig_;
  SendPort dest_;
  EventHandler* eh_ = nullptr;
  PortId port_ = PortId::none;

  std::mutex mu_;
  int fd_ = -1;             // guarded by mu_: our dup of the hub's eventfd, while ours to close
  std::uint64_t seen_ = 0;  // guarded by mu_
  bool stopped_ = false;    // guarded by mu_
};

}  // namespace detail

std::optional<SignalEvent> decode_signal_event(const Message& message) noexcept {
  const auto data = message.data();
  if (data.size() != sizeof(SignalEvent)) return std::nullopt;
  SignalEvent ev;
  std::memcpy(&ev, data.data(), sizeof ev);
  if (ev.magic != SignalEvent::kMagic) return std::nullopt;
  return ev;
}

Result<SignalWatcher> SignalWatcher::watch(Runtime& runtime, int signal, PortId port) {
  if (!detail::watchable(signal)) return Errc::invalid_argument;
  auto dest = runtime.send_port(port);
  if (!dest) return dest.error();
  auto eh = runtime.event_handler();
  if (!eh) return eh.error();
  auto hub = detail::hub();
  if (!hub) return hub.error();
  // A dup per watcher: one epoll instance cannot hold the same fd twice, and each watcher's
  // registration must be ended (and its fd closed) on its own.
  const int fd = ::fcntl((*hub)->fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return detail::errno_code(errno);
  auto state = std::make_shared<detail::SignalWatch>(**hub, signal, std::move(dest).value());
  state->fd_ = fd;  // closed by the state from here on
  state->eh_ = *eh;
  auto iso = runtime.spawn(
      make_handler([state](Isolate& self, Message& m) noexcept { state->on_message(self, m); }));
  if (!iso) return iso.error();
  state->port_ = (*iso)->main_port();
  if (auto s = detail::add_watcher(**hub, signal); !s) {
    (*iso)->destroy();
    return s.error();
  }
  {
    std::lock_guard lock(state->mu_);
    // From here on every occurrence is counted past seen_, and the registration below reports
    // the eventfd at once if it is already readable: nothing after this point is missed.
    state->seen_ = (*hub)->counts[signal].load(std::memory_order_acquire);
    // Edge-triggered: every write to the eventfd wakes every epoll instance watching it, and
    // nobody needs to read it.
    if (auto s = (*eh)->add_fd(fd, state->port_, FdEvents::readable, {.mode = FdMode::edge}); !s) {
      state->stopped_ = true;
      detail::remove_watcher(**hub, signal);
      (*iso)->destroy();
      return s.error();
    }
  }
  return SignalWatcher(std::move(state));
}

SignalWatcher& SignalWatcher::operator=(SignalWatcher&& other) noexcept {
  if (this != &other) {
    stop();
    state_ = std::move(other.state_);
  }
  return *this;
}

SignalWatcher::~SignalWatcher() {
  stop();
}

void SignalWatcher::stop() noexcept {
  if (state_) state_->stop();
}

int SignalWatcher::signal() const noexcept {
  return state_ ? state_->sig_ : 0;
}

}  // namespace evh

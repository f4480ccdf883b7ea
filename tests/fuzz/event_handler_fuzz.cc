// Fuzz target: the event handler over the fake poller (tests/io/fake_poller.h), driven by a
// command sequence read from the input — add, modify, remove and close registrations of a few
// pipes on a few ports (every mode, interest and window), return tokens, set and clear port
// timeouts, close and reopen a port, make conditions hold in the fake "kernel", inject raw
// events for current and stale tokens, make the fake's next add or modify fail, and gather a
// readiness change and a command into one batch — checked against a model after every command:
//   - every registration gets exactly one final notice (`closed` or `unregistered`), and nothing
//     for it after that (or before it began: a failed add produces its error and nothing else);
//   - readiness only for a live registration, only for its interest (plus error and hang-up),
//     at most its window of notices not yet returned, at most one per arm in oneshot mode;
//   - an error notice only where one is due (EEXIST for a duplicate add, ENOENT for a command on
//     no registration, the injected errno), and always when one is due;
//   - a port's timeout exactly once, carrying its deadline, once due; never after a clear or a
//     replacement; nothing for a port after it closed;
//   - at the end, every fd the handler did not close is still the caller's, and no fd leaked.
// Each command is followed by a fence (a timeout on a port of its own, already due, twice: the
// second is posted in a later pass than everything the first pass posted), so the model knows
// exactly which messages the command caused. Either way of driving the handler is fuzzed: the
// runtime's pool, or a thread of its own.
#include <errno.h>
#include <evh/event_handler.h>
#include <evh/runtime.h>
#include <fcntl.h>
#include <fuzzer/FuzzedDataProvider.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <vector>

#include "fd_count.h"
#include "io/fake_poller.h"
#include "runtime/runtime_impl.h"

namespace {

using namespace evh;
using namespace std::chrono_literals;
using test::FakePoller;

constexpr int kFds = 4;
constexpr int kPorts = 3;
constexpr int kMaxSteps = 48;
constexpr int kAddErrno = ENOSPC;  // what the fake's next add fails with, when told to
constexpr int kModifyErrno = EIO;  // the same for its next modify (nothing else says EIO)
constexpr FdEvents kAlways = FdEvents::error | FdEvents::hang_up;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "event_handler_fuzz: %s\n", what);
  std::abort();
}
void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

std::int64_t ns_of(EventHandler::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// The model of one (fd slot, port slot) registration.
struct Reg {
  bool live = false;
  FdEvents interest = FdEvents::none;
  FdMode mode = FdMode::level;
  std::uint32_t window = 0;  // 0: unlimited
  std::uint32_t outstanding = 0;
  bool fired = false;  // oneshot: reported since its last arm
};

enum class Op : int {
  add,
  modify,
  remove,
  close,
  tokens,
  set_ready,
  inject,
  set_timeout,
  clear_timeout,
  reopen_port,
  fail_add,
  fail_modify,
  batch,  // hold the fake's wait, change readiness, send one command, release
  kCount
};

// What the step's command expects of the messages it causes.
struct Step {
  Op op = Op::set_ready;
  int fd = -1;                 // slot
  int port = -1;               // slot
  bool accepted = false;       // the call returned ok: the I/O thread executes it
  bool new_reg = false;        // an add of a registration that was not live (provisional)
  bool saw_ready_new = false;  // ... and a ready for it came
  bool want_error = false;     // an error notice is due (and `got_error` says it came)
  int want_errno = 0;
  bool got_error = false;
  bool want_final = false;  // remove/close of a live registration
};

class Harness {
 public:
  Harness(bool pool, FuzzedDataProvider& in) : in_(in) {
    auto fake = std::make_unique<FakePoller>();
    fake_ = fake.get();
    if (pool) {
      auto eh = detail::RuntimeAccess::impl(rt_).install_event_handler(std::move(fake),
                                                                       detail::linux_sys());
      check(eh.ok(), "install_event_handler");
      eh_ = *eh;
    } else {
      auto eh = detail::make_event_handler(rt_, std::move(fake));
      check(eh.ok(), "make_event_handler");
      owned_ = std::move(eh).value();
      eh_ = owned_.get();
    }
    fence_ = std::move(rt_.open_receiver()).value();
    for (auto& p : ports_) p = std::move(rt_.open_receiver()).value();
  }

  ~Harness() {
    for (auto& s : fds_) {
      if (s.r >= 0) ::close(s.r);
      if (s.w >= 0) ::close(s.w);
    }
  }

  void run() {
    for (int steps = 0; in_.remaining_bytes() > 0 && steps < kMaxSteps; ++steps) step();
    // The end: every live registration gets its `unregistered`, the handler refuses more.
    eh_->shutdown();
    drain_all();
    for (int f = 0; f < kFds; ++f) {
      for (int p = 0; p < kPorts; ++p) check(!regs_[f][p].live, "no final notice at shutdown");
    }
    check(eh_->clear_timeout(ports_[0].id()).error() == Errc::shutting_down,
          "a command after shutdown was accepted");
    // What the handler did not close is still open (it never closes a borrowed fd).
    for (auto& s : fds_) {
      if (s.r >= 0) check(::fcntl(s.r, F_GETFD) >= 0, "the handler closed a borrowed fd");
    }
  }

 private:
  struct Pipe {
    int r = -1;  // registered
    int w = -1;
  };

  int fd_slot() { return in_.ConsumeIntegralInRange<int>(0, kFds - 1); }
  int port_slot() { return in_.ConsumeIntegralInRange<int>(0, kPorts - 1); }
  FdEvents interest() {
    const FdEvents all[] = {FdEvents::readable, FdEvents::writable,
                            FdEvents::readable | FdEvents::writable,
                            FdEvents::readable | FdEvents::read_closed, FdEvents::none};
    return all[in_.ConsumeIntegralInRange<int>(0, 4)];
  }
  FdEvents conditions() {
    return static_cast<FdEvents>(in_.ConsumeIntegralInRange<std::uint32_t>(0, 0x1f));
  }

  // The slot's pipe, made when the slot has none (its last one was closed by close_fd).
  int fd_of(int slot) {
    Pipe& s = fds_[slot];
    if (s.r < 0) {
      int p[2];
      check(::pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0, "pipe2");
      if (s.w >= 0) ::close(s.w);
      s.r = p[0];
      s.w = p[1];
    }
    return s.r;
  }
  int slot_of_fd(int fd) const {
    for (int i = 0; i < kFds; ++i) {
      if (fds_[i].r == fd) return i;
    }
    fail("a notice for an fd nobody registered");
  }

  void step() {
    Step st;
    st.op = static_cast<Op>(in_.ConsumeIntegralInRange<int>(0, static_cast<int>(Op::kCount) - 1));
    if (st.op == Op::batch) {
      fake_->hold();
      fake_->await_in_wait();
      if (in_.ConsumeBool()) {
        const int f = fd_slot();
        fake_->set_ready(fd_of(f), conditions());
      } else {
        inject();
      }
      st.op = static_cast<Op>(in_.ConsumeIntegralInRange<int>(0, static_cast<int>(Op::tokens)));
      command(st);
      fake_->release();
    } else {
      command(st);
    }
    fence();
    fence();
    for (int p = 0; p < kPorts; ++p) drain(p, &st);
    if (st.want_error) check(st.got_error, "a due error notice did not come");
    if (st.want_final) check(!regs_[st.fd][st.port].live, "a due final notice did not come");
    for (int p = 0; p < kPorts; ++p) {
      check(!(timeout_[p] && timeout_due_[p]), "a due timeout did not come");
    }
  }

  void inject() {
    const int f = fd_slot();
    std::uint64_t token;
    if (auto t = fake_->token_of(fd_of(f)); t && in_.ConsumeBool()) {
      token = *t;
      old_tokens_.push_back(*t);
    } else if (!old_tokens_.empty()) {
      token = old_tokens_[in_.ConsumeIntegralInRange<std::size_t>(0, old_tokens_.size() - 1)];
    } else {
      token = in_.ConsumeIntegral<std::uint64_t>();
    }
    fake_->inject(token, conditions());
  }

  void command(Step& st) {
    switch (st.op) {
      case Op::add: {
        st.fd = fd_slot();
        st.port = port_slot();
        FdOptions o;
        o.mode = static_cast<FdMode>(in_.ConsumeIntegralInRange<int>(0, 2));
        o.max_outstanding = in_.ConsumeIntegralInRange<std::uint32_t>(0, 3);
        const FdEvents want = interest();
        const int fd = fd_of(st.fd);
        st.accepted = eh_->add_fd(fd, ports_[st.port].id(), want, o).ok();
        if (!st.accepted) return;
        Reg& g = regs_[st.fd][st.port];
        if (g.live) {
          st.want_error = true;
          st.want_errno = EEXIST;
          return;
        }
        st.new_reg = true;
        g = Reg{};
        g.live = true;  // provisional: an error notice undoes it
        g.interest = want;
        g.mode = o.mode;
        g.window = o.max_outstanding != 0 ? o.max_outstanding : o.mode == FdMode::level ? 1 : 0;
        return;
      }
      case Op::modify: {
        st.fd = fd_slot();
        st.port = port_slot();
        const FdEvents want = interest();
        st.accepted = eh_->modify_fd(fd_of(st.fd), ports_[st.port].id(), want).ok();
        Reg& g = regs_[st.fd][st.port];
        if (!st.accepted) return;
        if (g.live) {
          g.interest = want;
          g.fired = false;
        } else {
          st.want_error = true;
          st.want_errno = ENOENT;
        }
        return;
      }
      case Op::remove:
      case Op::close: {
        st.fd = fd_slot();
        st.port = port_slot();
        const int fd = fd_of(st.fd);
        st.accepted = (st.op == Op::remove ? eh_->remove_fd(fd, ports_[st.port].id())
                                           : eh_->close_fd(fd, ports_[st.port].id()))
                          .ok();
        if (!st.accepted) return;
        if (regs_[st.fd][st.port].live) {
          st.want_final = true;
        } else {
          st.want_error = true;
          st.want_errno = ENOENT;
        }
        return;
      }
      case Op::tokens: {
        st.fd = fd_slot();
        st.port = port_slot();
        const auto n = in_.ConsumeIntegralInRange<std::uint32_t>(1, 3);
        st.accepted = eh_->return_tokens(fd_of(st.fd), ports_[st.port].id(), n).ok();
        Reg& g = regs_[st.fd][st.port];
        // Applied before this step's readiness: after a fence nothing more is reportable until
        // a command, and the pass executes its commands before it dispatches its batch.
        if (st.accepted && g.live) g.outstanding -= std::min(g.outstanding, n);
        return;
      }
      case Op::set_ready: {
        const int f = fd_slot();
        fake_->set_ready(fd_of(f), conditions());
        return;
      }
      case Op::inject:
        inject();
        return;
      case Op::set_timeout: {
        const int p = port_slot();
        const bool due = in_.ConsumeBool();
        const auto at = EventHandler::Clock::now() + (due ? std::chrono::milliseconds(-1) : 1h);
        if (eh_->set_timeout(ports_[p].id(), at).ok()) {
          timeout_[p] = ns_of(at);
          timeout_due_[p] = due;
        }
        return;
      }
      case Op::clear_timeout: {
        const int p = port_slot();
        if (eh_->clear_timeout(ports_[p].id()).ok()) timeout_[p].reset();
        return;
      }
      case Op::reopen_port: {
        // Its registrations end without a notice (nobody is left to hear one), its timeout
        // goes; a fresh port takes the slot.
        const int p = port_slot();
        drain(p, nullptr);
        ports_[p] = std::move(rt_.open_receiver()).value();  // closes the old one
        for (auto& row : regs_) row[p].live = false;
        timeout_[p].reset();
        return;
      }
      case Op::fail_add:
        fake_->fail(FakePoller::Op::add, kAddErrno);
        return;
      case Op::fail_modify:
        fake_->fail(FakePoller::Op::modify, kModifyErrno);
        return;
      case Op::batch:
      case Op::kCount:
        return;
    }
  }

  // Two of these after each command: the first fence's pass may post its own timeout before
  // other ports' messages of that pass; the second is posted in a later pass.
  void fence() {
    const auto now = EventHandler::Clock::now();
    check(eh_->set_timeout(fence_.id(), now).ok(), "fence: set_timeout");
    auto m = fence_.receive(30s);
    check(m.ok(), "fence: the handler did not answer (hung?)");
    auto ev = decode_io_event(*m);
    check(ev && ev->notice == IoNotice::timeout && ev->deadline_ns == ns_of(now),
          "fence: not its own timeout");
  }

  void drain_all() {
    for (int p = 0; p < kPorts; ++p) drain(p, nullptr);
    check(fence_.try_receive().error() == Errc::timed_out, "a stray message at the fence port");
  }

  void drain(int p, Step* st) {
    for (;;) {
      auto m = ports_[p].try_receive();
      if (!m) return;
      auto ev = decode_io_event(*m);
      check(ev.has_value(), "not an IoEvent");
      seen(p, *ev, st);
    }
  }

  void seen(int p, const IoEvent& ev, Step* st) {
    const bool about_step = st != nullptr && st->port == p;
    switch (ev.notice) {
      case IoNotice::ready: {
        const int f = slot_of_fd(ev.fd);
        Reg& g = regs_[f][p];
        check(g.live, "readiness for no live registration");
        check(any(ev.events), "readiness with no condition");
        check((ev.events & ~(g.interest | kAlways)) == FdEvents::none,
              "readiness outside the interest");
        if (g.window != 0) check(++g.outstanding <= g.window, "more notices than the window");
        if (g.mode == FdMode::oneshot) {
          check(!g.fired, "oneshot reported twice without a re-arm");
          g.fired = true;
        }
        if (about_step && st->new_reg && st->fd == f) st->saw_ready_new = true;
        return;
      }
      case IoNotice::closed:
      case IoNotice::unregistered: {
        const int f = slot_of_fd(ev.fd);
        Reg& g = regs_[f][p];
        check(g.live, "a final notice for no live registration");
        g.live = false;
        if (ev.notice == IoNotice::closed) {
          // Only close_fd closes a borrowed fd: the step's own.
          check(about_step && st->op == Op::close && st->fd == f, "closed without close_fd");
          check(::fcntl(fds_[f].r, F_GETFD) < 0, "close_fd left the fd open");
          fds_[f].r = -1;  // the handler's now (closed); a new pipe takes the slot when needed
        }
        return;
      }
      case IoNotice::error: {
        const int f = slot_of_fd(ev.fd);
        Reg& g = regs_[f][p];
        if (ev.error == kModifyErrno) {
          // The fake refused a re-arm: every registration of the fd ends (`unregistered`).
          check(g.live, "a failed re-arm of no live registration");
          return;
        }
        check(about_step && st->fd == f, "an error notice for another command");
        if (st->new_reg) {
          check(!st->saw_ready_new, "readiness for an add that then failed");
          check(ev.error == kAddErrno || ev.error == EEXIST, "an add failed with an odd errno");
          g.live = false;
          st->new_reg = false;
          return;
        }
        check(st->want_error && !st->got_error, "an error notice nobody is due");
        check(ev.error == st->want_errno, "an error notice with the wrong errno");
        st->got_error = true;
        return;
      }
      case IoNotice::timeout:
        check(timeout_[p].has_value() && *timeout_[p] == ev.deadline_ns,
              "a timeout that was cleared, replaced or never set");
        check(timeout_due_[p], "a timeout before its deadline");
        timeout_[p].reset();
        return;
    }
    fail("an unknown notice");
  }

  FuzzedDataProvider& in_;
  Runtime rt_;
  FakePoller* fake_ = nullptr;  // owned by the handler
  std::unique_ptr<EventHandler> owned_;
  EventHandler* eh_ = nullptr;
  Receiver fence_;
  std::array<Receiver, kPorts> ports_;
  std::array<Pipe, kFds> fds_;
  Reg regs_[kFds][kPorts];
  std::array<std::optional<std::int64_t>, kPorts> timeout_;
  std::array<bool, kPorts> timeout_due_{};
  std::vector<std::uint64_t> old_tokens_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A first runtime may leave process-wide state behind (a backend probe's answer); that is
  // not a leak of one input's run.
  static const bool warm = [] {
    Runtime rt;
    return true;
  }();
  (void)warm;
  const test::FdSet fds_at_start = test::open_fds();
  FuzzedDataProvider in(data, size);
  {
    Harness h(in.ConsumeBool(), in);
    h.run();
  }
  check(test::fds_opened_since(fds_at_start).empty(), "an fd leaked");
  return 0;
}

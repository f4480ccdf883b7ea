#include "io/registrations.h"

#include <errno.h>

#include <algorithm>

#include "base/alloc_fault.h"
#include "base/assert.h"
#include "base/mono_time.h"

namespace evh::detail {
namespace {

using namespace std::chrono_literals;

constexpr auto kMinBackoff = 1ms;
constexpr auto kMaxBackoff = 1s;
constexpr FdEvents kAlwaysReported = FdEvents::error | FdEvents::hang_up;

}  // namespace

Registrations::Registration* Registrations::find(FdEntry& e, PortId port) noexcept {
  for (auto& r : e.regs) {
    if (r.port == port) return &r;
  }
  return nullptr;
}

void Registrations::RegList::push_back(const Registration& r) {
  if (size_ == cap_) {
    const std::uint32_t cap = cap_ * 2;   // a shared socket's registrations: one per port
    auto* grown = new Registration[cap];  // std::bad_alloc: nothing has changed
    std::copy(begin(), end(), grown);
    if (cap_ != 1) delete[] heap_;
    heap_ = grown;
    cap_ = cap;
  }
  data()[size_++] = r;
}

Registrations::FdEntry& Registrations::FdTable::insert(FdEntry&& entry) {
  const auto fd = static_cast<std::size_t>(static_cast<unsigned>(entry.fd));
  const std::size_t i = fd / kChunk;
  if (i >= chunks_.size()) chunks_.resize(i + 1);  // may throw: nothing changed yet
  if (!chunks_[i]) chunks_[i] = std::make_unique<Chunk>();
  FdEntry& slot = chunks_[i]->at[fd % kChunk];
  EVH_ASSERT(slot.fd < 0, "an fd registered twice");
  slot = std::move(entry);
  ++size_;
  return slot;
}

void Registrations::FdTable::erase(int fd) noexcept {
  FdEntry* e = find(fd);
  if (e == nullptr) return;
  *e = FdEntry{};  // fd -1: free; its registrations' memory is released
  --size_;
}

void Registrations::index_add(PortId port, int fd) {
  port_fds_[port].push_back(fd);
}

void Registrations::index_remove(PortId port, int fd) noexcept {
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

bool Registrations::remove_registration(FdEntry& e, std::size_t index) noexcept {
  const int fd = e.fd;
  index_remove(e.regs[index].port, fd);
  e.regs.erase(e.regs.begin() + static_cast<std::ptrdiff_t>(index));
  if (!e.regs.empty()) {
    sync_kernel(e);
    return true;
  }
  const FdOwnership ownership = e.ownership;
  drop_entry(fd);
  if (ownership == FdOwnership::owned) close_owned(fd);
  return false;
}

void Registrations::drop_port(PortId port) noexcept {
  auto it = port_fds_.find(port);
  if (it == port_fds_.end()) return;
  const std::vector<int> fds = it->second;  // a copy: remove_registration edits the index
  for (int fd : fds) {
    FdEntry* e = fds_.find(fd);
    if (e == nullptr) continue;
    if (Registration* r = find(*e, port)) {
      (void)remove_registration(*e, static_cast<std::size_t>(r - e->regs.data()));
    }
  }
  port_fds_.erase(port);
  update_size();
}

void Registrations::add(const Command& c) noexcept {
  // The port may have closed since the sender checked it, and its drop_port may already have
  // run: a registration for it would never end. Drop it here, closing an owned fd.
  if (!delivery_.port_open(c.port)) {
    if (c.ownership == FdOwnership::owned) close_owned(c.fd);
    return;
  }
  Registration reg;
  reg.port = c.port;
  reg.interest = c.interest;
  reg.window = c.count;
  reg.reader = c.reader;
  if (FdEntry* existing = fds_.find(c.fd); existing != nullptr) {
    FdEntry& e = *existing;
    const bool shared =
        e.sharing == FdSharing::accept_round_robin && c.sharing == FdSharing::accept_round_robin;
    if (!shared || find(e, c.port) != nullptr) {
      delivery_.post_error(c.port, c.fd, EEXIST);
      return;
    }
    try {
      alloc_site();
      e.regs.push_back(reg);
    } catch (const std::bad_alloc&) {
      delivery_.post_error(c.port, c.fd, ENOMEM);  // the fd stays with its other registrations
      return;
    }
    try {
      alloc_site();
      index_add(c.port, c.fd);
    } catch (const std::bad_alloc&) {
      e.regs.pop_back();
      delivery_.post_error(c.port, c.fd, ENOMEM);
      return;
    }
    if (c.ownership == FdOwnership::owned) e.ownership = FdOwnership::owned;
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
  e.ownership = c.ownership;
  if (auto s = poller_.add(c.fd, c.interest, c.mode, e.token()); !s) {
    delivery_.post_error(
        c.port, c.fd, s.error().category() == std::generic_category() ? s.error().value() : EINVAL);
    if (c.ownership == FdOwnership::owned) close_owned(c.fd);
    return;
  }
  FdEntry* added = nullptr;
  // Out of memory for the records: the watch is undone and the port hears ENOMEM, like any
  // other refused registration (no other message follows); an owned fd is closed.
  try {
    alloc_site();
    added = &fds_.insert(std::move(e));
    try {
      alloc_site();
      index_add(c.port, c.fd);
    } catch (const std::bad_alloc&) {
      fds_.erase(c.fd);
      throw;
    }
  } catch (const std::bad_alloc&) {
    (void)poller_.remove(c.fd);
    delivery_.post_error(c.port, c.fd, ENOMEM);
    if (c.ownership == FdOwnership::owned) close_owned(c.fd);
    return;
  }
  update_size();
  // A reader that takes reads' results, on a poller that reads: the poll just armed is replaced
  // by the first read (both go to the kernel in the same submission).
  if (c.reader != nullptr && any(c.interest & FdEvents::readable) && c.reader->ring_reads() &&
      poller_.reads()) {
    added->ring_read = true;
    arm_read(*added);
  }
}

void Registrations::modify(const Command& c) noexcept {
  FdEntry* entry = fds_.find(c.fd);
  Registration* r = entry == nullptr ? nullptr : find(*entry, c.port);
  if (r == nullptr) {
    delivery_.post_error(c.port, c.fd, ENOENT);
    return;
  }
  r->interest = c.interest;
  r->armed = true;
  sync_kernel(*entry, Rearm::always);
}

void Registrations::end(const Command& c, IoNotice final_notice) noexcept {
  FdEntry* entry = fds_.find(c.fd);
  Registration* r = entry == nullptr ? nullptr : find(*entry, c.port);
  if (r == nullptr) {
    // Not this port's registration, so not its fd to close either.
    delivery_.post_error(c.port, c.fd, ENOENT);
    return;
  }
  FdEntry& e = *entry;
  // An owned fd is the handler's to close, whichever way its registration ends.
  if (e.ownership == FdOwnership::owned) final_notice = IoNotice::closed;
  index_remove(c.port, c.fd);
  e.regs.erase(e.regs.begin() + (r - e.regs.data()));
  if (e.regs.empty()) {
    drop_entry(c.fd);
    // A shared listening socket is closed with its last registration.
    if (final_notice == IoNotice::closed) close_owned(c.fd);
  } else {
    sync_kernel(e);
  }
  delivery_.post_final(c.port, c.fd, final_notice);
}

void Registrations::return_tokens(const Command& c) noexcept {
  FdEntry* entry = fds_.find(c.fd);
  Registration* r = entry == nullptr ? nullptr : find(*entry, c.port);
  // Tokens for a registration that has ended are normal (they crossed its final notice).
  if (r == nullptr) return;
  r->outstanding -= std::min(r->outstanding, c.count);
  sync_kernel(*entry);
}

void Registrations::back_off(const Command& c) noexcept {
  FdEntry* entry = fds_.find(c.fd);
  if (entry == nullptr || find(*entry, c.port) == nullptr) return;
  FdEntry& e = *entry;
  // Back-offs are about the kernel's resources, so they run on the kernel's clock whatever
  // clock the runtime's timers use.
  const std::int64_t now = mono_now_ns();
  // Doubles while failures follow each other; starts over after a quiet second.
  if (e.backoff.count() == 0 || std::chrono::nanoseconds(now - e.backoff_until_ns) > kMaxBackoff) {
    e.backoff = kMinBackoff;
  } else {
    e.backoff = std::min<std::chrono::nanoseconds>(e.backoff * 2, kMaxBackoff);
  }
  e.backing_off = true;
  e.backoff_until_ns = now + e.backoff.count();
  timeouts_.set_backoff(c.fd, e.backoff_until_ns);
  sync_kernel(e);
}

void Registrations::end_backoff(int fd) noexcept {
  FdEntry* e = fds_.find(fd);
  if (e == nullptr) return;
  e->backing_off = false;
  sync_kernel(*e);
}

void Registrations::sync_kernel(FdEntry& e, Rearm rearm) noexcept {
  if (e.ring_read) {
    // A read in flight stays until it reports (cancelling it could lose what it read); a
    // modify_fd from the reader (its window opened again) arms the next one.
    if (!e.read_in_flight) arm_read(e);
    return;
  }
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
  if (rearm == Rearm::if_changed && armed == e.kernel_armed &&
      (!armed || interest == e.kernel_interest)) {
    return;
  }
  // Parked = no interest, oneshot: the kernel reports at most one error/hang-up, then nothing.
  const Status s = armed ? poller_.modify(e.fd, interest, e.mode, e.token())
                         : poller_.modify(e.fd, FdEvents::none, FdMode::oneshot, e.token());
  if (!s) {
    // The kernel refused (the fd was closed underneath us: EBADF, ENOENT): tell every port,
    // then end them.
    const int error = s.error().value();
    const int fd = e.fd;
    RegList regs = std::move(e.regs);
    drop_entry(fd);
    for (const auto& r : regs) {
      index_remove(r.port, fd);
      delivery_.post_error(r.port, fd, error);
      delivery_.post_final(r.port, fd, IoNotice::unregistered);
    }
    return;
  }
  e.kernel_armed = armed;
  e.kernel_interest = interest;
}

void Registrations::arm_read(FdEntry& e) noexcept {
  Registration& r = e.regs[0];
  if (poller_.reads()) {
    const ReadBuffer b = r.reader->read_buffer(e.fd);
    if (b.data == nullptr) return;  // no room: the reader's modify_fd comes back here
    if (poller_.read_into(e.fd, b, e.token())) {
      e.read_in_flight = true;
      return;
    }
    if (b.release != nullptr) b.release(b.data);  // the poller did not take it
  }
  // The poller does not read (any more): readiness again, and the reader reads itself. The
  // modify reports data already in the pipe (SEMANTICS 17).
  e.ring_read = false;
  e.read_in_flight = false;
  sync_kernel(e, Rearm::always);
}

void Registrations::dispatch_read(FdEntry& e, const PollEvent& pe) noexcept {
  Registration& r = e.regs[0];
  delivery_.count_ready();
  // The reader only sends commands back (never edits fds_), so `e` and `r` stay valid.
  if (auto done = poller_.take_read(e.fd)) {
    e.read_in_flight = false;
    r.reader->on_read(e.fd, done->buffer, done->result);
    arm_read(e);
  } else {
    r.reader->on_ready(e.fd, pe.events & (r.interest | kAlwaysReported));
  }
}

void Registrations::drop_entry(int fd, bool kernel) noexcept {
  if (kernel) (void)poller_.remove(fd);  // fails harmlessly when the fd is already gone
  timeouts_.clear_backoff(fd);
  fds_.erase(fd);
  update_size();
}

void Registrations::dispatch(const PollEvent& pe) noexcept {
  const int fd = static_cast<int>(static_cast<std::uint32_t>(pe.token));
  FdEntry* found = fds_.find(fd);
  // Stale: the registration ended (or was replaced) earlier in this pass.
  if (found == nullptr || found->token() != pe.token) return;
  FdEntry& e = *found;
  if (e.ring_read) {
    dispatch_read(e, pe);
    return;
  }
  // Parked in this pass (a back-off): the kernel reports the condition again on the re-arm.
  if (!e.kernel_armed && e.mode != FdMode::oneshot) return;
  if (e.mode == FdMode::oneshot) {
    if (!e.kernel_armed) return;
    e.kernel_armed = false;  // the kernel disarmed it with this report
  }
  const std::size_t n = e.regs.size();
  for (std::size_t tried = 0; tried < n; ++tried) {
    const std::size_t i = n == 1 ? 0 : (e.next + tried) % n;  // one registration: no division
    Registration& r = e.regs[i];
    if (!r.armed || !r.has_room()) continue;
    const FdEvents events = pe.events & (r.interest | kAlwaysReported);
    if (!any(events)) continue;
    if (r.reader != nullptr) {
      // Read on this thread. The reader only sends commands back (never edits fds_), so `e`
      // and `r` stay valid across the call.
      if (r.window != 0) ++r.outstanding;
      if (e.mode == FdMode::oneshot) r.armed = false;
      e.next = static_cast<std::uint32_t>(i + 1);
      delivery_.count_ready();
      r.reader->on_ready(fd, events);
      break;
    }
    IoEvent ev;
    ev.notice = IoNotice::ready;
    ev.fd = fd;
    ev.events = events;
    const Delivery::Posted posted = delivery_.post(r.port, ev);
    if (posted == Delivery::Posted::gone) {
      // The destination is gone: drop its registration quietly (an owned fd is closed).
      (void)remove_registration(e, i);
      return;
    }
    // Not queued (out of memory): no token is spent, and a condition that still holds is
    // reported again once the fd is re-armed below (an edge is lost).
    if (posted == Delivery::Posted::dropped) break;
    if (r.window != 0) ++r.outstanding;
    if (e.mode == FdMode::oneshot) r.armed = false;
    e.next = static_cast<std::uint32_t>(i + 1);
    break;
  }
  sync_kernel(e);
}

void Registrations::teardown() noexcept {
  struct Final {
    PortId port;
    int fd;
    IoNotice notice;
  };
  std::vector<Final> finals;
  {
    struct Ended {
      int fd;
      FdOwnership ownership;
      RegList regs;
    };
    std::vector<Ended> ended;
    fds_.for_each([&](FdEntry& e) {
      ended.push_back(Ended{e.fd, e.ownership, std::move(e.regs)});
    });
    port_fds_.clear();
    // On epoll the poller is closed right after this, which ends every watch: a remove() each
    // was one epoll_ctl per fd (9,872 in fd_fanout's shutdown) for nothing.
    const bool remove = !poller_.close_drops_watches();
    for (auto& [fd, ownership, regs] : ended) {
      drop_entry(fd, remove);
      const bool owned = ownership == FdOwnership::owned;
      if (owned) close_owned(fd);  // before its notice: who hears `closed` finds the fd closed
      for (const auto& r : regs) {
        finals.push_back(Final{r.port, fd, owned ? IoNotice::closed : IoNotice::unregistered});
      }
    }
  }
  // One batch per port: a port with thousands of registrations (a server's connections) hears
  // them all in one enqueue, its isolate scheduled once — posted one at a time, the worker
  // running the isolate woke, took one notice and slept again for each (3 futex calls per fd
  // in fd_fanout's teardown). A port's notices keep their order; ports were never ordered.
  std::stable_sort(finals.begin(), finals.end(),
                   [](const Final& a, const Final& b) { return a.port < b.port; });
  std::vector<Message> batch;
  for (std::size_t i = 0; i < finals.size();) {
    const PortId port = finals[i].port;
    batch.clear();
    for (; i < finals.size() && finals[i].port == port; ++i) {
      IoEvent ev;
      ev.notice = finals[i].notice;
      ev.fd = finals[i].fd;
      batch.push_back(to_message(ev));
    }
    (void)delivery_.post_batch(port, batch);
  }
}

}  // namespace evh::detail

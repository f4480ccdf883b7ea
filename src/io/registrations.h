// Registrations: the event handler's fd registrations and what the kernel is told about them.
//
// A registration is identified by (fd, port). An fd has one FdEntry holding one Registration, or
// several for a listening socket shared round-robin; each entry is watched by the poller under a
// token carrying a generation, so readiness collected before a registration ended (or before
// its fd number was reused) never reaches the new one. An index port → fds makes ending every
// registration of a closed port O(its fds).
//
// Flow control (Dart's token scheme): each registration has a window of notifications not yet
// returned; the kernel is asked to watch the union of the interests of the registrations that
// are armed and have room, and the fd is parked (no interest, oneshot) when none has — so a slow
// receiver is neither flooded nor the cause of a busy loop. Any (re)arm reports a condition that
// already holds (SEMANTICS 17).
//
// A registration made with a reader (FdReader, io/commands.h) hands its readiness to the reader
// on the driving thread; its notices (error, the final one) still go to its port.
//
// Each method runs one command (or one event) on the event handler's I/O thread, and reports to
// ports through Delivery; none blocks. `size()` may be read from any thread.
#pragma once

#include <evh/event_handler.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "io/commands.h"
#include "io/delivery.h"
#include "io/poller.h"
#include "io/sys.h"
#include "io/timeouts.h"

namespace evh::detail {

class Registrations {
 public:
  Registrations(Poller& poller, Sys& sys, Delivery& delivery, IoTimeouts& timeouts) noexcept
      : poller_(poller), sys_(sys), delivery_(delivery), timeouts_(timeouts) {}
  Registrations(const Registrations&) = delete;
  Registrations& operator=(const Registrations&) = delete;

  void add(const Command& c) noexcept;
  void modify(const Command& c) noexcept;
  // remove_fd (`unregistered`) or close_fd (`closed`): the registration's final notice.
  void end(const Command& c, IoNotice final_notice) noexcept;
  void return_tokens(const Command& c) noexcept;
  // accept() ran out of fds or memory: park the registration for a back-off.
  void back_off(const Command& c) noexcept;
  // `fd`'s back-off is over: arm it again.
  void end_backoff(int fd) noexcept;
  // The port has closed: end its registrations without notices (owned fds are closed).
  void drop_port(PortId port) noexcept;
  // Readiness from the poller, to the registration(s) the token names.
  void dispatch(const PollEvent& event) noexcept;
  // A hint, no effect on state: starts loading the entry `event` names, so that dispatching a
  // batch overlaps its cache misses instead of taking one per event in turn.
  void prefetch(const PollEvent& event) const noexcept {
    fds_.prefetch(static_cast<int>(static_cast<std::uint32_t>(event.token)));
  }
  // Shutdown: every registration ends with its final notice.
  void teardown() noexcept;

  std::uint64_t size() const noexcept { return size_.load(std::memory_order_relaxed); }

 private:
  struct Registration {
    PortId port = PortId::none;
    FdEvents interest = FdEvents::none;
    std::uint32_t window = 0;  // 0: unlimited
    std::uint32_t outstanding = 0;
    bool armed = true;           // false after a oneshot report, until modify
    FdReader* reader = nullptr;  // readiness is handed to it instead of posted to `port`

    bool has_room() const noexcept { return window == 0 || outstanding < window; }
  };
  // An fd's registrations, the first one inline: an fd has one, except a listening socket
  // shared round-robin, so dispatch() reads the entry's line and no heap block (a std::vector
  // here cost a second cache miss per event in fd_fanout). More than one: all of them on the
  // heap. Registration is trivially copyable.
  class RegList {
   public:
    RegList() noexcept = default;
    RegList(RegList&& o) noexcept { take(o); }
    RegList& operator=(RegList&& o) noexcept {
      if (this != &o) {
        release();
        take(o);
      }
      return *this;
    }
    RegList(const RegList&) = delete;
    RegList& operator=(const RegList&) = delete;
    ~RegList() { release(); }

    Registration* data() noexcept { return cap_ == 1 ? &one_ : heap_; }
    const Registration* data() const noexcept { return cap_ == 1 ? &one_ : heap_; }
    Registration* begin() noexcept { return data(); }
    Registration* end() noexcept { return data() + size_; }
    const Registration* begin() const noexcept { return data(); }
    const Registration* end() const noexcept { return data() + size_; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    Registration& operator[](std::size_t i) noexcept { return data()[i]; }
    // Throws std::bad_alloc when it must grow and cannot; nothing has changed then.
    void push_back(const Registration& r);
    void pop_back() noexcept { --size_; }
    void erase(Registration* pos) noexcept {
      std::copy(pos + 1, end(), pos);
      --size_;
    }

   private:
    void release() noexcept {
      if (cap_ != 1) delete[] heap_;
      heap_ = nullptr;
      size_ = 0;
      cap_ = 1;
    }
    void take(RegList& o) noexcept {
      size_ = o.size_;
      cap_ = o.cap_;
      one_ = o.one_;
      heap_ = o.heap_;
      o.heap_ = nullptr;
      o.size_ = 0;
      o.cap_ = 1;
    }
    std::uint32_t size_ = 0;
    std::uint32_t cap_ = 1;  // 1: the one inline slot; else heap_'s capacity
    Registration one_{};
    Registration* heap_ = nullptr;
  };
  // What dispatch() reads comes first and fits one 64-byte line (the alignment keeps it there):
  // the token check, the mode, the kernel's state and the inline registration.
  struct alignas(64) FdEntry {
    int fd = -1;
    std::uint32_t generation = 0;
    FdMode mode = FdMode::level;
    FdSharing sharing = FdSharing::exclusive;
    FdOwnership ownership = FdOwnership::borrowed;  // owned: closed when the entry ends
    // What the kernel was last told: armed for `kernel_interest`, or parked.
    bool kernel_armed = true;
    bool backing_off = false;
    // A reader's fd the poller reads for (Poller::read_into): one read in flight at a time, in
    // place of readiness; `read_in_flight` until it reports.
    bool ring_read = false;
    bool read_in_flight = false;
    FdEvents kernel_interest = FdEvents::none;
    std::uint32_t next = 0;  // round-robin cursor (shared fds)
    RegList regs;
    std::chrono::nanoseconds backoff{0};
    std::int64_t backoff_until_ns = 0;  // CLOCK_MONOTONIC

    std::uint64_t token() const noexcept {
      return (std::uint64_t{generation} << 32) | static_cast<std::uint32_t>(fd);
    }
  };
  static_assert(sizeof(FdEntry) == 128, "the hot line and the cold tail of an fd's entry");
  // When sync_kernel() tells the kernel: only on a change, or always (modify_fd's re-check of
  // conditions that already hold).
  enum class Rearm : std::uint8_t { if_changed, always };

  // fd → FdEntry, the entries held by value in chunks of kChunk fds, indexed by the fd number
  // (small, dense integers, as libuv's and libevent's fd arrays assume). A readiness costs one
  // look-up in a short array of chunk pointers and one load of the entry, where a hash map cost
  // a division, its bucket and its node: with 10,000 watched pipes (fd_fanout) the hash map's
  // misses were 85 % of dispatch() and most of evh's own CPU per event. A chunk is allocated the
  // first time one of its fds is registered and kept until the handler goes (64 entries of 128
  // bytes); entries never move, so a reference stays valid until its own erase().
  class FdTable {
   public:
    // The live entry of `fd`, or null.
    FdEntry* find(int fd) noexcept {
      const auto i = static_cast<std::size_t>(static_cast<unsigned>(fd)) / kChunk;
      if (fd < 0 || i >= chunks_.size() || !chunks_[i]) return nullptr;
      FdEntry& e = chunks_[i]->at[static_cast<unsigned>(fd) % kChunk];
      return e.fd == fd ? &e : nullptr;
    }
    // Makes `entry` (entry.fd >= 0, not present) the entry of its fd. Throws std::bad_alloc
    // when a chunk cannot be allocated; nothing has changed then.
    FdEntry& insert(FdEntry&& entry);
    // Ends `fd`'s entry (its slot is free again). Nothing when there is none.
    void erase(int fd) noexcept;
    std::size_t size() const noexcept { return size_; }
    void prefetch(int fd) const noexcept {
      const auto i = static_cast<std::size_t>(static_cast<unsigned>(fd)) / kChunk;
      if (fd >= 0 && i < chunks_.size() && chunks_[i]) {
        __builtin_prefetch(&chunks_[i]->at[static_cast<unsigned>(fd) % kChunk]);
      }
    }
    // Calls `f(entry)` for every live entry; `f` must not insert or erase.
    template <class F>
    void for_each(F&& f) {
      for (auto& c : chunks_) {
        if (!c) continue;
        for (FdEntry& e : c->at) {
          if (e.fd >= 0) f(e);
        }
      }
    }

   private:
    static constexpr std::size_t kChunk = 64;
    struct Chunk {
      FdEntry at[kChunk];  // fd == -1: free
    };
    std::vector<std::unique_ptr<Chunk>> chunks_;
    std::size_t size_ = 0;
  };

  Registration* find(FdEntry& e, PortId port) noexcept;
  void sync_kernel(FdEntry& e, Rearm rearm = Rearm::if_changed) noexcept;
  // A ring-read entry: the reader's next buffer to the poller, unless it has no room (it asks
  // again with modify_fd). Falls back to readiness when the poller stops reading.
  void arm_read(FdEntry& e) noexcept;
  // A ring-read entry's report: the read's result (or readiness) to its reader, then the next
  // read.
  void dispatch_read(FdEntry& e, const PollEvent& event) noexcept;
  // `kernel`: remove the fd from the poller too (false only at the teardown, where the poller's
  // close drops every watch: Poller::close_drops_watches).
  void drop_entry(int fd, bool kernel = true) noexcept;
  // Removes the registration at `index` of `e` without a notice; ends the entry (closing an
  // owned fd) when it was the last. False when the entry is gone.
  bool remove_registration(FdEntry& e, std::size_t index) noexcept;
  void index_add(PortId port, int fd);
  void index_remove(PortId port, int fd) noexcept;
  // Closes an fd the handler owns. Once only, whatever it returns: on Linux the fd is released
  // even when close() fails with EINTR, and a second close could close another file.
  void close_owned(int fd) noexcept { (void)sys_.close(fd); }
  void update_size() noexcept { size_.store(fds_.size(), std::memory_order_relaxed); }

  Poller& poller_;
  Sys& sys_;
  Delivery& delivery_;
  IoTimeouts& timeouts_;
  FdTable fds_;
  // Which fds each port has registrations on: what drop_port ends.
  std::unordered_map<PortId, std::vector<int>> port_fds_;
  std::uint32_t next_generation_ = 1;
  std::atomic<std::uint64_t> size_{0};
};

}  // namespace evh::detail

#include "raw_floor.h"

#include <evh/runtime.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace evh::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::nanoseconds kSpinFloor{1000};

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace

SpinWindow::SpinWindow()
    : max_(RuntimeOptions{}.spin_before_park), current_(RuntimeOptions{}.spin_before_park) {}

void SpinWindow::hit() noexcept {
  current_ = std::min(current_ * 2, max_);
}

void SpinWindow::miss() noexcept {
  current_ = std::max(current_ / 2, std::min(kSpinFloor, max_));
}

EventfdQueue::EventfdQueue(Wait wait) : fd_(eventfd(0, EFD_CLOEXEC)), wait_(wait) {
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
}

EventfdQueue::~EventfdQueue() {
  close(fd_);
}

void EventfdQueue::push(std::uint64_t value) {
  bool was_empty;
  {
    std::lock_guard lock(mu_);
    was_empty = items_.empty();
    items_.push_back(value);
  }
  if (!was_empty) return;  // the push that ended the emptiness has done what follows
  // seq_cst: pairs with the consumer's store of sleeping_ (see the header).
  nonempty_.store(true, std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_seq_cst)) {
    const std::uint64_t one = 1;
    while (write(fd_, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }
}

void EventfdQueue::wait_nonempty() {
  if (nonempty_.load(std::memory_order_acquire)) return;
  if (wait_ == Wait::spin) {
    const auto until = Clock::now() + spin_.window();
    for (std::uint32_t i = 1;; ++i) {
      if (nonempty_.load(std::memory_order_acquire)) {
        spin_.hit();
        return;
      }
      cpu_relax();
      if ((i & 15) == 0 && Clock::now() >= until) break;
    }
    spin_.miss();
  }
  for (;;) {
    // seq_cst: pairs with the producer's store of nonempty_ (see the header).
    sleeping_.store(true, std::memory_order_seq_cst);
    if (nonempty_.load(std::memory_order_seq_cst)) break;
    std::uint64_t count;
    while (read(fd_, &count, sizeof count) < 0 && errno == EINTR) {
    }
    ++wakeups_;
    sleeping_.store(false, std::memory_order_relaxed);
    if (nonempty_.load(std::memory_order_acquire)) return;
    // A write meant for an earlier sleep (its item was taken without sleeping): sleep again.
  }
  sleeping_.store(false, std::memory_order_relaxed);
}

void EventfdQueue::pop_all(std::vector<std::uint64_t>& out) {
  wait_nonempty();
  std::lock_guard lock(mu_);
  out.swap(items_);
  nonempty_.store(false, std::memory_order_relaxed);  // under mu_: no push is between
}

std::uint64_t EventfdQueue::pop() {
  if (next_ == buffer_.size()) {
    buffer_.clear();
    next_ = 0;
    pop_all(buffer_);
  }
  return buffer_[next_++];
}

RawPool::RawPool(unsigned workers) {
  threads_.reserve(workers);
  for (unsigned i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
}

RawPool::~RawPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void RawPool::post(RawTask& task) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(&task);
  }
  ready_.notify_one();
}

void RawPool::work() {
  for (;;) {
    RawTask* task;
    {
      std::unique_lock lock(mu_);
      ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      task = queue_.front();
      queue_.pop_front();
    }
    task->run();
  }
}

}  // namespace evh::bench

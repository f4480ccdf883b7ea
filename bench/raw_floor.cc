#include "raw_floor.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace evh::bench {

EventfdQueue::EventfdQueue() : fd_(eventfd(0, EFD_CLOEXEC)) {
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
  // The consumer only sleeps after seeing the queue empty under the lock, so the push that ends
  // the emptiness is the one that must wake it; later pushes find it awake or about to drain.
  if (was_empty) {
    const std::uint64_t one = 1;
    while (write(fd_, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }
}

void EventfdQueue::wait_signal() {
  std::uint64_t count;
  while (read(fd_, &count, sizeof count) < 0 && errno == EINTR) {
  }
  ++wakeups_;
}

std::uint64_t EventfdQueue::pop() {
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (!items_.empty()) {
        const std::uint64_t value = items_.front();
        items_.pop_front();
        return value;
      }
    }
    wait_signal();
  }
}

void EventfdQueue::pop_all(std::deque<std::uint64_t>& out) {
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (!items_.empty()) {
        out.swap(items_);
        return;
      }
    }
    wait_signal();
  }
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

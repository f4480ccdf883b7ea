// bench/peer_libuv.cc — the libuv peer (peers.h): one uv_loop_t per run, driven the way the
// libuv documentation and its own benchmarks do it.
//   - messages: a mutex-protected vector, swapped out whole by a uv_async_t callback; every
//     post calls uv_async_send(), which libuv coalesces itself (only the first send after a
//     drain writes its eventfd);
//   - timers: one uv_timer_t per timer, at millisecond resolution (libuv's only one), relative
//     to the loop's cached time;
//   - fds: one uv_poll_t per fd, UV_READABLE (level-triggered; the callback reads it empty);
//   - processes: uv_spawn, exits through libuv's SIGCHLD handling, stdout through a uv_pipe_t.

#include <uv.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "measure.h"
#include "peers.h"
#include "timer_common.h"

namespace evh::bench {
namespace {

void check_uv(int rc, const char* what) {
  if (rc != 0) throw BenchError(std::string(what) + ": " + uv_strerror(rc));
}

// Closes every handle still open on `loop`, runs the loop until their close callbacks ran, and
// closes the loop.
void close_loop(uv_loop_t* loop) {
  uv_walk(
      loop,
      [](uv_handle_t* h, void*) {
        if (uv_is_closing(h) == 0) uv_close(h, nullptr);
      },
      nullptr);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
}

// ---- messages --------------------------------------------------------------------------------

class UvMessageLoop final : public PeerMessageLoop {
 public:
  explicit UvMessageLoop(std::function<void(std::uint64_t)> on_message)
      : on_message_(std::move(on_message)) {
    check_uv(uv_loop_init(&loop_), "uv_loop_init");
    async_.data = this;
    check_uv(uv_async_init(&loop_, &async_, &UvMessageLoop::on_async), "uv_async_init");
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
  }
  ~UvMessageLoop() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    uv_async_send(&async_);
    thread_.join();
    close_loop(&loop_);
  }

  void post(std::uint64_t value) override {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(value);
    }
    uv_async_send(&async_);
  }
  std::optional<std::uint64_t> wakeups() const override {
    return wakeups_.load(std::memory_order_relaxed);
  }
  void reset_wakeups() override { wakeups_.store(0, std::memory_order_relaxed); }

 private:
  static void on_async(uv_async_t* handle) {
    auto& self = *static_cast<UvMessageLoop*>(handle->data);
    self.wakeups_.fetch_add(1, std::memory_order_relaxed);
    bool stop;
    {
      std::lock_guard lock(self.mu_);
      self.batch_.swap(self.queue_);
      stop = self.stopping_;
    }
    for (const std::uint64_t v : self.batch_) self.on_message_(v);
    self.batch_.clear();
    // Closing the only handle ends uv_run().
    if (stop) uv_close(reinterpret_cast<uv_handle_t*>(&self.async_), nullptr);
  }

  std::function<void(std::uint64_t)> on_message_;
  uv_loop_t loop_{};
  uv_async_t async_{};
  std::mutex mu_;
  std::vector<std::uint64_t> queue_;  // guarded by mu_
  bool stopping_ = false;             // guarded by mu_
  std::vector<std::uint64_t> batch_;  // loop thread only: swapped with queue_, capacity kept
  std::atomic<std::uint64_t> wakeups_{0};
  std::thread thread_;
};

std::unique_ptr<PeerMessageLoop> start_message_loop(std::function<void(std::uint64_t)> f) {
  return std::make_unique<UvMessageLoop>(std::move(f));
}

// ---- timers ----------------------------------------------------------------------------------

// libuv adds a timeout to its loop time (uv_now, in ms, refreshed only when the loop runs): the
// reference of its relative API. The delay asked for is the requested deadline minus that
// reference, rounded up to libuv's millisecond, so that libuv's own deadline is never earlier
// than the benchmark's; the rounding shows as lateness, as it does for a libuv user.
std::uint64_t delay_ms(uv_loop_t* loop, std::int64_t deadline_ns) {
  const std::int64_t rel = deadline_ns - static_cast<std::int64_t>(uv_now(loop)) * 1'000'000;
  return rel <= 0 ? 0 : static_cast<std::uint64_t>((rel + 999'999) / 1'000'000);
}

struct UvBatch {
  BatchBook* book;
  uv_timer_t* timers;
};

// Loop iterations (wakeups) are counted by an unreferenced uv_check_t, which runs once per
// iteration after the poll.
BatchOutcome timer_batch(BatchBook& book) {
  const std::size_t n = book.count();
  uv_loop_t loop;
  check_uv(uv_loop_init(&loop), "uv_loop_init");
  BatchOutcome o;
  uv_check_t iterations;
  iterations.data = &o;
  uv_check_init(&loop, &iterations);
  uv_check_start(&iterations,
                 [](uv_check_t* h) { ++static_cast<BatchOutcome*>(h->data)->wakeups; });
  uv_unref(reinterpret_cast<uv_handle_t*>(&iterations));

  const BatchMeter meter;
  UntouchedArray<uv_timer_t> timers(n);
  UvBatch batch{&book, timers.data()};
  book.begin_arming();
  for (std::size_t i = 0; i < n; ++i) {
    uv_timer_t& t = timers.construct(i);
    uv_timer_init(&loop, &t);
    t.data = &batch;
    check_uv(uv_timer_start(
                 &t,
                 [](uv_timer_t* h) {
                   auto& b = *static_cast<UvBatch*>(h->data);
                   b.book->fired(static_cast<std::size_t>(h - b.timers));
                 },
                 delay_ms(&loop, book.deadline(i)), 0),
             "uv_timer_start");
  }
  book.end_arming();
  meter.armed(o);
  o.wakeups = 0;
  // Returns once no timer is active: every one has fired.
  uv_run(&loop, UV_RUN_DEFAULT);
  meter.done(o);
  close_loop(&loop);
  return o;
}

void never_fires(uv_timer_t*) {}

// uv_timer_start takes "10 s from the loop's time"; the loop does not run during the phases, as
// in a callback that starts many timers, so its time stays where it was.
ChurnTimes timer_churn(std::uint64_t n, const std::vector<std::uint32_t>& order,
                       ChurnPhases phases) {
  uv_loop_t loop;
  check_uv(uv_loop_init(&loop), "uv_loop_init");
  std::vector<uv_timer_t> timers(phases.bulk ? n : 1);
  for (auto& t : timers) uv_timer_init(&loop, &t);
  uv_update_time(&loop);
  ChurnTimes t;
  const PhaseMeter phase;
  if (phases.bulk) {
    std::int64_t t0 = now_ns();
    for (auto& timer : timers) uv_timer_start(&timer, &never_fires, 10'000, 0);
    t.start_ns = static_cast<double>(now_ns() - t0);
    t0 = now_ns();
    for (const std::uint32_t i : order) uv_timer_stop(&timers[i]);
    t.cancel_ns = static_cast<double>(now_ns() - t0);
  }
  if (phases.immediate) {
    uv_timer_t& one = timers[0];
    const std::int64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < n; ++i) {
      uv_timer_start(&one, &never_fires, 10'000, 0);
      uv_timer_stop(&one);
    }
    t.immediate_ns = static_cast<double>(now_ns() - t0);
  }
  t.cpu_ms = phase.cpu_ms();
  close_loop(&loop);
  return t;
}

// ---- fds -------------------------------------------------------------------------------------

void serve_fds(std::span<const int> fds, const std::function<void(int)>& on_readable,
               const std::function<void()>& client) {
  uv_loop_t loop;
  check_uv(uv_loop_init(&loop), "uv_loop_init");
  std::vector<uv_poll_t> polls(fds.size());
  for (std::size_t i = 0; i < fds.size(); ++i) {
    check_uv(uv_poll_init(&loop, &polls[i], fds[i]), "uv_poll_init");
    polls[i].data = const_cast<std::function<void(int)>*>(&on_readable);
    check_uv(uv_poll_start(&polls[i], UV_READABLE,
                           [](uv_poll_t* h, int status, int) {
                             if (status < 0) return;
                             uv_os_fd_t fd;
                             uv_fileno(reinterpret_cast<uv_handle_t*>(h), &fd);
                             (*static_cast<std::function<void(int)>*>(h->data))(fd);
                           }),
             "uv_poll_start");
  }
  uv_async_t stop;
  uv_async_init(&loop, &stop, [](uv_async_t* h) { uv_stop(h->loop); });
  std::thread thread([&loop] { uv_run(&loop, UV_RUN_DEFAULT); });
  std::exception_ptr error;
  try {
    client();
  } catch (...) {
    error = std::current_exception();
  }
  uv_async_send(&stop);
  thread.join();
  close_loop(&loop);
  if (error) std::rethrow_exception(error);
}

// ---- processes ---------------------------------------------------------------------------

// uv_spawn with the stdio a caller would pick for each job; libuv learns of exits through its
// SIGCHLD handler and waitpid() on the children it started.
struct UvSpawner {
  uv_loop_t* loop;
  std::uint64_t count;
  unsigned in_flight;
  std::uint64_t started = 0;
  std::uint64_t running = 0;
  std::vector<uv_process_t*> handles = {};
  std::string error = {};

  void start_more() {
    while (started < count && running < in_flight && error.empty()) {
      auto* h = new uv_process_t;
      handles.push_back(h);
      h->data = this;
      char* args[] = {const_cast<char*>("/bin/true"), nullptr};
      uv_stdio_container_t stdio[3];
      for (int i = 0; i < 3; ++i) {
        stdio[i].flags = UV_INHERIT_FD;
        stdio[i].data.fd = i;
      }
      uv_process_options_t o{};
      o.file = args[0];
      o.args = args;
      o.stdio_count = 3;
      o.stdio = stdio;
      o.exit_cb = [](uv_process_t* p, std::int64_t status, int) {
        auto& self = *static_cast<UvSpawner*>(p->data);
        if (status != 0) self.error = "child failed";
        --self.running;
        uv_close(reinterpret_cast<uv_handle_t*>(p), nullptr);
        self.start_more();
      };
      if (const int rc = uv_spawn(loop, h, &o); rc != 0) {
        error = std::string("uv_spawn: ") + uv_strerror(rc);
        return;
      }
      ++started;
      ++running;
    }
  }
};

std::int64_t spawn_true(std::uint64_t count, unsigned in_flight) {
  uv_loop_t loop;
  check_uv(uv_loop_init(&loop), "uv_loop_init");
  UvSpawner s{&loop, count, in_flight};
  const std::int64_t start = now_ns();
  s.start_more();
  uv_run(&loop, UV_RUN_DEFAULT);
  const std::int64_t elapsed = now_ns() - start;
  close_loop(&loop);
  for (auto* h : s.handles) delete h;
  if (!s.error.empty()) throw BenchError(s.error);
  if (s.started != count) throw BenchError("libuv did not start every child");
  return elapsed;
}

struct UvCat {
  uv_process_t process{};
  uv_pipe_t out{};
  std::uint64_t bytes = 0;
  std::vector<char> buf = std::vector<char>(64 * 1024);
  std::int64_t exit_status = -1;
};

std::uint64_t stream_cat(int stdin_fd) {
  uv_loop_t loop;
  check_uv(uv_loop_init(&loop), "uv_loop_init");
  UvCat cat;
  check_uv(uv_pipe_init(&loop, &cat.out, 0), "uv_pipe_init");
  cat.out.data = &cat;
  cat.process.data = &cat;
  char* args[] = {const_cast<char*>("/bin/cat"), nullptr};
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_INHERIT_FD;
  stdio[0].data.fd = stdin_fd;
  stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = reinterpret_cast<uv_stream_t*>(&cat.out);
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  uv_process_options_t o{};
  o.file = args[0];
  o.args = args;
  o.stdio_count = 3;
  o.stdio = stdio;
  o.exit_cb = [](uv_process_t* p, std::int64_t status, int) {
    static_cast<UvCat*>(p->data)->exit_status = status;
    uv_close(reinterpret_cast<uv_handle_t*>(p), nullptr);
  };
  check_uv(uv_spawn(&loop, &cat.process, &o), "uv_spawn");
  check_uv(uv_read_start(
               reinterpret_cast<uv_stream_t*>(&cat.out),
               [](uv_handle_t* h, std::size_t, uv_buf_t* buf) {
                 auto& c = *static_cast<UvCat*>(h->data);
                 *buf = uv_buf_init(c.buf.data(), static_cast<unsigned>(c.buf.size()));
               },
               [](uv_stream_t* s, ssize_t n, const uv_buf_t*) {
                 auto& c = *static_cast<UvCat*>(s->data);
                 if (n > 0) c.bytes += static_cast<std::uint64_t>(n);
                 if (n < 0) uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);  // EOF
               }),
           "uv_read_start");
  uv_run(&loop, UV_RUN_DEFAULT);
  close_loop(&loop);
  if (cat.exit_status != 0) throw BenchError("cat failed");
  return cat.bytes;
}

}  // namespace

const PeerImpl& libuv_peer() {
  static const PeerImpl impl{"libuv",    &start_message_loop, &timer_batch, &timer_churn,
                             &serve_fds, &spawn_true,         &stream_cat};
  return impl;
}

}  // namespace evh::bench

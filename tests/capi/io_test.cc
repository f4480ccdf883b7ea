// The C API's fds, port timeouts, child processes, signals and the isolate mutex (evh.h only).
#include <arpa/inet.h>
#include <evh/evh.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <string>
#include <vector>

#include "capi_test_util.h"

namespace evh_capi_test {
namespace {

evh_io_event io_event(Receiver& rx) {
  evh_message* m = rx.next();
  evh_io_event ev{};
  EXPECT_EQ(evh_message_io_event(m, &ev), EVH_OK);
  evh_message_destroy(m);
  return ev;
}

// A pipe's readiness arrives as decoded events; closing the registration gives exactly one
// final EVH_IO_CLOSED.
TEST(CapiFd, PipeReadinessAndClose) {
  Runtime rt;
  Receiver rx(rt);
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  evh_fd_options o = EVH_FD_OPTIONS_INIT;
  o.mode = EVH_FD_EDGE;
  ASSERT_EQ(evh_fd_add(rt, fds[0], rx.port(), EVH_READABLE, &o), EVH_OK);
  ASSERT_EQ(write(fds[1], "x", 1), 1);
  evh_io_event ev = io_event(rx);
  EXPECT_EQ(ev.notice, EVH_IO_READY);
  EXPECT_EQ(ev.fd, fds[0]);
  EXPECT_NE(ev.events & EVH_READABLE, 0u);
  ASSERT_EQ(evh_fd_modify(rt, fds[0], rx.port(), EVH_READABLE | EVH_READ_CLOSED), EVH_OK);
  ASSERT_EQ(evh_fd_close(rt, fds[0], rx.port()), EVH_OK);
  // A re-arm reports the unread byte again (no edge lost), then the final notice.
  for (;;) {
    ev = io_event(rx);
    if (ev.notice != EVH_IO_READY) break;
  }
  EXPECT_EQ(ev.notice, EVH_IO_CLOSED);
  EXPECT_TRUE(rx.empty());
  close(fds[1]);
}

// Level mode with tokens: one notification per returned token; remove leaves the fd open.
TEST(CapiFd, LevelTokensAndRemove) {
  Runtime rt;
  Receiver rx(rt);
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  ASSERT_EQ(evh_fd_add(rt, fds[0], rx.port(), EVH_READABLE, nullptr), EVH_OK);
  ASSERT_EQ(write(fds[1], "x", 1), 1);
  EXPECT_EQ(io_event(rx).notice, EVH_IO_READY);
  ASSERT_EQ(evh_fd_return_tokens(rt, fds[0], rx.port(), 1), EVH_OK);
  EXPECT_EQ(io_event(rx).notice, EVH_IO_READY);  // still readable: reported again
  ASSERT_EQ(evh_fd_remove(rt, fds[0], rx.port()), EVH_OK);
  EXPECT_EQ(io_event(rx).notice, EVH_IO_UNREGISTERED);
  char c;
  EXPECT_EQ(read(fds[0], &c, 1), 1);  // still ours, still open
  close(fds[0]);
  close(fds[1]);
}

// Bad registrations get codes at once; the fd stays the caller's.
TEST(CapiFd, BadRegistrationsGetCodes) {
  Runtime rt;
  Receiver rx(rt);
  EXPECT_EQ(evh_fd_add(rt, -1, rx.port(), EVH_READABLE, nullptr), -EBADF);
  char path[] = "/tmp/evh-capi-XXXXXX";
  const int file = mkstemp(path);
  ASSERT_GE(file, 0);
  unlink(path);
  EXPECT_EQ(evh_fd_add(rt, file, rx.port(), EVH_READABLE, nullptr), -EPERM);  // a regular file
  close(file);
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  EXPECT_EQ(evh_fd_add(rt, fds[0], 0, EVH_READABLE, nullptr), EVH_EUNKNOWNPORT);
  EXPECT_EQ(evh_fd_add(rt, fds[0], 424242, EVH_READABLE, nullptr), EVH_EUNKNOWNPORT);
  EXPECT_EQ(evh_fd_add(rt, fds[0], rx.port(), 0x40, nullptr), EVH_EINVAL);
  evh_fd_options o = EVH_FD_OPTIONS_INIT;
  o.mode = 3;
  EXPECT_EQ(evh_fd_add(rt, fds[0], rx.port(), EVH_READABLE, &o), EVH_EINVAL);
  o.mode = EVH_FD_LEVEL;
  o.flags = 0x10;
  EXPECT_EQ(evh_fd_add(rt, fds[0], rx.port(), EVH_READABLE, &o), EVH_EINVAL);
  o.flags = EVH_FD_OWNED;
  EXPECT_EQ(evh_fd_add(rt, fds[0], 0, EVH_READABLE, &o), EVH_EUNKNOWNPORT);
  EXPECT_EQ(fcntl(fds[0], F_GETFD), FD_CLOEXEC);  // refused: still open, still ours
  EXPECT_EQ(evh_fd_modify(rt, fds[0], rx.port(), 0x40), EVH_EINVAL);
  EXPECT_EQ(evh_port_set_timeout(rt, rx.port(), -1), EVH_EINVAL);
  close(fds[0]);
  close(fds[1]);
}

// A listening socket: readiness, then accept gives a connection, and EAGAIN when none is left.
TEST(CapiFd, AcceptConnections) {
  Runtime rt;
  Receiver rx(rt);
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 8), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  evh_fd_options o = EVH_FD_OPTIONS_INIT;
  o.flags = EVH_FD_OWNED;
  ASSERT_EQ(evh_fd_add(rt, listener, rx.port(), EVH_READABLE, &o), EVH_OK);
  const int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(io_event(rx).notice, EVH_IO_READY);
  const int conn = evh_fd_accept(rt, listener, rx.port());
  ASSERT_GE(conn, 0);
  EXPECT_EQ(evh_fd_accept(rt, listener, rx.port()), EVH_EAGAIN);
  EXPECT_EQ(write(client, "hi", 2), 2);
  char buf[2];
  ASSERT_EQ(fcntl(conn, F_SETFL, 0), 0);
  EXPECT_EQ(read(conn, buf, 2), 2);
  close(conn);
  close(client);
  ASSERT_EQ(evh_fd_close(rt, listener, rx.port()), EVH_OK);  // owned: closed by evh
  evh_io_event ev;
  do {
    ev = io_event(rx);
  } while (ev.notice == EVH_IO_READY);
  EXPECT_EQ(ev.notice, EVH_IO_CLOSED);
}

// A port timeout arrives as one EVH_IO_TIMEOUT, never before its deadline.
TEST(CapiFd, PortTimeoutNeverEarly) {
  Runtime rt;
  Receiver rx(rt);
  const int64_t deadline = evh_now() + 2 * kMs;
  ASSERT_EQ(evh_port_set_timeout(rt, rx.port(), deadline), EVH_OK);
  evh_io_event ev = io_event(rx);
  EXPECT_GE(evh_now(), deadline);
  EXPECT_EQ(ev.notice, EVH_IO_TIMEOUT);
  EXPECT_EQ(ev.deadline_ns, deadline);
  ASSERT_EQ(evh_port_set_timeout(rt, rx.port(), evh_now() + 1000 * kMs), EVH_OK);
  ASSERT_EQ(evh_port_clear_timeout(rt, rx.port()), EVH_OK);
}

// What one child said, in order, and how it ended.
struct ChildOutput {
  std::string out, err;
  int exit_code = 1000;
  int events_after_exit = 0;
};

ChildOutput collect(Receiver& rx) {
  ChildOutput c;
  for (;;) {
    evh_message* m = rx.next();
    evh_process_event ev{};
    EXPECT_EQ(evh_message_process_event(m, &ev), EVH_OK);
    if (ev.kind == EVH_PROCESS_STDOUT) c.out.append(static_cast<const char*>(ev.data), ev.size);
    if (ev.kind == EVH_PROCESS_STDERR) c.err.append(static_cast<const char*>(ev.data), ev.size);
    const bool exited = ev.kind == EVH_PROCESS_EXIT;
    if (exited) c.exit_code = ev.exit_code;
    evh_message_destroy(m);
    if (exited) break;
  }
  c.events_after_exit = rx.empty() ? 0 : 1;
  return c;
}

// A child's stdout and stderr arrive in order, the exit last; stdin is written and closed.
TEST(CapiProcess, StdoutStderrStdinAndExit) {
  Runtime rt;
  Receiver rx(rt);
  const char* argv[] = {"sh", "-c", "cat; echo err >&2; exit 3", nullptr};
  evh_process_options o = EVH_PROCESS_OPTIONS_INIT;
  o.argv = argv;
  o.events = rx.port();
  o.tag = 77;
  evh_process* p = nullptr;
  ASSERT_EQ(evh_process_spawn(rt, &o, &p), EVH_OK);
  EXPECT_GT(evh_process_pid(p), 0);
  EXPECT_EQ(evh_process_write_stdin(p, "from stdin", 10), 10);
  EXPECT_EQ(evh_process_close_stdin(p), EVH_OK);
  EXPECT_EQ(evh_process_close_stdin(p), EVH_OK);
  EXPECT_EQ(evh_process_write_stdin(p, "late", 4), -EBADF);
  const ChildOutput c = collect(rx);
  EXPECT_EQ(c.out, "from stdin");
  EXPECT_EQ(c.err, "err\n");
  EXPECT_EQ(c.exit_code, 3);
  EXPECT_EQ(c.events_after_exit, 0);
  int code = 0;
  EXPECT_EQ(evh_process_exit_code(p, &code), EVH_OK);
  EXPECT_EQ(code, 3);
  EXPECT_EQ(evh_process_kill(p, SIGTERM), -ESRCH);  // reaped: the pidfd reaches nobody
  EXPECT_EQ(evh_process_release(p), EVH_OK);
}

// Kill through the pidfd: the exit reports -signal.
TEST(CapiProcess, KillReportsTheSignal) {
  Runtime rt;
  Receiver rx(rt);
  const char* argv[] = {"sleep", "100", nullptr};
  evh_process_options o = EVH_PROCESS_OPTIONS_INIT;
  o.argv = argv;
  o.events = rx.port();
  o.stdio[0].mode = EVH_STDIO_NULL;
  o.flags = EVH_PROCESS_NEW_GROUP;
  evh_process* p = nullptr;
  ASSERT_EQ(evh_process_spawn(rt, &o, &p), EVH_OK);
  int code = 0;
  EXPECT_EQ(evh_process_exit_code(p, &code), EVH_EAGAIN);
  EXPECT_EQ(evh_process_write_stdin(p, "x", 1), EVH_EINVAL);  // stdin is not a pipe
  EXPECT_EQ(evh_process_kill_group(p, SIGTERM), EVH_OK);
  EXPECT_EQ(collect(rx).exit_code, -SIGTERM);
  EXPECT_EQ(evh_process_release(p), EVH_OK);
}

// A child tied to an isolate dies with it; ties to another runtime's isolate are refused.
TEST(CapiProcess, TiedChildDiesWithItsIsolate) {
  Runtime rt;
  Runtime other;
  Receiver rx(rt);
  evh_isolate* iso = nullptr;
  ASSERT_EQ(evh_isolate_spawn(
                rt, [](evh_isolate*, evh_message*, void*) {}, nullptr, nullptr, nullptr, &iso),
            EVH_OK);
  evh_isolate* theirs = nullptr;
  ASSERT_EQ(
      evh_isolate_spawn(
          other, [](evh_isolate*, evh_message*, void*) {}, nullptr, nullptr, nullptr, &theirs),
      EVH_OK);
  const char* argv[] = {"sleep", "100", nullptr};
  evh_process_options o = EVH_PROCESS_OPTIONS_INIT;
  o.argv = argv;
  o.events = rx.port();
  o.stdio[0].mode = EVH_STDIO_NULL;
  o.tie_to = theirs;
  evh_process* p = nullptr;
  EXPECT_EQ(evh_process_spawn(rt, &o, &p), EVH_EFOREIGN);
  EXPECT_EQ(p, nullptr);
  o.tie_to = iso;
  ASSERT_EQ(evh_process_spawn(rt, &o, &p), EVH_OK);
  ASSERT_EQ(evh_isolate_kill(iso, EVH_IMMEDIATE), EVH_OK);
  EXPECT_EQ(collect(rx).exit_code, -SIGKILL);
  EXPECT_EQ(evh_process_release(p), EVH_OK);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
  EXPECT_EQ(evh_isolate_release(theirs), EVH_OK);
}

// Spawn errors: codes, the failure in words, nothing left behind.
TEST(CapiProcess, SpawnErrors) {
  Runtime rt;
  Receiver rx(rt);
  evh_process* p = nullptr;
  evh_process_options o = EVH_PROCESS_OPTIONS_INIT;
  EXPECT_EQ(evh_process_spawn(rt, &o, &p), EVH_EINVAL);  // no argv
  const char* empty[] = {nullptr};
  o.argv = empty;
  EXPECT_EQ(evh_process_spawn(rt, &o, &p), EVH_EINVAL);
  const char* nope[] = {"evh-no-such-program", nullptr};
  o.argv = nope;
  o.events = rx.port();
  char why[128];
  o.error = why;
  o.error_capacity = sizeof why;
  EXPECT_EQ(evh_process_spawn(rt, &o, &p), -ENOENT);
  EXPECT_NE(std::string(why).find("evh-no-such-program"), std::string::npos) << why;
  o.stdio[1].mode = 9;
  EXPECT_EQ(evh_process_spawn(rt, &o, &p), EVH_EINVAL);
  o.stdio[1].mode = EVH_STDIO_PIPE;
  o.flags = 0x80;
  EXPECT_EQ(evh_process_spawn(rt, &o, &p), EVH_EINVAL);
  o.flags = EVH_PROCESS_DETACHED;  // a detached child cannot have pipes
  EXPECT_EQ(evh_process_spawn(rt, &o, &p), EVH_EINVAL);
  o.flags = 0;
  o.cwd = "/evh/no/such/dir";
  const char* truth[] = {"true", nullptr};
  o.argv = truth;
  EXPECT_EQ(evh_process_spawn(rt, &o, &p), -ENOENT);
  EXPECT_EQ(p, nullptr);
  EXPECT_EQ(evh_process_spawn(rt, nullptr, &p), EVH_EINVAL);
  EXPECT_EQ(evh_process_release(nullptr), EVH_EINVAL);
  EXPECT_EQ(evh_process_pid(nullptr), 0);
  EXPECT_TRUE(rx.empty());  // failed spawns post nothing
}

// The environment and working directory are the caller's.
TEST(CapiProcess, EnvAndCwd) {
  Runtime rt;
  Receiver rx(rt);
  const char* argv[] = {"sh", "-c", "printf '%s %s' \"$EVH_TEST\" \"$(pwd)\"", nullptr};
  const char* env[] = {"EVH_TEST=yes", "PATH=/usr/bin:/bin", nullptr};
  evh_process_options o = EVH_PROCESS_OPTIONS_INIT;
  o.argv = argv;
  o.env = env;
  o.cwd = "/";
  o.events = rx.port();
  evh_process* p = nullptr;
  ASSERT_EQ(evh_process_spawn(rt, &o, &p), EVH_OK);
  const ChildOutput c = collect(rx);
  EXPECT_EQ(c.out, "yes /");
  EXPECT_EQ(c.exit_code, 0);
  EXPECT_EQ(evh_process_release(p), EVH_OK);
}

const char* const kHelper = EVH_PROC_HELPER;

// What this process's new pipes hold (F_GETPIPE_SZ), and whether it may grow one to `size`.
struct PipeLimits {
  int kernel_default = 0;
  int grown = -1;  // F_SETPIPE_SZ's answer: the size it rounded to, or -1 (refused)
  explicit PipeLimits(int size = 0) {
    int p[2];
    EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
    kernel_default = fcntl(p[0], F_GETPIPE_SZ);
    if (size > 0) grown = fcntl(p[0], F_SETPIPE_SZ, size);
    close(p[0]);
    close(p[1]);
  }
};

// The helper's "pipe-sizes" child: floods its stdout with `flood` bytes, then says on stderr
// the sizes of its stdout and stderr pipes ("524288 65536").
std::string pipe_sizes(evh_runtime* rt, Receiver& rx, evh_process_options o, std::size_t flood) {
  const std::string n = std::to_string(flood);
  const char* argv[] = {kHelper, "pipe-sizes", n.c_str(), nullptr};
  o.argv = argv;
  o.events = rx.port();
  o.stdio[0].mode = EVH_STDIO_NULL;
  evh_process* p = nullptr;
  const int e = evh_process_spawn(rt, &o, &p);
  EXPECT_EQ(e, EVH_OK) << evh_strerror(e);
  if (e != EVH_OK) return "";
  const ChildOutput c = collect(rx);
  EXPECT_EQ(c.exit_code, 0);
  EXPECT_EQ(c.out.size(), flood);
  EXPECT_EQ(evh_process_release(p), EVH_OK);
  return c.err;
}

// output_pipe_size reaches the child's pipes: 0 is evh's default (256 KiB), EVH_PIPE_SIZE_KEEP
// never grows them, a size is asked of the kernel when the child fills the pipe; a struct of an
// older caller, which ends before the field, gets the default whatever follows it in memory; a
// size out of range is refused with EVH_EINVAL and said in `error`, before anything starts.
TEST(CapiProcess, OutputPipeSizeReachesTheChildAndBadSizesAreRefused) {
  Runtime rt;
  Receiver rx(rt);
  constexpr std::size_t kFlood = std::size_t{1} << 20;  // one write: fills any pipe
  const PipeLimits limits(300'000);
  const std::string dflt = std::to_string(limits.kernel_default);

  evh_process_options o = EVH_PROCESS_OPTIONS_INIT;
  char why[160] = "";
  o.error = why;
  o.error_capacity = sizeof why;
  evh_process* p = nullptr;
  const char* argv[] = {kHelper, "pipe-sizes", "0", nullptr};
  for (std::size_t bad :
       {std::size_t{1}, std::size_t{4095}, EVH_PIPE_SIZE_MAX + 1, EVH_PIPE_SIZE_KEEP - 1}) {
    evh_process_options b = o;
    b.argv = argv;
    b.events = rx.port();
    b.output_pipe_size = bad;
    EXPECT_EQ(evh_process_spawn(rt, &b, &p), EVH_EINVAL) << bad;
    EXPECT_EQ(p, nullptr);
    EXPECT_NE(std::string(why).find("output_pipe_size " + std::to_string(bad) + " "),
              std::string::npos)
        << why;
  }
  EXPECT_TRUE(rx.empty());  // nothing started, nothing posted

  o.error = nullptr;
  o.error_capacity = 0;
  o.output_pipe_size = EVH_PIPE_SIZE_KEEP;
  EXPECT_EQ(pipe_sizes(rt, rx, o, kFlood), dflt + " " + dflt);
  o.output_pipe_size = 300'000;
  EXPECT_EQ(pipe_sizes(rt, rx, o, 10), dflt + " " + dflt);  // not filled: not grown
  if (limits.grown < 0) {
    GTEST_SKIP() << "F_SETPIPE_SZ refused for this user: pipes keep the kernel's size";
  }
  ASSERT_EQ(limits.grown, 524288);  // 300,000 rounded up to 128 pages
  EXPECT_EQ(pipe_sizes(rt, rx, o, kFlood), "524288 " + dflt);
  o.output_pipe_size = 0;
  EXPECT_EQ(pipe_sizes(rt, rx, o, kFlood), "262144 " + dflt);  // the default, 256 KiB

  // An older caller's struct ends at error_capacity: what lies after it is not read (here a
  // size that would be refused), and the default applies.
  evh_process_options older = EVH_PROCESS_OPTIONS_INIT;
  older.size = offsetof(evh_process_options, stream_window);
  older.stream_window = 1;
  older.output_pipe_size = 1;
  EXPECT_EQ(pipe_sizes(rt, rx, older, kFlood), "262144 " + dflt);
}

// stream_window reaches the child's streams. The helper's "window-probe" child writes to its
// stdout until the pipe is full, says how much it has written in all, and waits for a byte on
// stdin, round after round. With a window of W bytes and every data message kept (none
// destroyed), evh reads only while less than W is held, so the child can never have written more
// than W, one read (the pipe's size + 1) and a full pipe: checked at every round. With
// EVH_STREAM_WINDOW_UNLIMITED, waiting each round until all it wrote has arrived, it writes more
// than the 4 MiB default window would let through without a message destroyed.
TEST(CapiProcess, StreamWindowBoundsWhatTheChildGetsAhead) {
  const std::size_t pipe = static_cast<std::size_t>(PipeLimits().kernel_default);
  const std::size_t read_size = pipe + 1;                       // what evh asks of one read
  constexpr std::size_t kDefaultWindow = std::size_t{4} << 20;  // evh.h, stream_window
  struct Probe {
    Runtime rt;
    Receiver rx{rt};
    evh_process* p = nullptr;
    std::vector<evh_message*> held;  // stdout's data messages, not destroyed
    std::size_t out = 0;             // their bytes
    std::string err;
    int exit_code = 1000;

    Probe(std::size_t window, int rounds) {
      const std::string r = std::to_string(rounds);
      const char* argv[] = {kHelper, "window-probe", r.c_str(), nullptr};
      evh_process_options o = EVH_PROCESS_OPTIONS_INIT;
      o.argv = argv;
      o.events = rx.port();
      o.stream_window = window;
      o.output_pipe_size = EVH_PIPE_SIZE_KEEP;  // the pipe stays at the kernel's size
      EXPECT_EQ(evh_process_spawn(rt, &o, &p), EVH_OK);
    }
    ~Probe() {
      release();
      EXPECT_EQ(evh_process_release(p), EVH_OK);
    }
    // The next message: stdout's kept, stderr's text taken; false at the exit.
    bool next() {
      evh_message* m = rx.next();
      evh_process_event ev{};
      EXPECT_EQ(evh_message_process_event(m, &ev), EVH_OK);
      if (ev.kind == EVH_PROCESS_STDOUT) {
        out += ev.size;
        held.push_back(m);
        return true;
      }
      if (ev.kind == EVH_PROCESS_STDERR) err.append(static_cast<const char*>(ev.data), ev.size);
      if (ev.kind == EVH_PROCESS_EXIT) exit_code = ev.exit_code;
      evh_message_destroy(m);
      return ev.kind != EVH_PROCESS_EXIT;
    }
    // The child's next report: how much it has written in all.
    std::size_t report() {
      std::size_t eol;
      while ((eol = err.find('\n')) == std::string::npos) {
        if (!next()) return 0;
      }
      const std::size_t n = std::stoull(err.substr(0, eol));
      err.erase(0, eol + 1);
      return n;
    }
    void resume() { EXPECT_EQ(evh_process_write_stdin(p, "g", 1), 1); }
    void release() {
      for (evh_message* m : held) evh_message_destroy(m);
      held.clear();
    }
    // Reads to the exit, destroying what comes; the child's stdout in all.
    std::size_t finish() {
      release();
      while (next()) release();
      return out;
    }
  };

  {
    SCOPED_TRACE("window 16 KiB");
    constexpr std::size_t kWindow = 16 * 1024;
    constexpr int kRounds = 8;
    Probe probe(kWindow, kRounds);
    std::size_t written = 0;
    for (int i = 0; i < kRounds; ++i) {
      written = probe.report();
      EXPECT_LE(written, kWindow + read_size + pipe) << "round " << i;
      EXPECT_LE(probe.out, kWindow + read_size) << "round " << i;
      probe.resume();
    }
    EXPECT_EQ(probe.finish(), written);  // all of it once released, then the exit
    EXPECT_EQ(probe.exit_code, 0);
  }
  {
    SCOPED_TRACE("unlimited");
    const int rounds = static_cast<int>((kDefaultWindow + read_size + pipe) / pipe) + 2;
    Probe probe(EVH_STREAM_WINDOW_UNLIMITED, rounds);
    std::size_t written = 0;
    for (int i = 0; i < rounds; ++i) {
      const std::size_t now = probe.report();
      EXPECT_GT(now, written) << "round " << i;  // the pipe was empty: it took more
      written = now;
      while (probe.out < written && probe.next()) {
      }
      ASSERT_EQ(probe.out, written) << "round " << i;
      probe.resume();
    }
    EXPECT_GT(written, kDefaultWindow + read_size + pipe);
    EXPECT_EQ(probe.finish(), written);
    EXPECT_EQ(probe.exit_code, 0);
  }
}

// A struct from a caller whose evh.h is newer, setting a field this library lacks, is refused.
TEST(CapiProcess, ANewerCallersFieldIsRefused) {
  Runtime rt;
  struct {
    evh_process_options known;
    std::uint64_t unknown;
  } n{EVH_PROCESS_OPTIONS_INIT, 1};
  n.known.size = sizeof n;
  const char* argv[] = {"true", nullptr};
  n.known.argv = argv;
  n.known.stdio[1].mode = EVH_STDIO_NULL;
  n.known.stdio[2].mode = EVH_STDIO_NULL;
  evh_process* p = nullptr;
  EXPECT_EQ(evh_process_spawn(rt, &n.known, &p), EVH_EOPTIONS);
  EXPECT_EQ(p, nullptr);
}

// A signal reaches every watcher's port; SIGKILL cannot be watched.
TEST(CapiSignal, WatchedSignalArrives) {
  Runtime rt;
  Receiver rx(rt);
  evh_signal_watcher* w = nullptr;
  EXPECT_EQ(evh_signal_watch(rt, SIGKILL, rx.port(), &w), EVH_EINVAL);
  EXPECT_EQ(evh_signal_watch(rt, SIGUSR2, 0, &w), EVH_EUNKNOWNPORT);
  ASSERT_EQ(evh_signal_watch(rt, SIGUSR2, rx.port(), &w), EVH_OK);
  ASSERT_EQ(kill(getpid(), SIGUSR2), 0);
  evh_message* m = rx.next();
  evh_signal_event ev{};
  ASSERT_EQ(evh_message_signal_event(m, &ev), EVH_OK);
  EXPECT_EQ(ev.signal, SIGUSR2);
  EXPECT_GE(ev.count, 1u);
  evh_message_destroy(m);
  EXPECT_EQ(evh_signal_stop(w), EVH_OK);
  EXPECT_EQ(evh_signal_stop(w), EVH_OK);
  EXPECT_EQ(evh_signal_destroy(w), EVH_OK);
  EXPECT_EQ(evh_signal_destroy(nullptr), EVH_EINVAL);
}

struct MutexCtx {
  evh_runtime* rt;
  evh_port_id reply;
  evh_mutex* mu;
  void report(const std::string& s) const {
    EXPECT_EQ(evh_post(rt, reply, s.data(), s.size(), 0), EVH_OK);
  }
};

// The isolate mutex: a holder killed while holding it hands it to the next taker with
// EVH_EOWNERDEAD; repaired, it works again. Misuse gets codes.
TEST(CapiMutex, OwnerDiedThenRepaired) {
  Runtime rt;
  Receiver rx(rt);
  evh_mutex* mu = nullptr;
  ASSERT_EQ(evh_mutex_create(&mu), EVH_OK);
  EXPECT_EQ(evh_mutex_create(nullptr), EVH_EINVAL);
  MutexCtx ctx{rt, rx.port(), mu};
  evh_isolate* holder = nullptr;
  ASSERT_EQ(evh_isolate_spawn(
                rt,
                [](evh_isolate* self, evh_message*, void* user) {
                  auto* c = static_cast<MutexCtx*>(user);
                  const int first = evh_mutex_lock(c->mu, self);
                  const int again = evh_mutex_lock(c->mu, self);
                  c->report(std::to_string(first) + " " + std::to_string(again));
                },
                &ctx, nullptr, nullptr, &holder),
            EVH_OK);
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(holder), "lock"), EVH_OK);
  EXPECT_EQ(rx.text(), "0 " + std::to_string(EVH_EDEADLK));
  EXPECT_EQ(evh_mutex_destroy(mu), EVH_EBUSY);  // held
  EXPECT_EQ(evh_mutex_lock(mu, holder), EVH_EWRONGTHREAD);
  ASSERT_EQ(evh_isolate_add_exit_listener(holder, rx.port()), EVH_OK);
  ASSERT_EQ(evh_isolate_kill(holder, EVH_IMMEDIATE), EVH_OK);
  EXPECT_EQ(rx.exit().reason, EVH_EXIT_KILLED);

  evh_isolate* next = nullptr;
  ASSERT_EQ(evh_isolate_spawn(
                rt,
                [](evh_isolate* self, evh_message*, void* user) {
                  auto* c = static_cast<MutexCtx*>(user);
                  std::string r;
                  r += std::to_string(evh_mutex_unlock(c->mu, self)) + " ";  // not held yet
                  r += std::to_string(evh_mutex_try_lock_for(c->mu, self, EVH_FOREVER)) + " ";
                  r += std::to_string(evh_mutex_mark_consistent(c->mu, self)) + " ";
                  r += std::to_string(evh_mutex_mark_consistent(c->mu, self)) +
                       " ";  // nothing to clear
                  r += std::to_string(evh_mutex_unlock(c->mu, self)) + " ";
                  r += std::to_string(evh_mutex_try_lock(c->mu, self)) + " ";
                  r += std::to_string(evh_mutex_try_lock_for(c->mu, self, -1)) + " ";
                  r += std::to_string(evh_mutex_unlock(c->mu, self));
                  c->report(r);
                },
                &ctx, nullptr, nullptr, &next),
            EVH_OK);
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(next), "go"), EVH_OK);
  EXPECT_EQ(rx.text(), std::to_string(EVH_EPERM) + " " + std::to_string(EVH_EOWNERDEAD) + " 0 " +
                           std::to_string(EVH_EINVAL) + " 0 0 " + std::to_string(EVH_EINVAL) +
                           " 0");
  EXPECT_EQ(evh_mutex_destroy(mu), EVH_OK);
  EXPECT_EQ(evh_isolate_release(holder), EVH_OK);
  EXPECT_EQ(evh_isolate_release(next), EVH_OK);
}

}  // namespace
}  // namespace evh_capi_test

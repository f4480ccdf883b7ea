// evh_proc_helper: the child (and parent) programs the process tests start.
//   fds              prints the fd numbers open in it (from /proc/self/fd), space-separated
//   exit N           exits with code N at once
//   sleep            waits until killed
//   echo-stderr TXT  writes TXT to stderr, then exits 0
//   both THEN        writes "out" to stdout and "err" to stderr, then exits 3 (THEN = exit) or
//                    waits until killed (THEN = sleep)
//   pipe-sizes N     writes N bytes to stdout in one write(), then prints F_GETPIPE_SZ of its
//                    fds 1 and 2 to stderr ("65536 65536")
//   window-probe R   R rounds of: write to stdout (made non-blocking) until the pipe is full,
//                    print on stderr how many bytes it has written in all and a newline, read
//                    one byte from stdin; then exits 0 (a stream window's test: what the child
//                    got ahead of its reader)
//   tied-parent      starts `evh_proc_helper sleep` tied to this process (ParentDeath), prints
//                    the child's pid and a newline, then waits until killed
#include <dirent.h>
#include <errno.h>
#include <evh/process.h>
#include <evh/runtime.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

int list_fds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return 2;
  const int own = ::dirfd(dir);
  std::string out;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const int fd = std::atoi(e->d_name);
    if (fd == own) continue;
    if (!out.empty()) out += ' ';
    out += e->d_name;
  }
  ::closedir(dir);
  out += '\n';
  return ::write(1, out.data(), out.size()) == static_cast<ssize_t>(out.size()) ? 0 : 3;
}

int window_probe(int rounds) {
  if (::fcntl(1, F_SETFL, ::fcntl(1, F_GETFL) | O_NONBLOCK) != 0) return 3;
  const std::string block(4096, 'w');
  unsigned long long total = 0;
  for (int i = 0; i < rounds; ++i) {
    for (;;) {
      const ssize_t n = ::write(1, block.data(), block.size());
      if (n > 0) {
        total += static_cast<unsigned long long>(n);
      } else if (n < 0 && errno == EAGAIN) {
        break;  // full: the reader is behind
      } else if (n < 0 && errno != EINTR) {
        return 3;
      }
    }
    const std::string said = std::to_string(total) + "\n";
    if (::write(2, said.data(), said.size()) != static_cast<ssize_t>(said.size())) return 3;
    char c;
    if (::read(0, &c, 1) != 1) return 3;
  }
  return 0;
}

[[noreturn]] void wait_forever() {
  for (;;) ::pause();
}

int tied_parent(const char* self) {
  evh::Runtime rt;
  evh::ProcessManager pm(rt);
  evh::SpawnOptions o;
  o.argv = {self, "sleep"};
  o.stdin_mode = evh::Stdio::null();
  o.stdout_mode = evh::Stdio::null();
  o.stderr_mode = evh::Stdio::inherit();
  o.parent_death = evh::ParentDeath::kill_child;
  auto p = pm.spawn(o);
  if (!p) {
    std::fprintf(stderr, "tied-parent: spawn: %s\n", p.error().message().c_str());
    return 4;
  }
  std::printf("%d\n", static_cast<int>(p->pid()));
  std::fflush(stdout);
  wait_forever();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 64;
  const std::string mode = argv[1];
  if (mode == "fds") return list_fds();
  if (mode == "exit" && argc == 3) return std::atoi(argv[2]);
  if (mode == "sleep") wait_forever();
  if (mode == "echo-stderr" && argc == 3) {
    const std::size_t n = std::strlen(argv[2]);
    return ::write(2, argv[2], n) == static_cast<ssize_t>(n) ? 0 : 3;
  }
  if (mode == "both" && argc == 3) {
    if (::write(1, "out", 3) != 3 || ::write(2, "err", 3) != 3) return 5;
    if (std::strcmp(argv[2], "exit") == 0) return 3;
    wait_forever();
  }
  if (mode == "pipe-sizes" && argc == 3) {
    const std::string flood(std::strtoull(argv[2], nullptr, 10), 'f');
    std::size_t done = 0;
    while (done < flood.size()) {
      const ssize_t n = ::write(1, flood.data() + done, flood.size() - done);
      if (n <= 0) return 3;
      done += static_cast<std::size_t>(n);
    }
    const std::string out =
        std::to_string(::fcntl(1, F_GETPIPE_SZ)) + " " + std::to_string(::fcntl(2, F_GETPIPE_SZ));
    return ::write(2, out.data(), out.size()) == static_cast<ssize_t>(out.size()) ? 0 : 3;
  }
  if (mode == "window-probe" && argc == 3) return window_probe(std::atoi(argv[2]));
  if (mode == "tied-parent") return tied_parent(argv[0]);
  return 64;
}

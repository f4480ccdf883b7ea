// evh-lua: runs a Lua 5.4 script as the main isolate of an evh runtime, every state it spawns
// as another isolate, and exits when no state has anything left to do.
//
// main() owns the runtime and a receiver. It learns the end from the states themselves: the last
// state to be closed posts "all done", os.exit posts its code, and the main state's exit listener
// says how the script ended. Built on <evh/evh.h> only: a runtime that links evh needs nothing
// else.
#include <evh/evh.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "state.h"

namespace {

using evh_lua::ControlMessage;
using evh_lua::Host;
using evh_lua::State;

const char kUsage[] =
    "usage: evh-lua [--version] [--help] [--workers N] script.lua [args...]\n"
    "\n"
    "Runs script.lua (\"-\" reads it from stdin) as the main Lua 5.4 state, with the module "
    "`evh`\n"
    "(spawn, ports, timers, processes, signals, TCP) in every state. Exits when no state has work\n"
    "left, with 0 (1 when the main state was killed); at once with 1 when an error ends the main\n"
    "state; with os.exit's code when a state calls it.\n"
    "\n"
    "  --workers N  threads that run states, at most (default: 4 per CPU, at least 8)\n";

// Errors escaping a callback, printed (the state may turn this off with evh.print_errors).
void print_uncaught(evh_isolate* isolate, const char* what, void*) noexcept {
  auto* st = static_cast<State*>(evh_isolate_user(isolate));
  if (st != nullptr && !st->print_errors) return;
  std::fprintf(stderr, "evh-lua: %s\n", what);
  std::fflush(stderr);
}

bool read_all(std::FILE* f, std::string& out) {
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  return std::ferror(f) == 0;
}

// The script's text, or false with the reason printed.
bool read_script(const char* path, std::string& source) {
  if (std::strcmp(path, "-") == 0) {
    if (read_all(stdin, source)) return true;
    std::fprintf(stderr, "evh-lua: cannot read the script from stdin: %s\n", std::strerror(errno));
    return false;
  }
  std::FILE* f = std::fopen(path, "rb");
  if (f == nullptr) {
    std::fprintf(stderr, "evh-lua: cannot open %s: %s\n", path, std::strerror(errno));
    return false;
  }
  const bool ok = read_all(f, source);
  const int e = errno;
  std::fclose(f);
  if (!ok) std::fprintf(stderr, "evh-lua: cannot read %s: %s\n", path, std::strerror(e));
  return ok;
}

int fail(const char* what, int error) {
  std::fprintf(stderr, "evh-lua: %s: %s\n", what, evh_strerror(error));
  return 1;
}

int run(const char* script, std::vector<std::string> args, unsigned workers) {
  std::string source;
  if (!read_script(script, source)) return 1;
  // Like the standalone interpreter: a first line starting with '#' is a shebang.
  if (source.size() > 0 && source[0] == '#') source.insert(0, "--");

  evh_runtime_options options;
  evh_runtime_options_init(&options);
  options.on_uncaught = &print_uncaught;
  // Lua code is not preempted: a state in a long loop holds its worker until it returns (or is
  // killed). More workers than CPUs let the other states (the one that would kill it) run
  // meanwhile; the pool starts them only when work waits, so they cost nothing otherwise.
  options.max_workers = workers;
  Host host;
  int rc = evh_runtime_create(&options, &host.rt);
  if (rc != EVH_OK) return fail("cannot create the runtime", rc);
  evh_receiver* control = nullptr;
  rc = evh_receiver_open(host.rt, &control);
  if (rc != EVH_OK) {
    (void)evh_runtime_destroy(host.rt);
    return fail("cannot open a receiver", rc);
  }
  host.control = evh_receiver_port(control);

  const std::string chunkname =
      std::strcmp(script, "-") == 0 ? "=stdin" : std::string("@") + script;
  std::string error;
  State* main_state = State::for_main(host, source, chunkname, args, script, error);
  std::string().swap(source);
  if (main_state == nullptr) {
    std::fprintf(stderr, "evh-lua: %s\n", error.c_str());
    (void)evh_receiver_destroy(control);
    (void)evh_runtime_destroy(host.rt);
    return 1;
  }

  host.live.store(1, std::memory_order_relaxed);
  // The main state: an error escaping its callbacks ends it (and the script, with status 1),
  // unless it says otherwise with evh.errors_are_fatal(false).
  evh_isolate_options iso_options = EVH_ISOLATE_OPTIONS_INIT;
  iso_options.errors_are_fatal = 1;
  evh_isolate* main_isolate = nullptr;
  rc = evh_isolate_spawn(host.rt, &State::on_message, main_state, &State::destroy, &iso_options,
                         &main_isolate);
  int status = 1;
  if (rc != EVH_OK) {
    (void)fail("cannot start the main state", rc);
  } else {
    (void)evh_isolate_add_exit_listener(main_isolate, host.control);
    (void)evh_post(host.rt, evh_isolate_main_port(main_isolate), nullptr, 0, 0);
    bool all_done = false;
    bool main_exited = false;
    bool exit_requested = false;
    int main_reason = EVH_EXIT_NORMAL;
    // The program ends when every state is done; or at once when the main state ends by an
    // error (an uncaught error ends the script, as in the standalone interpreter: the other
    // states are killed); or at os.exit.
    bool main_failed = false;
    while (!exit_requested && !main_failed && !(all_done && main_exited)) {
      evh_message* m = nullptr;
      if (evh_receiver_receive(control, EVH_FOREVER, &m) != EVH_OK) break;
      evh_isolate_exit exit;
      std::size_t size = 0;
      const void* data = evh_message_data(m, &size);
      ControlMessage c;
      if (evh_message_isolate_exit(m, &exit) == EVH_OK) {
        main_exited = true;
        main_reason = exit.reason;
        main_failed = exit.reason == EVH_EXIT_ERROR;
      } else if (size == sizeof c) {
        std::memcpy(&c, data, sizeof c);
        if (c.magic == ControlMessage::kMagic && c.kind == ControlMessage::all_done) {
          all_done = true;
        } else if (c.magic == ControlMessage::kMagic && c.kind == ControlMessage::exit_request) {
          exit_requested = true;
          status = c.code;
        }
      }
      evh_message_destroy(m);
    }
    if (!exit_requested) status = main_reason == EVH_EXIT_NORMAL ? 0 : 1;
    (void)evh_isolate_release(main_isolate);
  }
  // Kills what is left (after os.exit), closes every state, joins the threads.
  (void)evh_runtime_shutdown(host.rt);
  (void)evh_receiver_destroy(control);
  rc = evh_runtime_destroy(host.rt);
  if (rc != EVH_OK) (void)fail("runtime not destroyed", rc);
  std::fflush(stdout);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  // Freed memory stays with malloc rather than going back to the kernel at once: states free
  // and reallocate large blocks all the time (a child's output arrives as 120 KiB strings), and
  // on the pool's threads glibc returned the top of its arena and took it back for each one —
  // an madvise, a TLB shootdown and fresh page faults per chunk.
  (void)mallopt(M_TRIM_THRESHOLD, 32 << 20);
  (void)mallopt(M_MMAP_THRESHOLD, 4 << 20);
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  unsigned workers = static_cast<unsigned>(std::max(8L, 4 * std::max(cpus, 1L)));
  int i = 1;
  for (; i < argc; ++i) {
    const char* a = argv[i];
    if (std::strcmp(a, "--version") == 0 || std::strcmp(a, "-v") == 0) {
      std::printf("evh-lua %s (%s, libevh %s)\n", EVH_VERSION_STRING, LUA_RELEASE,
                  evh_version_string());
      return 0;
    }
    if (std::strcmp(a, "--help") == 0 || std::strcmp(a, "-h") == 0) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (std::strcmp(a, "--workers") == 0 && i + 1 < argc) {
      char* end = nullptr;
      const long n = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || n < 1 || n > 4096) {
        std::fprintf(stderr, "evh-lua: --workers takes a number from 1 to 4096\n");
        return 1;
      }
      workers = static_cast<unsigned>(n);
      continue;
    }
    if (std::strcmp(a, "--") == 0) {
      ++i;
      break;
    }
    if (a[0] == '-' && a[1] != '\0') {
      std::fprintf(stderr, "evh-lua: unknown option %s\n%s", a, kUsage);
      return 1;
    }
    break;
  }
  if (i >= argc) {
    std::fputs(kUsage, stderr);
    return 1;
  }
  return run(argv[i], std::vector<std::string>(argv + i + 1, argv + argc), workers);
}

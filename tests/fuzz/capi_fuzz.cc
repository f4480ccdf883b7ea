// Fuzz target: the C API (evh/evh.h) under a call sequence read from the input — receivers and
// isolates opened, posts of bytes and native objects to their ports and to made-up ids, receives,
// closes, kills, pauses, pings, listeners, handles released in any order, bad arguments — on one
// runtime per input. Checks: every call returns a code its comment allows; every native payload
// is finalized exactly once (counted after the runtime is destroyed); destroying the runtime
// succeeds once every handle is released; nothing leaks (LeakSanitizer).
#include <evh/evh.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <vector>

namespace {

std::atomic<std::uint64_t> made{0};
std::atomic<std::uint64_t> finalized{0};

void finalize(void* object) noexcept {
  finalized.fetch_add(1, std::memory_order_relaxed);
  std::free(object);
}

void* make_native() {
  made.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(16);
}

// The input, read a piece at a time; zeros once it runs out.
struct Input {
  const std::uint8_t* p;
  std::size_t left;
  std::uint8_t byte() {
    if (left == 0) return 0;
    --left;
    return *p++;
  }
  std::uint64_t u64() {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = v << 8 | byte();
    return v;
  }
};

void expect(int got, std::initializer_list<int> allowed) {
  for (int a : allowed) {
    if (got == a) return;
  }
  std::abort();
}

// An isolate's handler: a message whose first byte is a multiple of 4 and that carries a port id
// after it is forwarded there (evh_post_message moves its payload), anything else is dropped.
void on_message(evh_isolate* self, evh_message* message, void*) {
  std::size_t size = 0;
  const auto* data = static_cast<const std::uint8_t*>(evh_message_data(message, &size));
  if (size < 9 || data[0] % 4 != 0) return;
  evh_port_id to = 0;
  std::memcpy(&to, data + 1, sizeof to);
  expect(evh_post_message(evh_isolate_runtime(self), to, message, data[0] & 1),
         {EVH_OK, EVH_EUNKNOWNPORT, EVH_ESHUTTINGDOWN, EVH_EINVAL});
}

// The batch form: each message of the batch as on_message does.
void on_batch(evh_isolate* self, evh_message* const* messages, std::size_t count, void* user) {
  for (std::size_t i = 0; i < count; ++i) on_message(self, messages[i], user);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in{data, size};
  const std::uint64_t made_before = made.load();
  const std::uint64_t finalized_before = finalized.load();
  evh_runtime_options options;
  evh_runtime_options_init(&options);
  options.max_workers = 2;
  evh_runtime* rt = nullptr;
  if (evh_runtime_create(&options, &rt) != EVH_OK) std::abort();
  std::vector<evh_receiver*> receivers;
  std::vector<evh_isolate*> isolates;
  auto some_port = [&]() -> evh_port_id {
    const std::uint8_t k = in.byte();
    if (k % 3 == 0 && !receivers.empty()) return evh_receiver_port(receivers[k % receivers.size()]);
    if (k % 3 == 1 && !isolates.empty())
      return evh_isolate_main_port(isolates[k % isolates.size()]);
    return in.u64();  // made up: almost surely no port
  };
  auto some_isolate = [&]() -> evh_isolate* {
    return isolates.empty() ? nullptr : isolates[in.byte() % isolates.size()];
  };
  auto some_receiver = [&]() -> evh_receiver* {
    return receivers.empty() ? nullptr : receivers[in.byte() % receivers.size()];
  };

  for (int step = 0; step < 64 && in.left > 0; ++step) {
    switch (in.byte() % 14) {
      case 0: {
        if (receivers.size() >= 4) break;
        evh_receiver* r = nullptr;
        expect(evh_receiver_open(rt, &r), {EVH_OK});
        receivers.push_back(r);
        break;
      }
      case 1: {
        if (isolates.size() >= 4) break;
        evh_isolate* iso = nullptr;
        expect(in.byte() % 2 == 0
                   ? evh_isolate_spawn(rt, on_message, nullptr, nullptr, nullptr, &iso)
                   : evh_isolate_spawn_batch(rt, on_batch, nullptr, nullptr, nullptr, &iso),
               {EVH_OK});
        isolates.push_back(iso);
        break;
      }
      case 2: {  // bytes
        std::uint8_t buf[64];
        const std::size_t n = in.byte() % (sizeof buf + 1);
        for (std::size_t i = 0; i < n; ++i) buf[i] = in.byte();
        const evh_port_id port = some_port();
        const std::uint8_t how = in.byte();
        if (how % 4 == 0) {  // packed: n / each messages of `each` bytes (each 0..47: some bad)
          const std::size_t each = how / 4 % 48;
          expect(evh_post_packed(rt, port, n == 0 ? nullptr : buf, each, each == 0 ? 1 : n / each,
                                 in.byte() % 3),
                 {EVH_OK, EVH_EUNKNOWNPORT, EVH_EINVAL});
          break;
        }
        expect(evh_post(rt, port, n == 0 ? nullptr : buf, n, in.byte() % 3),
               {EVH_OK, EVH_EUNKNOWNPORT, EVH_EINVAL});
        break;
      }
      case 3: {  // a native object: finalized exactly once whatever happens to it
        const evh_port_id port = some_port();
        expect(evh_post_native(rt, port, make_native(), finalize, in.byte() % 3),
               {EVH_OK, EVH_EUNKNOWNPORT, EVH_EINVAL});
        break;
      }
      case 4: {
        evh_receiver* r = some_receiver();
        evh_message* m = nullptr;
        const int rc = evh_receiver_try_receive(r, &m);
        expect(rc, {EVH_OK, EVH_ETIMEDOUT, EVH_EPORTCLOSED, EVH_EINVAL});
        if (rc != EVH_OK) break;
        const int kind = evh_message_kind(m);
        expect(kind, {EVH_MESSAGE_EMPTY, EVH_MESSAGE_BYTES, EVH_MESSAGE_NATIVE});
        if (kind == EVH_MESSAGE_NATIVE && in.byte() % 2 == 0) {
          finalize(evh_message_take_native(m));  // taken: ours to finalize
        }
        evh_message_destroy(m);
        break;
      }
      case 5:
        expect(evh_receiver_close(some_receiver()), {EVH_OK, EVH_EINVAL});
        break;
      case 6:
        expect(evh_isolate_kill(some_isolate(), in.byte() % 3), {EVH_OK, EVH_EINVAL});
        break;
      case 7: {  // a handle released (the isolate lives on until it exits)
        if (isolates.empty()) break;
        const std::size_t i = in.byte() % isolates.size();
        expect(evh_isolate_release(isolates[i]), {EVH_OK});
        isolates.erase(isolates.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
      case 8: {
        evh_isolate* iso = some_isolate();
        std::uint64_t cap = 0;
        const int rc = evh_isolate_pause(iso, in.byte() % 2 == 0 ? 0 : in.u64(), &cap);
        expect(rc, {EVH_OK, EVH_EDEAD, EVH_EINVAL});
        if (rc == EVH_OK && in.byte() % 2 == 0) {
          expect(evh_isolate_resume(iso, cap), {EVH_OK, EVH_EDEAD, EVH_EINVAL});
        }
        break;
      }
      case 9: {
        const std::uint8_t ping[4] = {1, 2, 3, 4};
        evh_isolate* iso = some_isolate();
        const evh_port_id reply = some_port();
        expect(evh_isolate_ping(iso, reply, ping, sizeof ping, in.byte() % 3),
               {EVH_OK, EVH_EDEAD, EVH_EINVAL, EVH_EUNKNOWNPORT});
        break;
      }
      case 10: {
        evh_isolate* iso = some_isolate();
        const evh_port_id port = some_port();
        expect(in.byte() % 2 == 0 ? evh_isolate_add_exit_listener(iso, port)
                                  : evh_isolate_remove_exit_listener(iso, port),
               {EVH_OK, EVH_EDEAD, EVH_EINVAL, EVH_EUNKNOWNPORT});
        break;
      }
      case 11: {  // own-turn calls from outside any turn
        evh_port_id port = 0;
        expect(evh_isolate_open_port(some_isolate(), &port), {EVH_EWRONGTHREAD, EVH_EINVAL});
        break;
      }
      case 12: {
        evh_runtime_stats stats;
        expect(evh_runtime_stats_get(rt, &stats), {EVH_OK});
        expect(evh_runtime_stats_get(rt, nullptr), {EVH_EINVAL});
        break;
      }
      case 13:  // null handles are refused, never dereferenced
        expect(evh_post(nullptr, 1, nullptr, 0, 0), {EVH_EINVAL});
        expect(evh_receiver_close(nullptr), {EVH_EINVAL});
        expect(evh_isolate_kill(nullptr, 0), {EVH_EINVAL});
        break;
    }
  }

  // A handle still held: the runtime refuses to go.
  if (!receivers.empty() || !isolates.empty()) expect(evh_runtime_destroy(rt), {EVH_EBUSY});
  for (evh_isolate* iso : isolates) expect(evh_isolate_release(iso), {EVH_OK});
  for (evh_receiver* r : receivers) expect(evh_receiver_destroy(r), {EVH_OK});
  expect(evh_runtime_destroy(rt), {EVH_OK});
  // Every native payload made for this input was finalized once: by a receiver, an isolate's
  // release, a refused post, a taker, or the runtime's end.
  if (made.load() - made_before != finalized.load() - finalized_before) std::abort();
  return 0;
}

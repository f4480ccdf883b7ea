// The C API's timers: caller-owned storage, order, cancel, absolute deadlines, periods, bad
// input (evh.h only).
#include <evh/evh.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "capi_test_util.h"

namespace evh_capi_test {
namespace {

constexpr int64_t kHour = INT64_C(3'600'000'000'000);

// One test's state, owned by the isolate's handler (one thread at a time).
struct Timers {
  Timers(evh_runtime* r, evh_port_id p) : rt(r), reply(p) {}
  evh_runtime* rt = nullptr;
  evh_port_id reply = 0;
  evh_timer t[6] = {};  // zeroed: "not initialised" until evh_timer_init
  std::string trace;
  int ticks = 0;
  uint64_t skipped = 0;
  bool early = false;  // a callback ran before its deadline
  int64_t due = 0;     // a periodic timer's deadline for its next run
};

Timers* of(evh_isolate* self) {
  return static_cast<Timers*>(evh_isolate_user(self));
}

// Appends the timer's index to the trace; the index is its user pointer.
void note(evh_isolate* self, evh_timer* timer, uint64_t, void* user) {
  Timers* s = of(self);
  if (evh_now() < evh_timer_deadline(timer)) s->early = true;
  s->trace += std::to_string(reinterpret_cast<intptr_t>(user));
}

void finish(evh_isolate* self, evh_timer*, uint64_t, void*) {
  Timers* s = of(self);
  s->trace += s->early ? " early" : "";
  EXPECT_EQ(evh_post(s->rt, s->reply, s->trace.data(), s->trace.size(), 0), EVH_OK);
}

evh_isolate* spawn_timers(evh_runtime* rt, Timers& s, evh_message_fn on_message) {
  evh_isolate* iso = nullptr;
  EXPECT_EQ(evh_isolate_spawn(rt, on_message, &s, nullptr, nullptr, &iso), EVH_OK);
  return iso;
}

// Storage is checked: NULL, a misaligned address, a NULL callback, a start before init.
TEST(CapiTimer, InitChecksItsStorage) {
  EXPECT_EQ(sizeof(evh_timer), static_cast<size_t>(EVH_TIMER_SIZE));
  EXPECT_EQ(alignof(evh_timer), static_cast<size_t>(EVH_TIMER_ALIGN));
  evh_timer t;
  EXPECT_EQ(evh_timer_init(nullptr, &note, nullptr), EVH_EINVAL);
  EXPECT_EQ(evh_timer_init(&t, nullptr, nullptr), EVH_EINVAL);
  alignas(64) unsigned char raw[EVH_TIMER_SIZE + 64];
  EXPECT_EQ(evh_timer_init(reinterpret_cast<evh_timer*>(raw + 8), &note, nullptr), EVH_EINVAL);
  EXPECT_EQ(evh_timer_init(&t, &note, nullptr), EVH_OK);
  EXPECT_EQ(evh_timer_is_armed(&t), 0);
  EXPECT_EQ(evh_timer_is_armed(nullptr), 0);
  EXPECT_EQ(evh_timer_deadline(nullptr), 0);
  // An aligned_alloc'ed one works too.
  void* heap = std::aligned_alloc(EVH_TIMER_ALIGN, sizeof(evh_timer));
  EXPECT_EQ(evh_timer_init(static_cast<evh_timer*>(heap), &note, nullptr), EVH_OK);
  std::free(heap);
}

// Timers fire in deadline order, never early; a cancelled one never fires; cancelling one of
// the same batch from an earlier callback prevents it (SEMANTICS 12-14).
TEST(CapiTimer, OrderCancelAndCancelInsideTheBatch) {
  Runtime rt;
  Receiver rx(rt);
  Timers s{rt, rx.port()};
  evh_isolate* iso = spawn_timers(rt, s, [](evh_isolate* self, evh_message*, void*) {
    Timers* st = of(self);
    for (intptr_t i = 0; i < 5; ++i) {
      ASSERT_EQ(evh_timer_init(&st->t[i], &note, reinterpret_cast<void*>(i)), EVH_OK);
    }
    ASSERT_EQ(evh_timer_init(&st->t[5], &finish, nullptr), EVH_OK);
    // 1 and 2 share a deadline, so they are due in one batch: 1 (started first) cancels 2.
    ASSERT_EQ(evh_timer_init(
                  &st->t[1],
                  [](evh_isolate* me, evh_timer* t, uint64_t k, void* u) {
                    note(me, t, k, u);
                    EXPECT_EQ(evh_timer_cancel(me, &of(me)->t[2]), EVH_OK);
                  },
                  reinterpret_cast<void*>(1)),
              EVH_OK);
    // A relative delay counts from the call, by the clock read in it (SEMANTICS 11).
    const int64_t cached = evh_isolate_cached_now(self);  // read once per message, when asked
    const int64_t before = evh_now();
    EXPECT_LE(cached, before);
    EXPECT_EQ(evh_isolate_cached_now(self), cached);
    ASSERT_EQ(evh_timer_start(self, &st->t[0], 1 * kMs, EVH_SLACK_COARSE), EVH_OK);
    const int64_t d0 = evh_timer_deadline(&st->t[0]);
    EXPECT_GE(d0, before + kMs);
    // The others at absolute deadlines after it, so the order does not depend on how fast this
    // handler runs.
    ASSERT_EQ(evh_timer_start_at(self, &st->t[3], d0 + 2 * kMs, EVH_SLACK_EXACT), EVH_OK);
    ASSERT_EQ(evh_timer_start_at(self, &st->t[1], d0 + 1 * kMs, EVH_SLACK_EXACT), EVH_OK);
    ASSERT_EQ(evh_timer_start_at(self, &st->t[2], d0 + 1 * kMs, EVH_SLACK_EXACT), EVH_OK);
    ASSERT_EQ(evh_timer_start(self, &st->t[4], 1 * kMs, 1000), EVH_OK);
    EXPECT_EQ(evh_timer_is_armed(&st->t[4]), 1);
    ASSERT_EQ(evh_timer_cancel(self, &st->t[4]), EVH_OK);
    ASSERT_EQ(evh_timer_cancel(self, &st->t[4]), EVH_OK);  // twice: a no-op
    EXPECT_EQ(evh_timer_is_armed(&st->t[4]), 0);
    ASSERT_EQ(evh_timer_start_at(self, &st->t[5], d0 + 3 * kMs, EVH_SLACK_EXACT), EVH_OK);
  });
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "go"), EVH_OK);
  EXPECT_EQ(rx.text(), "013");
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// A periodic timer keeps its schedule and is cancelled from its own callback; the periodic_at
// form starts at an absolute time. Stats count what ran.
TEST(CapiTimer, PeriodicTicksUntilCancelled) {
  Runtime rt;
  Receiver rx(rt);
  Timers s{rt, rx.port()};
  evh_isolate* iso = spawn_timers(rt, s, [](evh_isolate* self, evh_message*, void*) {
    Timers* st = of(self);
    auto tick = [](evh_isolate* me, evh_timer* t, uint64_t skipped, void*) {
      Timers* x = of(me);
      x->skipped += skipped;
      // Inside a periodic timer's callback its deadline is already the next one.
      if (evh_now() < x->due) x->early = true;
      x->due = evh_timer_deadline(t);
      if (++x->ticks == 3) {
        EXPECT_EQ(evh_timer_cancel(me, t), EVH_OK);
        EXPECT_EQ(evh_timer_start_periodic_at(me, &x->t[1], evh_isolate_cached_now(me) + kMs, kMs,
                                              EVH_SLACK_EXACT),
                  EVH_OK);
        x->due = evh_timer_deadline(&x->t[1]);
      } else if (x->ticks == 6) {
        EXPECT_EQ(evh_timer_cancel(me, t), EVH_OK);
        evh_timer_stats ts{};
        EXPECT_EQ(evh_isolate_timer_stats(me, &ts), EVH_OK);
        const std::string r = std::to_string(ts.fired) + (x->early ? " early" : "");
        EXPECT_EQ(evh_post(x->rt, x->reply, r.data(), r.size(), 0), EVH_OK);
      }
    };
    ASSERT_EQ(evh_timer_init(&st->t[0], tick, nullptr), EVH_OK);
    ASSERT_EQ(evh_timer_init(&st->t[1], tick, nullptr), EVH_OK);
    ASSERT_EQ(evh_timer_start_periodic(self, &st->t[0], kMs, EVH_SLACK_COARSE), EVH_OK);
    st->due = evh_timer_deadline(&st->t[0]);
  });
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "go"), EVH_OK);
  EXPECT_EQ(rx.text(), "6");
  evh_timer_stats all{};
  ASSERT_EQ(evh_runtime_timer_stats(rt, &all), EVH_OK);
  EXPECT_EQ(all.started, 2u);
  EXPECT_EQ(evh_runtime_timer_stats(rt, nullptr), EVH_EINVAL);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// Bad durations and slacks get EVH_EINVAL; a huge delay means "never" (armed, never due).
TEST(CapiTimer, BadDurationsAreRefusedAndHugeMeansNever) {
  Runtime rt;
  Receiver rx(rt);
  Timers s{rt, rx.port()};
  evh_isolate* iso = spawn_timers(rt, s, [](evh_isolate* self, evh_message*, void*) {
    Timers* st = of(self);
    evh_timer* t = &st->t[0];
    std::vector<int> r;
    r.push_back(evh_timer_start(self, t, kMs, EVH_SLACK_EXACT));  // before init
    EXPECT_EQ(evh_timer_init(t, &note, nullptr), EVH_OK);
    r.push_back(evh_timer_start(self, t, -1, EVH_SLACK_EXACT));
    r.push_back(evh_timer_start(self, t, kMs, -2));
    r.push_back(evh_timer_start(self, t, kMs, EVH_DURATION_MAX + 1));
    r.push_back(evh_timer_start_at(self, t, -5, EVH_SLACK_EXACT));
    r.push_back(evh_timer_start_periodic(self, t, 0, EVH_SLACK_EXACT));
    r.push_back(evh_timer_start_periodic(self, t, -kMs, EVH_SLACK_EXACT));
    r.push_back(evh_timer_start_periodic(self, t, EVH_DURATION_MAX + 1, EVH_SLACK_EXACT));
    r.push_back(evh_timer_start_periodic_at(self, t, -1, kMs, EVH_SLACK_EXACT));
    r.push_back(evh_timer_start_periodic_at(self, t, 0, INT64_MAX, EVH_SLACK_EXACT));
    r.push_back(evh_timer_start(self, nullptr, kMs, EVH_SLACK_EXACT));
    r.push_back(evh_timer_cancel(self, nullptr));
    std::string out;
    for (int e : r) out += (e == EVH_EINVAL ? "E" : "?");
    EXPECT_EQ(evh_timer_is_armed(t), 0);
    // "Never": armed with the farthest deadline, and cancellable.
    EXPECT_EQ(evh_timer_start(self, t, INT64_MAX, EVH_SLACK_COARSE), EVH_OK);
    out += evh_timer_is_armed(t) == 1 ? " armed" : " unarmed";
    EXPECT_EQ(evh_timer_init(t, &note, nullptr), EVH_EBUSY);  // armed: not re-initialised
    EXPECT_EQ(evh_timer_cancel(self, t), EVH_OK);
    EXPECT_EQ(evh_post(st->rt, st->reply, out.data(), out.size(), 0), EVH_OK);
  });
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "go"), EVH_OK);
  EXPECT_EQ(rx.text(), "EEEEEEEEEEEE armed");
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// "Never" (a delay too large to represent) and timers beyond the wheel's 52-day reach do not hold
// up their isolate's death: a kill ends it, and its exit listener hears it.
TEST(CapiTimer, NeverAndFarTimersDoNotHoldUpADeath) {
  Runtime rt;
  Receiver rx(rt);
  Timers s{rt, rx.port()};
  evh_isolate* iso = spawn_timers(rt, s, [](evh_isolate* self, evh_message*, void*) {
    Timers* st = of(self);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(evh_timer_init(&st->t[i], &note, nullptr), EVH_OK);
    EXPECT_EQ(evh_timer_start(self, &st->t[0], INT64_MAX, EVH_SLACK_COARSE), EVH_OK);
    EXPECT_EQ(evh_timer_start(self, &st->t[1], 400 * 24 * kHour, EVH_SLACK_EXACT), EVH_OK);
    EXPECT_EQ(evh_timer_start_at(self, &st->t[2], INT64_MAX - 1, EVH_SLACK_EXACT), EVH_OK);
    EXPECT_EQ(evh_post(st->rt, st->reply, "armed", 5, 0), EVH_OK);
  });
  ASSERT_EQ(evh_isolate_add_exit_listener(iso, rx.port()), EVH_OK);
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "go"), EVH_OK);
  EXPECT_EQ(rx.text(), "armed");
  ASSERT_EQ(evh_isolate_kill(iso, EVH_IMMEDIATE), EVH_OK);
  EXPECT_EQ(rx.exit().reason, EVH_EXIT_KILLED);
  EXPECT_EQ(s.trace, "");  // none of them ran
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// A timer belongs to the isolate that first started it: another isolate cannot re-arm or cancel
// it (EVH_EBUSY) until it is initialised again.
TEST(CapiTimer, AnotherIsolatesTimerIsBusy) {
  Runtime rt;
  Receiver rx(rt);
  Timers s{rt, rx.port()};
  Timers s2{rt, rx.port()};
  evh_isolate* a = spawn_timers(rt, s, [](evh_isolate* self, evh_message*, void*) {
    Timers* st = of(self);
    EXPECT_EQ(evh_timer_init(&st->t[0], &note, nullptr), EVH_OK);
    EXPECT_EQ(evh_timer_start(self, &st->t[0], kHour, EVH_SLACK_COARSE), EVH_OK);
    EXPECT_EQ(evh_post(st->rt, st->reply, "armed", 5, 0), EVH_OK);
  });
  evh_isolate* b = spawn_timers(rt, s2, [](evh_isolate* self, evh_message* m, void*) {
    Timers* st = of(self);
    size_t n = 0;
    Timers* theirs = nullptr;
    std::memcpy(&theirs, evh_message_data(m, &n), sizeof theirs);
    const std::string r = std::to_string(evh_timer_cancel(self, &theirs->t[0])) + " " +
                          std::to_string(evh_timer_start(self, &theirs->t[0], kMs, 0));
    EXPECT_EQ(evh_post(st->rt, st->reply, r.data(), r.size(), 0), EVH_OK);
  });
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(a), "go"), EVH_OK);
  EXPECT_EQ(rx.text(), "armed");
  Timers* ps = &s;
  ASSERT_EQ(evh_post(rt, evh_isolate_main_port(b), &ps, sizeof ps, 0), EVH_OK);
  EXPECT_EQ(rx.text(), std::to_string(EVH_EBUSY) + " " + std::to_string(EVH_EBUSY));
  // Its isolate's death cancels it without calling it.
  ASSERT_EQ(evh_isolate_kill(a, EVH_IMMEDIATE), EVH_OK);
  ASSERT_EQ(evh_runtime_shutdown(rt), EVH_OK);
  EXPECT_EQ(evh_timer_is_armed(&s.t[0]), 0);
  EXPECT_EQ(s.trace, "");
  EXPECT_EQ(evh_isolate_release(a), EVH_OK);
  EXPECT_EQ(evh_isolate_release(b), EVH_OK);
}

// A one-shot timer's storage may be freed by its own callback, and a killed isolate's armed
// timers are never touched again, so their storage may go with the isolate's user data.
TEST(CapiTimer, StorageMayGoInTheCallbackOrWithTheIsolate) {
  Runtime rt;
  Receiver rx(rt);
  struct Owner {
    evh_runtime* rt;
    evh_port_id reply;
    evh_timer* pending = nullptr;
  } owner{rt, rx.port()};
  evh_isolate* iso = nullptr;
  ASSERT_EQ(
      evh_isolate_spawn(
          rt,
          [](evh_isolate* self, evh_message*, void* user) {
            auto* o = static_cast<Owner*>(user);
            auto* once =
                static_cast<evh_timer*>(std::aligned_alloc(EVH_TIMER_ALIGN, sizeof(evh_timer)));
            EXPECT_EQ(evh_timer_init(
                          once,
                          [](evh_isolate* me, evh_timer* t, uint64_t, void*) {
                            std::free(t);
                            auto* ow = static_cast<Owner*>(evh_isolate_user(me));
                            EXPECT_EQ(evh_post(ow->rt, ow->reply, "fired", 5, 0), EVH_OK);
                          },
                          nullptr),
                      EVH_OK);
            EXPECT_EQ(evh_timer_start(self, once, 0, EVH_SLACK_EXACT), EVH_OK);
            o->pending =
                static_cast<evh_timer*>(std::aligned_alloc(EVH_TIMER_ALIGN, sizeof(evh_timer)));
            EXPECT_EQ(evh_timer_init(o->pending, &note, nullptr), EVH_OK);
            EXPECT_EQ(evh_timer_start(self, o->pending, kHour, EVH_SLACK_EXACT), EVH_OK);
          },
          &owner, [](void* user) noexcept { std::free(static_cast<Owner*>(user)->pending); },
          nullptr, &iso),
      EVH_OK);
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "go"), EVH_OK);
  EXPECT_EQ(rx.text(), "fired");
  ASSERT_EQ(evh_isolate_kill(iso, EVH_IMMEDIATE), EVH_OK);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

}  // namespace
}  // namespace evh_capi_test

// The C API's isolates: spawn, handlers, the control plane, errors, microtasks, runners
// (evh.h only).
#include <evh/evh.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "capi_test_util.h"

namespace evh_capi_test {
namespace {

// What the handlers below are given: where to reply, and counters the test reads.
struct Ctx {
  Ctx() = default;
  Ctx(evh_runtime* r, evh_port_id p) : rt(r), reply(p) {}
  evh_runtime* rt = nullptr;
  evh_port_id reply = 0;
  std::atomic<int> destroyed{0};
  std::atomic<int> uncaught{0};
  std::string last_uncaught;  // written by on_uncaught before it posts
  evh_isolate* uncaught_isolate = nullptr;
  evh_isolate* other = nullptr;  // for calls on a second isolate
  std::atomic<bool> stop{false};
  std::string trace;  // the isolate's own: touched on its turn only
};

void count_destroy(void* ctx) noexcept {
  static_cast<Ctx*>(ctx)->destroyed.fetch_add(1, std::memory_order_acq_rel);
}

void reply(Ctx* c, const std::string& s) {
  EXPECT_EQ(post_text(c->rt, c->reply, s), EVH_OK);
}

// Forwards every message to the reply port without copying it.
void echo(evh_isolate*, evh_message* m, void* user) {
  auto* c = static_cast<Ctx*>(user);
  EXPECT_EQ(evh_post_message(c->rt, c->reply, m, 0), EVH_OK);
}

evh_isolate* spawn(evh_runtime* rt, evh_message_fn fn, Ctx* ctx,
                   const evh_isolate_options* o = nullptr) {
  evh_isolate* iso = nullptr;
  EXPECT_EQ(evh_isolate_spawn(rt, fn, ctx, &count_destroy, o, &iso), EVH_OK);
  return iso;
}

std::string text_of(evh_message* m) {
  size_t n = 0;
  const void* d = evh_message_data(m, &n);
  return d != nullptr ? std::string(static_cast<const char*>(d), n) : std::string();
}

// An echo isolate returns what it is sent, natives included, without copying; its user data is
// released once, when it exits.
TEST(CapiIsolate, EchoRoundTrip) {
  Runtime rt;
  Receiver rx(rt);
  Ctx ctx{rt, rx.port()};
  evh_isolate* iso = spawn(rt, &echo, &ctx);
  ASSERT_NE(iso, nullptr);
  const evh_port_id port = evh_isolate_main_port(iso);
  EXPECT_NE(port, 0u);
  EXPECT_EQ(evh_isolate_user(iso), &ctx);
  EXPECT_EQ(evh_isolate_runtime(iso), rt.rt);
  EXPECT_EQ(evh_isolate_is_dead(iso), 0);
  ASSERT_EQ(post_text(rt, port, "hello"), EVH_OK);
  EXPECT_EQ(rx.text(), "hello");
  Finalized f;
  ASSERT_EQ(evh_post_native(rt, port, &f, &Finalized::finalize, 0), EVH_OK);
  evh_message* m = rx.next();
  EXPECT_EQ(evh_message_native(m), &f);
  EXPECT_EQ(f.get(), 0);
  evh_message_destroy(m);
  EXPECT_EQ(f.get(), 1);
  EXPECT_EQ(ctx.destroyed.load(), 0);
  ASSERT_EQ(evh_isolate_kill(iso, EVH_IMMEDIATE), EVH_OK);
  EXPECT_EQ(evh_isolate_is_dead(iso), 1);
  EXPECT_EQ(post_text(rt, port, "late"), EVH_EUNKNOWNPORT);  // its ports closed in the kill
  EXPECT_EQ(evh_isolate_main_port(iso), port);               // its name survives it
  // Shutdown returns once every isolate has finished: the user data went exactly once.
  ASSERT_EQ(evh_runtime_shutdown(rt), EVH_OK);
  EXPECT_EQ(ctx.destroyed.load(), 1);
  evh_isolate_stats s{};
  ASSERT_EQ(evh_isolate_stats_get(iso, &s), EVH_OK);  // a dead isolate's handle still reads
  EXPECT_EQ(s.handled, 2u);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// Every spawn failure releases the user data exactly once, before it returns.
TEST(CapiIsolate, SpawnFailuresReleaseUserDataOnce) {
  Runtime rt;
  Runtime other;
  Ctx ctx;
  evh_isolate* iso = reinterpret_cast<evh_isolate*>(&ctx);
  EXPECT_EQ(evh_isolate_spawn(nullptr, &echo, &ctx, &count_destroy, nullptr, &iso), EVH_EINVAL);
  EXPECT_EQ(iso, nullptr);
  EXPECT_EQ(evh_isolate_spawn(rt, nullptr, &ctx, &count_destroy, nullptr, &iso), EVH_EINVAL);
  EXPECT_EQ(evh_isolate_spawn(rt, &echo, &ctx, &count_destroy, nullptr, nullptr), EVH_EINVAL);
  evh_runner* theirs = nullptr;
  ASSERT_EQ(evh_runner_dedicated(other, "theirs", &theirs), EVH_OK);
  evh_isolate_options o = EVH_ISOLATE_OPTIONS_INIT;
  o.runner = theirs;
  EXPECT_EQ(evh_isolate_spawn(rt, &echo, &ctx, &count_destroy, &o, &iso), EVH_EFOREIGN);
  alignas(64) unsigned char junk[64] = {};
  o.runner = reinterpret_cast<evh_runner*>(junk);
  EXPECT_EQ(evh_isolate_spawn(rt, &echo, &ctx, &count_destroy, &o, &iso), EVH_EINVAL);
  EXPECT_EQ(ctx.destroyed.load(), 5);
  EXPECT_EQ(iso, nullptr);
}

// The exit rule: an isolate that closes its last port exits normally, and its exit listener
// hears it once; a listener added after the exit hears it at once.
TEST(CapiIsolate, ClosingTheLastPortExitsNormally) {
  Runtime rt;
  Receiver rx(rt);
  Ctx ctx{rt, rx.port()};
  evh_isolate* iso = spawn(
      rt,
      [](evh_isolate* self, evh_message*, void*) {
        EXPECT_EQ(evh_isolate_close_port(self, evh_isolate_main_port(self)), EVH_OK);
      },
      &ctx);
  const evh_port_id port = evh_isolate_main_port(iso);
  ASSERT_EQ(evh_isolate_add_exit_listener(iso, rx.port()), EVH_OK);
  ASSERT_EQ(evh_isolate_add_exit_listener(iso, rx.port()), EVH_OK);  // the same port: told once
  ASSERT_EQ(post_text(rt, port, "close"), EVH_OK);
  evh_isolate_exit e = rx.exit();
  EXPECT_EQ(e.isolate, port);
  EXPECT_EQ(e.reason, EVH_EXIT_NORMAL);
  EXPECT_TRUE(rx.empty());
  Receiver late(rt);
  ASSERT_EQ(evh_isolate_add_exit_listener(iso, late.port()), EVH_OK);
  EXPECT_EQ(late.exit().reason, EVH_EXIT_NORMAL);
  ASSERT_EQ(evh_runtime_shutdown(rt), EVH_OK);
  EXPECT_EQ(ctx.destroyed.load(), 1);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// Kill: a bad priority is refused; a kill is heard by exit listeners as killed; control calls
// on a dead isolate fail with EVH_EDEAD.
TEST(CapiIsolate, KillIsHeardAndLaterCallsFail) {
  Runtime rt;
  Receiver rx(rt);
  Ctx ctx{rt, rx.port()};
  evh_isolate* iso = spawn(rt, &echo, &ctx);
  ASSERT_EQ(evh_isolate_add_exit_listener(iso, rx.port()), EVH_OK);
  Receiver removed(rt);
  ASSERT_EQ(evh_isolate_add_exit_listener(iso, removed.port()), EVH_OK);
  ASSERT_EQ(evh_isolate_remove_exit_listener(iso, removed.port()), EVH_OK);
  EXPECT_EQ(evh_isolate_remove_exit_listener(iso, removed.port()), EVH_EUNKNOWNPORT);
  EXPECT_EQ(evh_isolate_kill(iso, 7), EVH_EINVAL);
  EXPECT_EQ(evh_isolate_is_dead(iso), 0);
  ASSERT_EQ(evh_isolate_kill(iso, EVH_BEFORE_NEXT_EVENT), EVH_OK);
  ASSERT_EQ(evh_isolate_kill(iso, EVH_IMMEDIATE), EVH_OK);  // idempotent
  EXPECT_EQ(rx.exit().reason, EVH_EXIT_KILLED);
  EXPECT_EQ(evh_isolate_ping(iso, rx.port(), "p", 1, EVH_IMMEDIATE), EVH_EDEAD);
  EXPECT_EQ(evh_isolate_add_error_listener(iso, rx.port()), EVH_EDEAD);
  EXPECT_TRUE(rx.empty());
  EXPECT_TRUE(removed.empty());  // removed before the exit: never told
  ASSERT_EQ(evh_runtime_shutdown(rt), EVH_OK);
  EXPECT_EQ(ctx.destroyed.load(), 1);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// Ping answers with the given bytes; a bad priority or NULL data with a size is refused.
TEST(CapiIsolate, PingAnswers) {
  Runtime rt;
  Receiver rx(rt);
  Ctx ctx{rt, rx.port()};
  evh_isolate* iso = spawn(rt, &echo, &ctx);
  ASSERT_EQ(evh_isolate_ping(iso, rx.port(), "pong", 4, EVH_BEFORE_NEXT_EVENT), EVH_OK);
  EXPECT_EQ(rx.text(), "pong");
  EXPECT_EQ(evh_isolate_ping(iso, rx.port(), "x", 1, 2), EVH_EINVAL);
  EXPECT_EQ(evh_isolate_ping(iso, rx.port(), nullptr, 1, EVH_IMMEDIATE), EVH_EINVAL);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// Pause holds normal messages; OOB ones still run; resume releases them in order.
TEST(CapiIsolate, PauseHoldsNormalMessagesNotOob) {
  Runtime rt;
  Receiver rx(rt);
  Ctx ctx{rt, rx.port()};
  evh_isolate* iso = spawn(rt, &echo, &ctx);
  const evh_port_id port = evh_isolate_main_port(iso);
  uint64_t cap = 0;
  ASSERT_EQ(evh_isolate_pause(iso, 0, &cap), EVH_OK);
  EXPECT_NE(cap, 0u);
  ASSERT_EQ(post_text(rt, port, "normal"), EVH_OK);
  ASSERT_EQ(post_text(rt, port, "oob", EVH_POST_OOB), EVH_OK);
  EXPECT_EQ(rx.text(), "oob");
  EXPECT_TRUE(rx.empty());  // the normal one is held: the isolate has handled the OOB after it
  EXPECT_EQ(evh_isolate_resume(iso, cap + 1), EVH_EINVAL);
  ASSERT_EQ(evh_isolate_resume(iso, cap), EVH_OK);
  EXPECT_EQ(rx.text(), "normal");
  EXPECT_EQ(evh_isolate_resume(iso, cap), EVH_EINVAL);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// What the mailbox high-water test's isolate saw: messages counted by its handler, and each call
// of its high-water callback (all on its turn; the test reads them after a reply).
struct HighWaterCtx {
  evh_runtime* rt = nullptr;
  evh_port_id reply = 0;
  uint64_t seen = 0;
  std::atomic<int> calls{0};
  std::atomic<uint64_t> last_depth{0};
  std::atomic<int> own_turn_result{-1};
};

// Replies with the count after every 30th message.
void count_thirty(evh_isolate*, evh_message*, void* user) {
  auto* c = static_cast<HighWaterCtx*>(user);
  if (++c->seen % 30 == 0) {
    EXPECT_EQ(post_text(c->rt, c->reply, std::to_string(c->seen)), EVH_OK);
  }
}

void note_high_water(evh_isolate* self, uint64_t depth, void* user) {
  auto* c = static_cast<HighWaterCtx*>(user);
  // The callback runs on the isolate's turn: an own-turn call succeeds.
  c->own_turn_result.store(evh_isolate_handle_interrupts(self));
  c->last_depth.store(depth);
  c->calls.fetch_add(1);
}

// The C form of the mailbox high-water mark: told once per excursion past the mark, on the
// isolate's turn, with the depth its turn saw; nothing is dropped.
TEST(CapiIsolate, MailboxHighWaterCallbackOncePerExcursion) {
  Runtime rt;
  Receiver rx(rt);
  HighWaterCtx ctx;
  ctx.rt = rt;
  ctx.reply = rx.port();
  evh_isolate_options o = EVH_ISOLATE_OPTIONS_INIT;
  o.mailbox_high_water = 10;
  o.on_mailbox_high_water = &note_high_water;
  evh_isolate* iso = nullptr;
  ASSERT_EQ(evh_isolate_spawn(rt, &count_thirty, &ctx, nullptr, &o, &iso), EVH_OK);
  const evh_port_id port = evh_isolate_main_port(iso);
  for (int round = 1; round <= 2; ++round) {
    uint64_t cap = 0;
    ASSERT_EQ(evh_isolate_pause(iso, 0, &cap), EVH_OK);
    for (int n = 0; n < 30; ++n) ASSERT_EQ(post_text(rt, port, "m"), EVH_OK);
    ASSERT_EQ(evh_isolate_resume(iso, cap), EVH_OK);
    EXPECT_EQ(rx.text(), std::to_string(30 * round));  // every message delivered
    EXPECT_EQ(ctx.calls.load(), round);
    EXPECT_EQ(ctx.last_depth.load(), 30u);
    EXPECT_EQ(ctx.own_turn_result.load(), EVH_OK);
  }
  evh_isolate_stats st{};
  ASSERT_EQ(evh_isolate_stats_get(iso, &st), EVH_OK);
  EXPECT_EQ(st.dropped, 0u);
  EXPECT_EQ(evh_isolate_kill(iso, EVH_IMMEDIATE), EVH_OK);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// Without a callback (or with a zero mark) nothing is called: the options' zeroes are "off".
TEST(CapiIsolate, MailboxHighWaterOffWithoutCallbackOrMark) {
  Runtime rt;
  Receiver rx(rt);
  HighWaterCtx ctx;
  ctx.rt = rt;
  ctx.reply = rx.port();
  evh_isolate_options o = EVH_ISOLATE_OPTIONS_INIT;
  o.on_mailbox_high_water = &note_high_water;  // mark 0: off
  evh_isolate* iso = nullptr;
  ASSERT_EQ(evh_isolate_spawn(rt, &count_thirty, &ctx, nullptr, &o, &iso), EVH_OK);
  uint64_t cap = 0;
  ASSERT_EQ(evh_isolate_pause(iso, 0, &cap), EVH_OK);
  for (int n = 0; n < 30; ++n) {
    ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "m"), EVH_OK);
  }
  ASSERT_EQ(evh_isolate_resume(iso, cap), EVH_OK);
  EXPECT_EQ(rx.text(), "30");
  EXPECT_EQ(ctx.calls.load(), 0);
  EXPECT_EQ(evh_isolate_kill(iso, EVH_IMMEDIATE), EVH_OK);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

void record_uncaught(evh_isolate* iso, const char* what, void* user) noexcept {
  auto* c = static_cast<Ctx*>(user);
  c->last_uncaught = what;
  c->uncaught_isolate = iso;
  c->uncaught.fetch_add(1, std::memory_order_release);
}

// A C handler reports an error: it is counted, on_uncaught and the error listeners hear its
// text, and the isolate goes on (errors are not fatal by default).
TEST(CapiIsolate, ReportedErrorReachesListenersAndIsolateGoesOn) {
  Ctx ctx;
  evh_runtime_options o;
  evh_runtime_options_init(&o);
  o.on_uncaught = &record_uncaught;
  o.on_uncaught_user = &ctx;
  Runtime rt(&o);
  Receiver rx(rt);
  Receiver errors(rt);
  ctx.rt = rt;
  ctx.reply = rx.port();
  evh_isolate* iso = spawn(
      rt,
      [](evh_isolate* self, evh_message* m, void* user) {
        if (text_of(m) == "fail") {
          EXPECT_EQ(evh_isolate_report_error(self, "first"), EVH_OK);
          EXPECT_EQ(evh_isolate_report_error(self, "the last one counts"), EVH_OK);
          return;
        }
        echo(self, m, user);
      },
      &ctx);
  ASSERT_EQ(evh_isolate_add_error_listener(iso, errors.port()), EVH_OK);
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "fail"), EVH_OK);
  evh_message* m = errors.next();
  evh_port_id who = 0;
  char what[64];
  EXPECT_EQ(evh_message_isolate_error(m, &who, what, sizeof what), 19);
  EXPECT_STREQ(what, "the last one counts");
  EXPECT_EQ(who, evh_isolate_main_port(iso));
  char small[5];
  EXPECT_EQ(evh_message_isolate_error(m, nullptr, small, sizeof small), 19);  // truncated
  EXPECT_STREQ(small, "the ");
  evh_message_destroy(m);
  // on_uncaught ran before the listener was posted, on the isolate's thread.
  EXPECT_EQ(ctx.uncaught.load(std::memory_order_acquire), 1);
  EXPECT_EQ(ctx.last_uncaught, "the last one counts");
  EXPECT_EQ(ctx.uncaught_isolate, iso);
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "still here"), EVH_OK);
  EXPECT_EQ(rx.text(), "still here");
  evh_isolate_stats s{};
  ASSERT_EQ(evh_isolate_stats_get(iso, &s), EVH_OK);
  EXPECT_EQ(s.exceptions, 1u);
  evh_runtime_stats rs{};
  ASSERT_EQ(evh_runtime_stats_get(rt, &rs), EVH_OK);
  EXPECT_EQ(rs.exceptions, 1u);
  EXPECT_EQ(evh_isolate_remove_error_listener(iso, errors.port()), EVH_OK);
  EXPECT_EQ(evh_isolate_remove_error_listener(iso, errors.port()), EVH_EUNKNOWNPORT);
  // Made fatal afterwards: the next error ends it.
  ASSERT_EQ(evh_isolate_set_errors_fatal(iso, 1), EVH_OK);
  ASSERT_EQ(evh_isolate_add_exit_listener(iso, rx.port()), EVH_OK);
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "fail"), EVH_OK);
  EXPECT_EQ(rx.exit().reason, EVH_EXIT_ERROR);
  EXPECT_TRUE(errors.empty());  // no longer listening
  EXPECT_EQ(evh_isolate_set_errors_fatal(nullptr, 1), EVH_EINVAL);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// With errors_are_fatal, a reported error ends the isolate with EVH_EXIT_ERROR.
TEST(CapiIsolate, FatalErrorEndsTheIsolate) {
  Runtime rt;
  Receiver rx(rt);
  Ctx ctx{rt, rx.port()};
  evh_isolate_options o = EVH_ISOLATE_OPTIONS_INIT;
  o.errors_are_fatal = 1;
  evh_isolate* iso = spawn(
      rt,
      [](evh_isolate* self, evh_message*, void*) {
        EXPECT_EQ(evh_isolate_report_error(self, nullptr), EVH_OK);  // NULL reads as "error"
      },
      &ctx, &o);
  ASSERT_EQ(evh_isolate_add_error_listener(iso, rx.port()), EVH_OK);
  ASSERT_EQ(evh_isolate_add_exit_listener(iso, rx.port()), EVH_OK);
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "x"), EVH_OK);
  evh_message* m = rx.next();
  char what[16];
  EXPECT_EQ(evh_message_isolate_error(m, nullptr, what, sizeof what), 5);
  EXPECT_STREQ(what, "error");
  evh_message_destroy(m);
  EXPECT_EQ(rx.exit().reason, EVH_EXIT_ERROR);
  ASSERT_EQ(evh_runtime_shutdown(rt), EVH_OK);
  EXPECT_EQ(ctx.destroyed.load(), 1);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// A handler written in C++ that throws: the exception stays inside evh (caught, counted,
// reported with its what()), and the isolate goes on. The same for a microtask and a timer
// callback. Nothing escapes to the caller of any C call.
TEST(CapiIsolate, ThrowingCallbacksAreCaughtAndReported) {
  Runtime rt;
  Receiver rx(rt);
  Receiver errors(rt);
  Ctx ctx{rt, rx.port()};
  evh_isolate* iso = spawn(
      rt,
      [](evh_isolate* self, evh_message* m, void* user) {
        const std::string t = text_of(m);
        if (t == "throw") throw std::runtime_error("thrown by a handler");
        if (t == "microtask") {
          EXPECT_EQ(
              evh_isolate_microtask(
                  self,
                  [](evh_isolate*, void*) { throw std::runtime_error("thrown by a microtask"); },
                  nullptr, nullptr),
              EVH_OK);
          return;
        }
        if (t == "timer") {
          auto* timer = new evh_timer;
          EXPECT_EQ(evh_timer_init(
                        timer,
                        [](evh_isolate*, evh_timer* tm, uint64_t, void*) {
                          delete tm;
                          throw 42;  // not a std::exception
                        },
                        nullptr),
                    EVH_OK);
          EXPECT_EQ(evh_timer_start(self, timer, 0, EVH_SLACK_EXACT), EVH_OK);
          return;
        }
        echo(self, m, user);
      },
      &ctx);
  ASSERT_EQ(evh_isolate_add_error_listener(iso, errors.port()), EVH_OK);
  const evh_port_id port = evh_isolate_main_port(iso);
  for (const char* what : {"throw", "microtask", "timer"}) {
    ASSERT_EQ(post_text(rt, port, what), EVH_OK);
  }
  for (const char* want : {"thrown by a handler", "thrown by a microtask", "unknown exception"}) {
    evh_message* m = errors.next();
    char what[64];
    EXPECT_GT(evh_message_isolate_error(m, nullptr, what, sizeof what), 0);
    EXPECT_STREQ(what, want);
    evh_message_destroy(m);
  }
  ASSERT_EQ(post_text(rt, port, "alive"), EVH_OK);
  EXPECT_EQ(rx.text(), "alive");
  evh_isolate_stats s{};
  ASSERT_EQ(evh_isolate_stats_get(iso, &s), EVH_OK);
  EXPECT_EQ(s.exceptions, 3u);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// Own-turn calls fail with EVH_EWRONGTHREAD outside the isolate's turn — from a plain thread and
// from another isolate's turn — and release what they were handed.
TEST(CapiIsolate, OwnTurnCallsOutsideTheTurnFail) {
  Runtime rt;
  Receiver rx(rt);
  Ctx ctx{rt, rx.port()};
  evh_isolate* iso = spawn(rt, &echo, &ctx);
  evh_port_id p = 1;
  EXPECT_EQ(evh_isolate_open_port(iso, &p), EVH_EWRONGTHREAD);
  EXPECT_EQ(p, 0u);
  EXPECT_EQ(evh_isolate_report_error(iso, "x"), EVH_EWRONGTHREAD);
  EXPECT_EQ(evh_isolate_handle_interrupts(iso), EVH_EWRONGTHREAD);
  Finalized dropped;
  EXPECT_EQ(evh_isolate_microtask(
                iso, [](evh_isolate*, void*) {}, &dropped, &Finalized::finalize),
            EVH_EWRONGTHREAD);
  EXPECT_EQ(dropped.get(), 1);
  evh_timer timer;
  ASSERT_EQ(evh_timer_init(
                &timer, [](evh_isolate*, evh_timer*, uint64_t, void*) {}, nullptr),
            EVH_OK);
  EXPECT_EQ(evh_timer_start(iso, &timer, kMs, EVH_SLACK_COARSE), EVH_EWRONGTHREAD);
  EXPECT_EQ(evh_timer_cancel(iso, &timer), EVH_EWRONGTHREAD);
  EXPECT_EQ(evh_isolate_cached_now(iso), 0);
  evh_timer_stats ts;
  EXPECT_EQ(evh_isolate_timer_stats(iso, &ts), EVH_EWRONGTHREAD);

  // From inside another isolate's turn: its own calls work, the first one's do not.
  Ctx other_ctx{rt, rx.port()};
  other_ctx.other = iso;
  evh_isolate* other = spawn(
      rt,
      [](evh_isolate* self, evh_message*, void* user) {
        auto* c = static_cast<Ctx*>(user);
        evh_port_id port = 0;
        const int theirs = evh_isolate_open_port(c->other, &port);
        const int mine = evh_isolate_open_port(self, &port);
        reply(c, std::to_string(theirs) + " " + std::to_string(mine));
      },
      &other_ctx);
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(other), "go"), EVH_OK);
  EXPECT_EQ(rx.text(), std::to_string(EVH_EWRONGTHREAD) + " 0");
  EXPECT_EQ(evh_isolate_release(other), EVH_OK);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// Shutting the runtime down from inside a callback would wait for itself: refused.
TEST(CapiIsolate, ShutdownFromACallbackIsRefused) {
  Runtime rt;
  Receiver rx(rt);
  Ctx ctx{rt, rx.port()};
  evh_isolate* iso = spawn(
      rt,
      [](evh_isolate*, evh_message*, void* user) {
        auto* c = static_cast<Ctx*>(user);
        reply(c, std::to_string(evh_runtime_shutdown(c->rt)) + " " +
                     std::to_string(evh_runtime_destroy(c->rt)));
      },
      &ctx);
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "go"), EVH_OK);
  EXPECT_EQ(rx.text(), std::to_string(EVH_EWRONGTHREAD) + " " + std::to_string(EVH_EWRONGTHREAD));
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// A second port reaches the same handler, which tells the ports apart; closing it from outside
// makes posts to it fail.
TEST(CapiIsolate, OpenedPortsReachTheHandler) {
  Runtime rt;
  Receiver rx(rt);
  Ctx ctx{rt, rx.port()};
  evh_isolate* iso = spawn(
      rt,
      [](evh_isolate* self, evh_message* m, void* user) {
        auto* c = static_cast<Ctx*>(user);
        if (evh_message_port(m) == evh_isolate_main_port(self)) {
          evh_port_id extra = 0;
          EXPECT_EQ(evh_isolate_open_port(self, &extra), EVH_OK);
          EXPECT_EQ(evh_isolate_open_port(self, nullptr), EVH_EINVAL);
          EXPECT_EQ(evh_post(c->rt, c->reply, &extra, sizeof extra, 0), EVH_OK);
        } else {
          reply(c, "extra got " + text_of(m));
        }
      },
      &ctx);
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "open"), EVH_OK);
  evh_message* m = rx.next();
  evh_port_id extra = 0;
  size_t n = 0;
  std::memcpy(&extra, evh_message_data(m, &n), sizeof extra);
  evh_message_destroy(m);
  ASSERT_NE(extra, 0u);
  ASSERT_EQ(post_text(rt, extra, "x"), EVH_OK);
  EXPECT_EQ(rx.text(), "extra got x");
  EXPECT_EQ(evh_isolate_close_port(iso, extra), EVH_OK);
  EXPECT_EQ(evh_isolate_close_port(iso, extra), EVH_EUNKNOWNPORT);
  EXPECT_EQ(post_text(rt, extra, "x"), EVH_EUNKNOWNPORT);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// Microtasks run after the message, in the order they were scheduled.
TEST(CapiIsolate, MicrotasksRunInOrderAfterTheMessage) {
  Runtime rt;
  Receiver rx(rt);
  Ctx ctx{rt, rx.port()};
  evh_isolate* iso = spawn(
      rt,
      [](evh_isolate* self, evh_message*, void* user) {
        auto* c = static_cast<Ctx*>(user);
        c->trace.clear();  // (not `= "m"`: GCC 12 -O3 warns falsely, bug 105651)
        c->trace.push_back('m');
        for (intptr_t i = 1; i <= 3; ++i) {
          EXPECT_EQ(evh_isolate_microtask(
                        self,
                        [](evh_isolate* s, void* arg) {
                          auto* cs = static_cast<Ctx*>(evh_isolate_user(s));
                          cs->trace += std::to_string(reinterpret_cast<intptr_t>(arg));
                          if (arg == reinterpret_cast<void*>(3)) reply(cs, cs->trace);
                        },
                        reinterpret_cast<void*>(i), nullptr),
                    EVH_OK);
        }
        EXPECT_EQ(evh_isolate_microtask(self, nullptr, nullptr, nullptr), EVH_EINVAL);
      },
      &ctx);
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "go"), EVH_OK);
  EXPECT_EQ(rx.text(), "m123");
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// A microtask scheduled by a message that kills its own isolate runs or is dropped: exactly one
// of the two, once.
TEST(CapiIsolate, MicrotaskOfAKilledIsolateRunsOrIsDroppedOnce) {
  Runtime rt;
  Receiver rx(rt);
  struct Counts {
    std::atomic<int> ran{0};
    std::atomic<int> dropped{0};
  } counts;
  Ctx ctx{rt, rx.port()};
  ctx.other = reinterpret_cast<evh_isolate*>(&counts);  // smuggled for the handler
  evh_isolate* iso = spawn(
      rt,
      [](evh_isolate* self, evh_message*, void* user) {
        auto* c = static_cast<Counts*>(static_cast<void*>(static_cast<Ctx*>(user)->other));
        EXPECT_EQ(evh_isolate_kill(self, EVH_IMMEDIATE), EVH_OK);
        EXPECT_EQ(
            evh_isolate_microtask(
                self, [](evh_isolate*, void* arg) { static_cast<Counts*>(arg)->ran.fetch_add(1); },
                c, [](void* arg) noexcept { static_cast<Counts*>(arg)->dropped.fetch_add(1); }),
            EVH_OK);
      },
      &ctx);
  ASSERT_EQ(evh_isolate_add_exit_listener(iso, rx.port()), EVH_OK);
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "go"), EVH_OK);
  EXPECT_EQ(rx.exit().reason, EVH_EXIT_KILLED);
  ASSERT_EQ(evh_runtime_shutdown(rt), EVH_OK);  // every turn has finished
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);  // the last reference: the record is freed
  EXPECT_EQ(counts.ran.load() + counts.dropped.load(), 1);
}

// A long-running handler sees the immediate kill through interrupt_requested and unwinds when
// handle_interrupts says the isolate is dead.
TEST(CapiIsolate, LongLoopSeesTheKill) {
  Runtime rt;
  Receiver rx(rt);
  Ctx ctx{rt, rx.port()};
  evh_isolate* iso = spawn(
      rt,
      [](evh_isolate* self, evh_message*, void* user) {
        auto* c = static_cast<Ctx*>(user);
        reply(c, "looping");
        while (evh_isolate_interrupt_requested(self) == 0) {
          // a long computation's back edge: one atomic load per check
        }
        EXPECT_EQ(evh_isolate_handle_interrupts(self), EVH_EDEAD);
        c->stop.store(true);
      },
      &ctx);
  ASSERT_EQ(evh_isolate_add_exit_listener(iso, rx.port()), EVH_OK);
  EXPECT_EQ(evh_isolate_interrupt_requested(iso), 0);
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "go"), EVH_OK);
  EXPECT_EQ(rx.text(), "looping");
  ASSERT_EQ(evh_isolate_kill(iso, EVH_IMMEDIATE), EVH_OK);
  EXPECT_EQ(rx.exit().reason, EVH_EXIT_KILLED);
  EXPECT_TRUE(ctx.stop.load());
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// Natives posted from several threads while the isolate is killed: each finalized exactly once
// (by the handler's return, the kill's drain, or the refused post).
TEST(CapiIsolate, FinalizedOnceWhenPostsRaceWithKill) {
  Finalized f;
  constexpr int kThreads = 3, kEach = 3000;
  {
    Runtime rt;
    Receiver rx(rt);
    Ctx ctx{rt, rx.port()};
    evh_isolate* iso = spawn(
        rt,
        [](evh_isolate*, evh_message* m, void*) {
          // Every third one is taken and finalized by hand; the rest are left to evh.
          static thread_local int n = 0;
          if (++n % 3 == 0) Finalized::finalize(evh_message_take_native(m));
        },
        &ctx);
    const evh_port_id port = evh_isolate_main_port(iso);
    std::atomic<bool> go{false};
    std::vector<std::thread> posters;
    for (int t = 0; t < kThreads; ++t) {
      posters.emplace_back([&] {
        while (!go.load(std::memory_order_acquire)) {
        }
        for (int i = 0; i < kEach; ++i) {
          (void)evh_post_native(rt, port, &f, &Finalized::finalize, i % 5 == 0 ? EVH_POST_OOB : 0);
        }
      });
    }
    go.store(true, std::memory_order_release);
    while (f.get() < 100) {
    }
    ASSERT_EQ(evh_isolate_kill(iso, EVH_IMMEDIATE), EVH_OK);
    for (auto& t : posters) t.join();
    EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
  }  // shutdown drains whatever the dying isolate had not
  EXPECT_EQ(f.get(), kThreads * kEach);
}

// An isolate bound to a dedicated runner handles every message on that one thread.
TEST(CapiRunner, DedicatedRunnerKeepsOneThread) {
  Runtime rt;
  Receiver rx(rt);
  Ctx ctx{rt, rx.port()};
  evh_runner* ui = nullptr;
  ASSERT_EQ(evh_runner_dedicated(rt, "ui", &ui), EVH_OK);
  EXPECT_EQ(evh_runner_dedicated(rt, "ui", nullptr), EVH_EINVAL);
  evh_isolate_options o = EVH_ISOLATE_OPTIONS_INIT;
  o.runner = ui;
  evh_isolate* iso = spawn(
      rt,
      [](evh_isolate*, evh_message*, void* user) {
        std::ostringstream id;
        id << std::this_thread::get_id();
        reply(static_cast<Ctx*>(user), id.str());
      },
      &ctx, &o);
  std::set<std::string> threads;
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "which"), EVH_OK);
    threads.insert(rx.text());
  }
  EXPECT_EQ(threads.size(), 1u);
  std::ostringstream me;
  me << std::this_thread::get_id();
  EXPECT_EQ(threads.count(me.str()), 0u);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// An embedder's runner: evh hands it tasks through C callbacks, and the embedder's thread (here
// the test's) runs them; the handler runs on that thread.
struct Loop {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<evh_task*> tasks;
  std::atomic<int> posts{0};
  static void post(evh_task* t, void* user) noexcept {
    auto* l = static_cast<Loop*>(user);
    {
      std::lock_guard lock(l->mu);
      l->tasks.push_back(t);
    }
    l->posts.fetch_add(1);
    l->cv.notify_one();
  }
  void run_one() {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return !tasks.empty(); });
    evh_task* t = tasks.front();
    tasks.pop_front();
    lock.unlock();
    evh_task_run(t);
  }
};

TEST(CapiRunner, EmbedderRunnerRunsTasksOnItsThread) {
  Runtime rt;
  Receiver rx(rt);
  Ctx ctx{rt, rx.port()};
  Loop loop;
  evh_runner_callbacks cb{};
  evh_runner* mine = nullptr;
  cb.post = &Loop::post;
  EXPECT_EQ(evh_runner_embedder(rt, &cb, &mine), EVH_EOPTIONS);  // no size
  cb = EVH_RUNNER_CALLBACKS_INIT;
  EXPECT_EQ(evh_runner_embedder(rt, &cb, &mine), EVH_EINVAL);  // no post callback
  cb.post = &Loop::post;
  cb.user = &loop;
  ASSERT_EQ(evh_runner_embedder(rt, &cb, &mine), EVH_OK);
  evh_isolate_options o = EVH_ISOLATE_OPTIONS_INIT;
  o.runner = mine;
  static std::thread::id handler_thread;
  evh_isolate* iso = spawn(
      rt,
      [](evh_isolate* self, evh_message* m, void* user) {
        handler_thread = std::this_thread::get_id();
        echo(self, m, user);
      },
      &ctx, &o);
  ASSERT_EQ(post_text(rt, evh_isolate_main_port(iso), "on my loop"), EVH_OK);
  loop.run_one();
  EXPECT_EQ(rx.text(), "on my loop");
  EXPECT_EQ(handler_thread, std::this_thread::get_id());
  EXPECT_EQ(loop.posts.load(), 1);
  // The intrusive link is the runner's to use.
  evh_task_set_next(nullptr, nullptr);
  EXPECT_EQ(evh_task_next(nullptr), nullptr);
  // An idle isolate is finished by its killer, so shutdown needs no more tasks run.
  ASSERT_EQ(evh_isolate_kill(iso, EVH_IMMEDIATE), EVH_OK);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// The batch handler's C form and packed posts: values posted packed while the isolate is paused
// arrive in order, in batches (a message to the batch handler is evh's for the call: it forwards
// natives without copying, and what it leaves is released once); bad arguments are refused.
struct BatchCtx {
  evh_runtime* rt = nullptr;
  evh_port_id reply = 0;
  std::atomic<int> destroyed{0};
  size_t largest = 0;  // the isolate's own
  size_t calls = 0;
};

void forward_batch(evh_isolate*, evh_message* const* ms, size_t count, void* user) {
  auto* c = static_cast<BatchCtx*>(user);
  c->largest = std::max(c->largest, count);
  ++c->calls;
  for (size_t i = 0; i < count; ++i) {
    if (evh_message_kind(ms[i]) == EVH_MESSAGE_NATIVE && i % 2 == 1) continue;  // left: released
    EXPECT_EQ(evh_post_message(c->rt, c->reply, ms[i], 0), EVH_OK);
  }
}

TEST(CapiIsolate, BatchHandlerAndPackedPosts) {
  Runtime rt;
  Receiver rx(rt);
  BatchCtx ctx{rt, rx.port()};
  evh_isolate* iso = nullptr;
  EXPECT_EQ(evh_isolate_spawn_batch(rt, nullptr, &ctx, nullptr, nullptr, &iso), EVH_EINVAL);
  ASSERT_EQ(evh_isolate_spawn_batch(
                rt, &forward_batch, &ctx,
                [](void* c) noexcept { static_cast<BatchCtx*>(c)->destroyed.fetch_add(1); },
                nullptr, &iso),
            EVH_OK);
  const evh_port_id port = evh_isolate_main_port(iso);
  uint64_t values[100];
  for (uint64_t i = 0; i < 100; ++i) values[i] = i;
  EXPECT_EQ(evh_post_packed(rt, port, values, 0, 100, 0), EVH_EINVAL);
  EXPECT_EQ(evh_post_packed(rt, port, values, 41, 1, 0), EVH_EINVAL);
  EXPECT_EQ(evh_post_packed(rt, port, nullptr, 8, 1, 0), EVH_EINVAL);
  EXPECT_EQ(evh_post_packed(rt, port, values, 8, 1, 4), EVH_EINVAL);  // unknown flag
  EXPECT_EQ(evh_post_packed(rt, 12345, values, 8, 1, 0), EVH_EUNKNOWNPORT);
  uint64_t cap = 0;
  ASSERT_EQ(evh_isolate_pause(iso, 0, &cap), EVH_OK);
  ASSERT_EQ(evh_post_packed(rt, port, values, 8, 100, 0), EVH_OK);
  Finalized f;
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(evh_post_native(rt, port, &f, &Finalized::finalize, 0), EVH_OK);
  }
  const uint64_t end = 999;
  ASSERT_EQ(evh_post_packed(rt, port, &end, 8, 1, 0), EVH_OK);
  ASSERT_EQ(evh_isolate_resume(iso, cap), EVH_OK);
  for (uint64_t i = 0; i < 100; ++i) {
    evh_message* m = rx.next();
    size_t n = 0;
    const void* d = evh_message_data(m, &n);
    ASSERT_EQ(n, 8u);
    uint64_t v = 0;
    std::memcpy(&v, d, 8);
    EXPECT_EQ(v, i);
    evh_message_destroy(m);
  }
  // The forwarded natives (finalized as the test destroys them), then the end.
  for (;;) {
    evh_message* m = rx.next();
    ASSERT_NE(m, nullptr);
    const bool native = evh_message_kind(m) == EVH_MESSAGE_NATIVE;
    if (native) {
      EXPECT_EQ(evh_message_native(m), &f);
    }
    evh_message_destroy(m);
    if (!native) break;
  }
  ASSERT_EQ(evh_runtime_shutdown(rt), EVH_OK);
  EXPECT_EQ(f.get(), 10);
  EXPECT_GT(ctx.largest, 1u);
  EXPECT_LE(ctx.largest, 64u);
  evh_isolate_stats s{};
  ASSERT_EQ(evh_isolate_stats_get(iso, &s), EVH_OK);
  EXPECT_EQ(s.handled, 111u);
  EXPECT_EQ(ctx.destroyed.load(), 1);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

// The packed form beside the batch form: runs of u64 values come in place (checked, summed, and
// the sum forwarded at the end), a native in between through the batch form, in order; refused
// spawns release the user data once; an error reported from the packed form is counted.
struct PackedCtx {
  evh_runtime* rt = nullptr;
  evh_port_id reply = 0;
  std::atomic<int> destroyed{0};
  uint64_t next = 0;  // the next value expected
  bool in_order = true;
  bool shapes_ok = true;
  size_t packed_calls = 0;
  size_t natives = 0;
};

void packed_values(evh_isolate* self, const void* data, size_t count, size_t each, size_t stride,
                   void* user) {
  auto* c = static_cast<PackedCtx*>(user);
  ++c->packed_calls;
  if (each != 8 || stride != 8 || count == 0) c->shapes_ok = false;
  for (size_t i = 0; i < count; ++i) {
    uint64_t v = 0;
    std::memcpy(&v, static_cast<const char*>(data) + i * stride, 8);
    if (v == 999) {
      const uint64_t ok = c->in_order && c->shapes_ok && c->natives == 1 ? 1 : 0;
      EXPECT_EQ(evh_post_packed(c->rt, c->reply, &ok, 8, 1, 0), EVH_OK);
      continue;
    }
    if (v != c->next) c->in_order = false;
    c->next = v + 1;
  }
  if (c->packed_calls == 2) evh_isolate_report_error(self, "packed");
}

void batch_values(evh_isolate*, evh_message* const* ms, size_t count, void* user) {
  auto* c = static_cast<PackedCtx*>(user);
  for (size_t i = 0; i < count; ++i) {
    if (evh_message_kind(ms[i]) == EVH_MESSAGE_NATIVE) {
      // Between the two runs: every value of the first has come, none of the second.
      if (c->next != 50) c->in_order = false;
      ++c->natives;
      continue;
    }
    size_t n = 0;
    const void* d = evh_message_data(ms[i], &n);
    uint64_t v = 0;
    if (n == 8) std::memcpy(&v, d, 8);
    if (v != c->next) c->in_order = false;
    c->next = v + 1;
  }
}

TEST(CapiIsolate, PackedHandlerBesideTheBatchForm) {
  Runtime rt;
  Receiver rx(rt);
  PackedCtx ctx{rt, rx.port()};
  auto destroy = [](void* c) noexcept { static_cast<PackedCtx*>(c)->destroyed.fetch_add(1); };
  evh_isolate* iso = nullptr;
  EXPECT_EQ(evh_isolate_spawn_packed(rt, nullptr, &packed_values, &ctx, destroy, nullptr, &iso),
            EVH_EINVAL);
  EXPECT_EQ(evh_isolate_spawn_packed(rt, &batch_values, nullptr, &ctx, destroy, nullptr, &iso),
            EVH_EINVAL);
  EXPECT_EQ(iso, nullptr);
  EXPECT_EQ(ctx.destroyed.load(), 2);
  ctx.destroyed = 0;
  ASSERT_EQ(
      evh_isolate_spawn_packed(rt, &batch_values, &packed_values, &ctx, destroy, nullptr, &iso),
      EVH_OK);
  const evh_port_id port = evh_isolate_main_port(iso);
  uint64_t values[100];
  for (uint64_t i = 0; i < 100; ++i) values[i] = i;
  uint64_t cap = 0;
  ASSERT_EQ(evh_isolate_pause(iso, 0, &cap), EVH_OK);
  ASSERT_EQ(evh_post_packed(rt, port, values, 8, 50, 0), EVH_OK);
  Finalized f;
  ASSERT_EQ(evh_post_native(rt, port, &f, &Finalized::finalize, 0), EVH_OK);
  ASSERT_EQ(evh_post_packed(rt, port, values + 50, 8, 50, 0), EVH_OK);
  const uint64_t end = 999;
  ASSERT_EQ(evh_post_packed(rt, port, &end, 8, 1, 0), EVH_OK);
  ASSERT_EQ(evh_isolate_resume(iso, cap), EVH_OK);
  evh_message* m = rx.next();
  size_t n = 0;
  const void* d = evh_message_data(m, &n);
  ASSERT_EQ(n, 8u);
  uint64_t ok = 0;
  std::memcpy(&ok, d, 8);
  EXPECT_EQ(ok, 1u);
  evh_message_destroy(m);
  ASSERT_EQ(evh_runtime_shutdown(rt), EVH_OK);
  EXPECT_EQ(f.get(), 1);  // the native, left in its message, released once
  EXPECT_GE(ctx.packed_calls, 3u);
  evh_isolate_stats s{};
  ASSERT_EQ(evh_isolate_stats_get(iso, &s), EVH_OK);
  EXPECT_EQ(s.handled, 102u);
  EXPECT_EQ(s.exceptions, 1u);
  EXPECT_EQ(ctx.destroyed.load(), 1);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

}  // namespace
}  // namespace evh_capi_test

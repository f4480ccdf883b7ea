// The C API's timers: an evh::Timer in the caller's evh_timer storage, so that starting and
// cancelling allocate nothing and stay O(1), as in the C++ API.
#include <evh/timer.h>

#include <cstring>

#include "capi/handles.h"

namespace evh::capi {
namespace {

// What lives in an evh_timer's storage: the Timer at the start (the storage's 64-byte alignment
// is the Timer's), the C callback after it, and a magic word in the last four bytes, read with
// memcpy so that storage never initialised can be told apart. (Two parts rather than one struct:
// a struct holding the 64-byte-aligned Timer would round up to 128 bytes and leave no room.)
struct Tail {
  evh_timer_fn fn = nullptr;
  void* user = nullptr;
  // The isolate that started it first: only that one may re-arm or cancel it.
  std::atomic<const evh_isolate*> owner{nullptr};
};
constexpr std::size_t kTailOffset = 64;
constexpr std::size_t kMagicOffset = EVH_TIMER_SIZE - sizeof(std::uint32_t);
constexpr std::uint32_t kTimerMagic = 0x65767469;  // "evti"
static_assert(sizeof(Timer) <= kTailOffset && alignof(Timer) <= EVH_TIMER_ALIGN);
static_assert(kTailOffset % alignof(Tail) == 0 && kTailOffset + sizeof(Tail) <= kMagicOffset);
static_assert(alignof(evh_timer) == EVH_TIMER_ALIGN && sizeof(evh_timer) == EVH_TIMER_SIZE);

struct Box {
  Timer* timer;
  Tail* tail;
};

Box box_of(const evh_timer* t) noexcept {
  if (t == nullptr) return {};
  std::uint32_t magic;
  std::memcpy(&magic, t->opaque + kMagicOffset, sizeof magic);
  if (magic != kTimerMagic) return {};
  auto* bytes = const_cast<unsigned char*>(t->opaque);
  return {std::launder(reinterpret_cast<Timer*>(bytes)),
          std::launder(reinterpret_cast<Tail*>(bytes + kTailOffset))};
}

void on_timer(Isolate& self, Timer& timer, std::uint64_t skipped) {
  auto* storage = static_cast<evh_timer*>(timer.user);
  const Tail& tail = *box_of(storage).tail;
  auto* handle = static_cast<evh_isolate*>(self.data());
  TurnScope turn(handle, self);
  // The storage may be freed by the callback (a one-shot is disarmed before it runs): nothing
  // touches it after the call.
  tail.fn(handle, storage, skipped, tail.user);
  TurnScope::raise_reported(handle);
}

bool slack_of(std::int64_t ns, Slack& out) noexcept {
  if (ns == EVH_SLACK_COARSE) {
    out = Slack::coarse();
  } else if (ns == EVH_SLACK_EXACT) {
    out = Slack::exact();
  } else if (ns > 0 && ns <= EVH_DURATION_MAX) {
    out = Slack::custom(std::chrono::nanoseconds(ns));
  } else {
    return false;
  }
  return true;
}

// The common checks of every start: own turn, a prepared timer, a valid slack, and not armed by
// another isolate.
int prepare_start(evh_isolate* self, evh_timer* timer, std::int64_t slack_ns, Isolate*& iso,
                  Box& box, Slack& slack) noexcept {
  if (int e = check_own_turn(self, iso); e != EVH_OK) return e;
  box = box_of(timer);
  if (box.timer == nullptr || !slack_of(slack_ns, slack)) return EVH_EINVAL;
  // A timer is the isolate's that first starts it, until evh_timer_init prepares it again.
  const evh_isolate* owner = box.tail->owner.load(std::memory_order_relaxed);
  if (owner != nullptr && owner != self) return EVH_EBUSY;
  box.tail->owner.store(self, std::memory_order_relaxed);
  return EVH_OK;
}

}  // namespace
}  // namespace evh::capi

using namespace evh::capi;

extern "C" {

int evh_timer_init(evh_timer* timer, evh_timer_fn fn, void* user) {
  if (timer == nullptr || fn == nullptr ||
      reinterpret_cast<std::uintptr_t>(timer) % EVH_TIMER_ALIGN != 0) {
    return EVH_EINVAL;
  }
  if (Box old = box_of(timer); old.timer != nullptr && old.timer->armed()) return EVH_EBUSY;
  auto* t = new (timer->opaque) evh::Timer;
  t->user = timer;
  new (timer->opaque + kTailOffset) Tail{fn, user, {}};
  std::memcpy(timer->opaque + kMagicOffset, &kTimerMagic, sizeof kTimerMagic);
  return EVH_OK;
}

int evh_timer_start(evh_isolate* self, evh_timer* timer, int64_t delay_ns, int64_t slack_ns) {
  evh::Isolate* iso = nullptr;
  Box box{};
  evh::Slack slack = evh::Slack::coarse();
  if (int e = prepare_start(self, timer, slack_ns, iso, box, slack); e != EVH_OK) return e;
  // A negative delay is refused; a huge one means "never" (SEMANTICS 11).
  if (delay_ns < 0) return EVH_EINVAL;
  return guarded([&] {
    return to_c(iso->start_timer(*box.timer, std::chrono::nanoseconds(delay_ns), &on_timer, slack));
  });
}

int evh_timer_start_at(evh_isolate* self, evh_timer* timer, int64_t deadline_ns, int64_t slack_ns) {
  evh::Isolate* iso = nullptr;
  Box box{};
  evh::Slack slack = evh::Slack::coarse();
  if (int e = prepare_start(self, timer, slack_ns, iso, box, slack); e != EVH_OK) return e;
  if (deadline_ns < 0) return EVH_EINVAL;  // before the clock's start: a caller's arithmetic slip
  return guarded([&] {
    return to_c(iso->start_timer_at(*box.timer, evh::TimePoint(deadline_ns), &on_timer, slack));
  });
}

int evh_timer_start_periodic(evh_isolate* self, evh_timer* timer, int64_t period_ns,
                             int64_t slack_ns) {
  evh::Isolate* iso = nullptr;
  Box box{};
  evh::Slack slack = evh::Slack::coarse();
  if (int e = prepare_start(self, timer, slack_ns, iso, box, slack); e != EVH_OK) return e;
  // Bounded: the next deadline of a periodic timer is its last plus the period, which must not
  // overflow.
  if (period_ns <= 0 || period_ns > EVH_DURATION_MAX) return EVH_EINVAL;
  return guarded([&] {
    return to_c(
        iso->start_periodic(*box.timer, std::chrono::nanoseconds(period_ns), &on_timer, slack));
  });
}

int evh_timer_start_periodic_at(evh_isolate* self, evh_timer* timer, int64_t first_ns,
                                int64_t period_ns, int64_t slack_ns) {
  evh::Isolate* iso = nullptr;
  Box box{};
  evh::Slack slack = evh::Slack::coarse();
  if (int e = prepare_start(self, timer, slack_ns, iso, box, slack); e != EVH_OK) return e;
  if (first_ns < 0 || period_ns <= 0 || period_ns > EVH_DURATION_MAX) return EVH_EINVAL;
  return guarded([&] {
    return to_c(iso->start_periodic_at(*box.timer, evh::TimePoint(first_ns),
                                       std::chrono::nanoseconds(period_ns), &on_timer, slack));
  });
}

int evh_timer_cancel(evh_isolate* self, evh_timer* timer) {
  evh::Isolate* iso = nullptr;
  if (int e = check_own_turn(self, iso); e != EVH_OK) return e;
  Box box = box_of(timer);
  if (box.timer == nullptr) return EVH_EINVAL;
  const evh_isolate* owner = box.tail->owner.load(std::memory_order_relaxed);
  if (owner == nullptr) return EVH_OK;  // never started
  if (owner != self) return EVH_EBUSY;
  return to_c(iso->cancel_timer(*box.timer));  // a no-op when not armed
}

int evh_timer_is_armed(const evh_timer* timer) {
  const Box box = box_of(timer);
  return box.timer != nullptr && box.timer->armed() ? 1 : 0;
}

int64_t evh_timer_deadline(const evh_timer* timer) {
  const Box box = box_of(timer);
  return box.timer != nullptr ? box.timer->deadline_ns() : 0;
}

int64_t evh_isolate_cached_now(evh_isolate* self) {
  evh::Isolate* iso = own_turn(self);
  return iso != nullptr ? iso->cached_now().count() : 0;
}

}  // extern "C"

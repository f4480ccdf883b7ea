// Fuzz target: a TimerSet driven by an operation sequence read from the input (start, restart,
// start at an absolute deadline, cancel, advance the clock, fire), checked after every step
// against a model of what must have fired: nothing early, nothing cancelled, (deadline,
// creation) order, periodic catch-up counts, and no due timer left behind. The random-operation
// test in tests/timer/timer_set_test.cc does the same with a fixed seed; here coverage steers.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <utility>

#include "timer/timer_set.h"

namespace {

using evh::Slack;
using evh::Timer;
using evh::detail::TimerSet;

constexpr std::size_t kTimers = 64;
constexpr std::int64_t kStart = 5'000'000'000;

void noop(evh::Isolate&, Timer&, std::uint64_t) {}

struct Model {
  bool armed = false;
  std::int64_t deadline = 0;
  std::int64_t period = 0;
  std::uint64_t order = 0;
};

void check(bool ok) {
  if (!ok) std::abort();
}

std::int64_t pick_span(FuzzedDataProvider& in) {
  // Spans that reach every wheel level, past its 52-day horizon, and the saturating edge.
  switch (in.ConsumeIntegralInRange<int>(0, 6)) {
    case 0:
      return 0;
    case 1:
      return in.ConsumeIntegralInRange<std::int64_t>(0, 100'000);
    case 2:
      return in.ConsumeIntegralInRange<std::int64_t>(0, 20'000'000);
    case 3:
      return in.ConsumeIntegralInRange<std::int64_t>(0, 2'000'000'000);
    case 4:
      return in.ConsumeIntegralInRange<std::int64_t>(0, 7'200'000'000'000);
    case 5:
      return in.ConsumeIntegralInRange<std::int64_t>(0, std::int64_t{1} << 53);
    default:
      return INT64_MAX - in.ConsumeIntegralInRange<std::int64_t>(0, 1000);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  std::array<Timer, kTimers> timers;  // first: they outlive the set they are armed in
  TimerSet set(kStart);
  std::array<Model, kTimers> model{};
  std::uint64_t order = 0;
  std::int64_t now = kStart;
  const Slack slacks[] = {Slack::exact(), Slack::coarse(),
                          Slack::custom(std::chrono::microseconds(300))};
  for (std::size_t i = 0; i < kTimers; ++i) timers[i].user = reinterpret_cast<void*>(i);

  int steps = 0;
  while (in.remaining_bytes() > 0 && ++steps < 4096) {
    const int op = in.ConsumeIntegralInRange<int>(0, 4);
    const std::size_t i = in.ConsumeIntegralInRange<std::size_t>(0, kTimers - 1);
    Model& m = model[i];
    if (op == 0 || op == 1) {
      // start (relative) or start_at (absolute, possibly in the past)
      const Slack slack = slacks[in.ConsumeIntegralInRange<int>(0, 2)];
      const bool periodic = in.ConsumeBool();
      std::int64_t deadline = 0;
      std::int64_t period = 0;
      if (op == 0) {
        const std::int64_t delay = pick_span(in);
        period = periodic ? std::max<std::int64_t>(delay % 1'000'000'000, 1'000) : 0;
        set.start(timers[i], now, delay, period, &noop, slack);
        deadline = TimerSet::saturating_add(now, delay);
      } else {
        const std::int64_t offset = pick_span(in) - in.ConsumeIntegralInRange<std::int64_t>(0, 3);
        deadline = in.ConsumeBool() ? TimerSet::saturating_add(now, offset) : now - offset % now;
        period = periodic ? 1'000 + in.ConsumeIntegralInRange<std::int64_t>(0, 10'000'000) : 0;
        set.start_at(timers[i], now, deadline, period, &noop, slack);
      }
      m = {true, deadline, period, order++};
      check(timers[i].armed());
      check(timers[i].deadline_ns() == deadline);
    } else if (op == 2) {
      set.cancel(timers[i]);
      m.armed = false;
      check(!timers[i].armed());
    } else {
      // Advance (op 3: a small step, op 4: any span) and fire what is due.
      const std::int64_t step =
          op == 3 ? in.ConsumeIntegralInRange<std::int64_t>(0, 300'000) : pick_span(in) / 4;
      // The clock stays in a realistic range (a monotonic clock is far from 2^62 for
      // centuries); deadlines do not: those past the wheel's horizon and near INT64_MAX must
      // simply never fire.
      now = std::min(TimerSet::saturating_add(now, step), kStart + (std::int64_t{1} << 60));
      set.begin_batch(now);
      std::uint64_t skipped = 0;
      std::pair<std::int64_t, std::uint64_t> last{INT64_MIN, 0};
      while (Timer* t = set.next_in_batch(now, skipped)) {
        Model& f = model[reinterpret_cast<std::size_t>(t->user)];
        check(f.armed);            // a cancelled timer fired
        check(f.deadline <= now);  // fired early
        const std::pair<std::int64_t, std::uint64_t> key{f.deadline, f.order};
        check(last < key);  // out of (deadline, creation) order
        last = key;
        if (f.period == 0) {
          f.armed = false;
          check(skipped == 0);
          continue;
        }
        const std::int64_t behind = (now - f.deadline) / f.period;
        check(skipped == static_cast<std::uint64_t>(behind));
        f.deadline = TimerSet::saturating_add(f.deadline, (behind + 1) * f.period);
        f.order = order++;
        check(t->deadline_ns() == f.deadline);
      }
      std::uint64_t armed = 0;
      for (std::size_t k = 0; k < kTimers; ++k) {
        check(timers[k].armed() == model[k].armed);
        if (!model[k].armed) continue;
        ++armed;
        check(model[k].deadline > now);  // a due timer was left out of the batch
      }
      check(set.live() == armed);
    }
  }
  return 0;
}

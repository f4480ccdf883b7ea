// timer_batch: many timers in one isolate. One message arms 10,000 timers against a single clock
// reading (start_timer_at: no clock read per timer); they fire in deadline order, in batches, on
// the isolate's own thread. Then a periodic timer ticks three times and cancels itself.
#include <evh/runtime.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

// The isolate's state: touched only on its own turn, so it needs no lock.
struct Batch {
  explicit Batch(std::size_t n) : timers(n) {}
  std::vector<evh::Timer> timers;  // the caller's nodes: arming one allocates nothing
  std::int64_t last_deadline = 0;
  std::size_t fired = 0;
  bool in_order = true;
  evh::SendPort done;
};

void on_fire(evh::Isolate& self, evh::Timer& t, std::uint64_t) {
  auto* b = static_cast<Batch*>(t.user);
  if (t.deadline_ns() < b->last_deadline) b->in_order = false;
  b->last_deadline = t.deadline_ns();
  if (++b->fired == b->timers.size()) {
    const evh::TimerStats s = self.timer_stats();
    (void)b->done.post(
        evh::Message::bytes(std::to_string(b->fired) + " timers in " + std::to_string(s.batches) +
                            " batches" + (b->in_order ? ", in deadline order" : ", OUT OF ORDER")));
  }
}

}  // namespace

int main() {
  evh::Runtime rt;
  auto replies = rt.open_receiver();
  evh::SendPort reply_to = *rt.send_port(replies->id());

  auto batch = std::make_shared<Batch>(10'000);
  batch->done = reply_to;
  auto timers = rt.spawn(evh::make_handler([batch](evh::Isolate& self, evh::Message&) {
    // One reading of the clock for the whole batch; deadlines spread over 20 ms.
    const evh::TimePoint now = self.cached_now();
    for (std::size_t i = 0; i < batch->timers.size(); ++i) {
      evh::Timer& t = batch->timers[i];
      t.user = batch.get();
      (void)self.start_timer_at(t, now + 1ms + (i % 200) * 100us, &on_fire);
    }
  }));
  (void)rt.post((*timers)->main_port(), evh::Message{});

  // [readme:timers]
  struct Ticker {
    evh::Timer timer;  // must outlive its arming
    int ticks = 0;
    evh::SendPort done;
  };
  auto ticker = std::make_shared<Ticker>();
  ticker->done = reply_to;
  auto ticking = rt.spawn(evh::make_handler([ticker](evh::Isolate& self, evh::Message&) {
    ticker->timer.user = ticker.get();
    (void)self.start_periodic(ticker->timer, 10ms,
                              [](evh::Isolate& self, evh::Timer& t, std::uint64_t skipped) {
                                auto* tk = static_cast<Ticker*>(t.user);
                                if (++tk->ticks == 3) {
                                  (void)self.cancel_timer(t);  // safe inside its own callback
                                  (void)tk->done.post(evh::Message::bytes("ticked 3 times"));
                                }
                                (void)skipped;  // whole periods missed if the isolate fell behind
                                                // (fixed schedule, no burst)
                              });
  }));
  (void)rt.post((*ticking)->main_port(), evh::Message{});
  // [readme-end]

  int ok = 0;
  for (int i = 0; i < 2; ++i) {
    auto m = replies->receive(std::chrono::seconds(30));
    if (!m.ok()) {
      std::fprintf(stderr, "timer_batch: %s\n", m.error().message().c_str());
      return 1;
    }
    const std::string text(m->text());
    std::printf("timer_batch: %s\n", text.c_str());
    if (text.find("OUT OF ORDER") == std::string::npos) ++ok;
  }
  return ok == 2 ? 0 : 1;
}

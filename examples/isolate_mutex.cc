// isolate_mutex: a lock shared by isolates that survives the death of its holder. An isolate
// killed in the middle of an update releases the lock as it exits; the next taker learns "owner
// died" with the lock held, rolls the half-done update back and carries on.
#include <evh/isolate_mutex.h>
#include <evh/runtime.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

int main() {
  evh::Runtime rt;
  auto replies = rt.open_receiver();
  evh::SendPort reply_to = *rt.send_port(replies->id());

  // [readme:mutex]
  struct Account {
    evh::IsolateMutex mu;
    long balance = 100;
    bool in_transfer = false;
  };
  auto account = std::make_shared<Account>();  // shared by several isolates

  auto worker = rt.spawn(evh::make_handler([account, reply_to](evh::Isolate& self, evh::Message&) {
    evh::Status st = account->mu.lock(self);
    const bool repaired = st.error() == evh::Errc::owner_died;
    if (repaired) {
      // The previous holder was killed mid-update: the lock is ours, the state may be half-done.
      if (account->in_transfer) account->in_transfer = false;  // roll back
      (void)account->mu.mark_consistent(self);
    } else if (!st) {
      return;  // not_recoverable, or this isolate is being killed (isolate_dead)
    }
    account->in_transfer = true;
    account->balance -= 10;
    account->in_transfer = false;
    (void)account->mu.unlock(self);
    (void)reply_to.post(evh::Message::bytes(repaired ? "repaired, then done" : "done"));
  }));
  // [readme-end]

  // A holder that starts an update and is killed before it finishes: it takes the lock, says so,
  // and works on until its kill asks it to unwind.
  auto doomed = rt.spawn(evh::make_handler([account, reply_to](evh::Isolate& self, evh::Message&) {
    if (!account->mu.lock(self)) return;
    account->in_transfer = true;
    (void)reply_to.post(evh::Message::bytes("holding"));
    while (!self.interrupt_requested()) {
      // a long computation with a safe point per iteration
    }
    (void)self.handle_interrupts();  // isolate_dead: unwind; the lock goes with the isolate
  }));

  auto expect = [&](const std::string& want) {
    auto m = replies->receive(std::chrono::seconds(30));
    const std::string got = m ? std::string(m->text()) : m.error().message();
    std::printf("isolate_mutex: %s\n", got.c_str());
    return got == want;
  };
  (void)rt.post((*doomed)->main_port(), evh::Message{});
  if (!expect("holding")) return 1;
  (*doomed)->kill(evh::KillPriority::immediate);
  (void)rt.post((*worker)->main_port(), evh::Message{});  // takes the lock after the dead holder
  if (!expect("repaired, then done")) return 1;
  std::printf("isolate_mutex: balance %ld, in transfer: %s\n", account->balance,
              account->in_transfer ? "yes" : "no");
  return account->balance == 90 && !account->in_transfer ? 0 : 1;
}

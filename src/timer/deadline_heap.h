// DeadlineHeap: at most one deadline per 64-bit key, earliest first — the event handler's
// timeout queue (one entry per port), its accept back-off queue (one entry per fd), and the
// thread pool's timer deadlines (one per isolate). Deadlines are nanosecond counts on whatever
// clock the owner keeps them on; the heap only compares them.
//
// A binary min-heap ordered by (deadline, sequence number), with each key's position kept in a
// hash map so that replacing or cancelling a key's deadline is O(log n) instead of Dart's O(P)
// rescan of a linked list. top() is O(1); set/erase/pop are O(log n); equal deadlines come out in
// the order they were set.
//
// Threads: none of its own; its owner serialises every call (the event handler's I/O thread,
// the pool's mutex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

namespace evh::detail {

class DeadlineHeap {
 public:
  struct Entry {
    std::int64_t deadline = 0;
    std::uint64_t seq = 0;
    std::uint64_t key = 0;
    std::uint32_t tag = 0;  // the caller's, carried along (the pool's "spin before" flag)
  };

  bool empty() const noexcept { return heap_.empty(); }
  std::size_t size() const noexcept { return heap_.size(); }
  // Precondition: !empty().
  const Entry& top() const noexcept { return heap_.front(); }

  // Sets `key`'s deadline, replacing an earlier one. Postcondition: contains(key).
  void set(std::uint64_t key, std::int64_t deadline, std::uint32_t tag = 0) {
    auto [it, inserted] = pos_.try_emplace(key, heap_.size());
    if (inserted) {
      heap_.push_back(Entry{deadline, next_seq_++, key, tag});
      sift_up(heap_.size() - 1);
      return;
    }
    Entry& e = heap_[it->second];
    const bool earlier = deadline < e.deadline;
    e.deadline = deadline;
    e.seq = next_seq_++;
    e.tag = tag;
    if (earlier) {
      sift_up(it->second);
    } else {
      sift_down(it->second);
    }
  }

  // Removes `key`'s deadline; false when it had none.
  bool erase(std::uint64_t key) noexcept {
    auto it = pos_.find(key);
    if (it == pos_.end()) return false;
    remove_at(it->second);
    return true;
  }

  bool contains(std::uint64_t key) const noexcept { return pos_.count(key) != 0; }

  // The earliest deadline later than `now` — the first one not yet due — or `none` when every
  // deadline is due (or there is none). It looks only at the due entries and their children;
  // past 16 due entries it stops and returns `now` ("another is due at once"), so its cost stays
  // bounded whatever the heap holds.
  std::int64_t earliest_after(std::int64_t now, std::int64_t none) const noexcept {
    constexpr std::size_t kMaxDue = 16;
    if (heap_.empty()) return none;
    if (heap_.front().deadline > now) return heap_.front().deadline;
    std::int64_t best = none;
    std::size_t stack[kMaxDue + 2];  // due entries whose children are still to look at
    std::size_t depth = 0;
    std::size_t due = 0;
    stack[depth++] = 0;
    while (depth > 0) {
      const std::size_t i = stack[--depth];
      if (++due > kMaxDue) return now;  // each pop pushes at most 2: depth ≤ kMaxDue + 1
      for (std::size_t c = 2 * i + 1; c <= 2 * i + 2 && c < heap_.size(); ++c) {
        if (heap_[c].deadline > now) {
          if (heap_[c].deadline < best) best = heap_[c].deadline;
        } else {
          stack[depth++] = c;  // a due child: its own children may be the earliest after now
        }
      }
    }
    return best;
  }

  // Removes and returns the earliest entry. Precondition: !empty().
  Entry pop() noexcept {
    Entry e = heap_.front();
    remove_at(0);
    return e;
  }

 private:
  static bool before(const Entry& a, const Entry& b) noexcept {
    return a.deadline < b.deadline || (a.deadline == b.deadline && a.seq < b.seq);
  }
  void place(std::size_t i, Entry e) noexcept {
    pos_[e.key] = i;
    heap_[i] = e;
  }
  void sift_up(std::size_t i) noexcept {
    Entry e = heap_[i];
    while (i > 0) {
      const std::size_t parent = (i - 1) / 2;
      if (!before(e, heap_[parent])) break;
      place(i, heap_[parent]);
      i = parent;
    }
    place(i, e);
  }
  void sift_down(std::size_t i) noexcept {
    Entry e = heap_[i];
    const std::size_t n = heap_.size();
    for (;;) {
      std::size_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && before(heap_[child + 1], heap_[child])) ++child;
      if (!before(heap_[child], e)) break;
      place(i, heap_[child]);
      i = child;
    }
    place(i, e);
  }
  void remove_at(std::size_t i) noexcept {
    pos_.erase(heap_[i].key);
    const Entry last = heap_.back();
    heap_.pop_back();
    if (i == heap_.size()) return;
    heap_[i] = last;
    pos_[last.key] = i;
    if (i > 0 && before(last, heap_[(i - 1) / 2])) {
      sift_up(i);
    } else {
      sift_down(i);
    }
  }

  std::vector<Entry> heap_;
  std::unordered_map<std::uint64_t, std::size_t> pos_;
  std::uint64_t next_seq_ = 0;
};

}  // namespace evh::detail

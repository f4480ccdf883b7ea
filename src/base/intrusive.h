// Boost.Intrusive over links that public types hold as plain pointers.
//
// evh's internal intrusive lists are Boost.Intrusive containers. Where the node is an internal
// type it carries an ordinary Boost hook. Where the node is a public type — an IsolateResource,
// an IsolateMutex, a Task queued on a runner — the public header may hold no Boost type, so the
// type holds a plain link and these node traits let a Boost container run through it:
//   - LinkNodeTraits<L>: a doubly-linked node `struct L { L* prev; L* next; }`
//     (boost::intrusive::list with member_value_traits);
//   - PointerSlotNodeTraits<T, &T::member>: a singly-linked node that is a `T* member` of T
//     itself (Task::runner_link): the node is the pointer slot, and the next node is the slot of
//     the task it points to (boost::intrusive::slist with PointerSlotHeader as its header).
// The timer wheel's chains and the public Timer node stay hand-written (timer/timer_wheel.h
// says why).
//
// Threads: none; the containers are guarded by their owners.
#pragma once

#include <boost/intrusive/parent_from_member.hpp>

namespace evh::detail {

template <class L>
struct LinkNodeTraits {
  using node = L;
  using node_ptr = L*;
  using const_node_ptr = const L*;
  static node_ptr get_next(const_node_ptr n) noexcept { return n->next; }
  static void set_next(node_ptr n, node_ptr next) noexcept { n->next = next; }
  static node_ptr get_previous(const_node_ptr n) noexcept { return n->prev; }
  static void set_previous(node_ptr n, node_ptr prev) noexcept { n->prev = prev; }
};

template <class T, T* T::*Member>
struct PointerSlotNodeTraits {
  using node = T*;
  using node_ptr = T**;
  using const_node_ptr = T* const*;
  static node_ptr get_next(const_node_ptr n) noexcept {
    return *n != nullptr ? &((*n)->*Member) : nullptr;
  }
  static void set_next(node_ptr n, node_ptr next) noexcept {
    *n = next != nullptr ? boost::intrusive::get_parent_from_member<T>(next, Member) : nullptr;
  }
};

// The header of a slist over PointerSlotNodeTraits: one pointer slot, the list's head.
template <class T>
struct PointerSlotHeader {
  T* slot = nullptr;
  T** get_node() noexcept { return &slot; }
  T* const* get_node() const noexcept { return &slot; }
};

}  // namespace evh::detail

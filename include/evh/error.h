// evh/error.h — error codes and the small Result type every fallible evh call returns.
//
// evh never throws on a hot path or across the C API. A call that can fail returns
// `Result<T>` (a value or a `std::error_code`) or `Status` (= `Result<void>`). Codes are
// either `evh::Errc` (category "evh") or an errno in `std::generic_category()` when the kernel
// said no. Set-up calls (constructing a `Runtime`) may throw `std::system_error`.
//
// Threads: everything here is a value type; no shared state.
#pragma once

#include <evh/export.h>

#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

namespace evh {

enum class Errc : int {
  ok = 0,
  port_closed = 1,       // the port existed but has been closed
  unknown_port = 2,      // no port with that id exists in this runtime (or the id is 0)
  shutting_down = 3,     // the runtime is shutting down or has shut down
  invalid_argument = 4,  // an argument is out of its documented range
  timed_out = 5,         // a timed wait ended before the condition held
  isolate_dead = 6,      // the isolate has been destroyed
  wrong_thread = 7,      // an isolate-only call was made from outside the isolate's turn
  // IsolateMutex (evh/isolate_mutex.h):
  owner_died = 8,       // acquired, but its previous holder died holding it: repair, then
                        // mark_consistent() (like a robust futex's EOWNERDEAD)
  not_recoverable = 9,  // a holder that got owner_died unlocked without mark_consistent()
  not_owner = 10,       // unlock or mark_consistent by an isolate that does not hold the lock
  would_deadlock = 11,  // the isolate already holds this (non-recursive) lock
  busy = 12,            // try_lock: another isolate holds it
};

EVH_API const std::error_category& error_category() noexcept;
inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

// A value or an error. Deliberately tiny: g++ 12 in C++20 mode has no std::expected.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)), ok_(true) {}             // NOLINT: implicit by design
  Result(std::error_code ec) : error_(ec), ok_(false) { assert(ec); }  // NOLINT
  Result(Errc e) : Result(make_error_code(e)) {}                       // NOLINT

  Result(Result&& other) noexcept(std::is_nothrow_move_constructible_v<T>) : ok_(other.ok_) {
    if (ok_)
      new (&value_) T(std::move(other.value_));
    else
      error_ = other.error_;
  }
  Result& operator=(Result&&) = delete;
  Result(const Result&) = delete;
  ~Result() {
    if (ok_) value_.~T();
  }

  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  std::error_code error() const noexcept { return ok_ ? std::error_code{} : error_; }

  // Reading the value of an error is a programming error: it aborts with the error's message.
  T& value() & {
    check();
    return value_;
  }
  const T& value() const& {
    check();
    return value_;
  }
  T&& value() && {
    check();
    return std::move(value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void check() const {
    if (!ok_) {
      std::fprintf(stderr, "evh: Result::value() on an error: %s\n", error_.message().c_str());
      std::abort();
    }
  }

  union {
    T value_;
    std::error_code error_;
  };
  bool ok_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(std::error_code ec) : error_(ec) {}      // NOLINT
  Result(Errc e) : error_(make_error_code(e)) {}  // NOLINT

  bool ok() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return ok(); }
  std::error_code error() const noexcept { return error_; }

 private:
  std::error_code error_;
};

using Status = Result<void>;

}  // namespace evh

template <>
struct std::is_error_code_enum<evh::Errc> : std::true_type {};

// How the C API reads an options struct: each starts with `size`, the struct's size in the
// caller's evh.h (evh.h, "options structs"). A caller built against an older header passes a
// smaller struct: its fields are read and the rest keep the defaults. One built against a newer
// header passes a bigger one: accepted only when every byte this library does not know is zero,
// so that a field set for a newer evh is refused (EVH_EOPTIONS) rather than silently ignored.
#pragma once

#include <evh/evh.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <type_traits>

namespace evh::capi {

// The end of each struct's first layout (evh 0.2): the smallest `size` a caller may pass. These
// stay as they are when fields are appended.
template <class T>
inline constexpr std::size_t kFirstLayoutEnd = 0;
template <>
inline constexpr std::size_t kFirstLayoutEnd<evh_runtime_options> = offsetof(evh_runtime_options,
                                                                             on_uncaught_user) +
                                                                    sizeof(void*);
template <>
inline constexpr std::size_t kFirstLayoutEnd<evh_isolate_options> =
    offsetof(evh_isolate_options, on_mailbox_high_water) + sizeof(evh_mailbox_high_water_fn);
template <>
inline constexpr std::size_t kFirstLayoutEnd<evh_fd_options> = offsetof(evh_fd_options, flags) +
                                                               sizeof(unsigned);
template <>
inline constexpr std::size_t kFirstLayoutEnd<evh_runner_callbacks> = offsetof(evh_runner_callbacks,
                                                                              user) +
                                                                     sizeof(void*);
template <>
inline constexpr std::size_t kFirstLayoutEnd<evh_process_options> = offsetof(evh_process_options,
                                                                             error_capacity) +
                                                                    sizeof(size_t);

// A size no options struct will reach: a bigger one is garbage (an uninitialised struct), not a
// newer header, and is refused without reading that far.
inline constexpr std::size_t kMaxOptionsSize = 4096;

// Copies `*in` over `out`, which holds the defaults; a null `in` leaves them. EVH_OK or
// EVH_EOPTIONS.
template <class T>
int read_options(const T* in, T& out) noexcept {
  static_assert(kFirstLayoutEnd<T> != 0, "an options struct without a first layout");
  if (in == nullptr) return EVH_OK;
  const std::size_t n = in->size;
  if (n < kFirstLayoutEnd<T> || n > kMaxOptionsSize) return EVH_EOPTIONS;
  const auto* bytes = reinterpret_cast<const unsigned char*>(in);
  if (n > sizeof(T) &&
      std::any_of(bytes + sizeof(T), bytes + n, [](unsigned char b) { return b != 0; })) {
    return EVH_EOPTIONS;
  }
  std::memcpy(static_cast<void*>(&out), in, std::min(n, sizeof(T)));
  out.size = sizeof(T);
  return EVH_OK;
}

// Output structs: the library writes as many bytes as the caller's struct has (its `sizeof`,
// passed by evh.h's inline wrapper), so a caller built against an older, smaller struct is never
// written past its end; one built against a newer, bigger struct gets zeros in the fields this
// library does not know.
// The end of each output struct's first layout (evh 0.2): the smallest size a caller may pass.
template <class T>
inline constexpr std::size_t kOutFirstLayoutEnd = 0;
#define EVH_CAPI_FIRST_LAYOUT_ENDS_AT(T, last) \
  template <>                                  \
  inline constexpr std::size_t kOutFirstLayoutEnd<T> = offsetof(T, last) + sizeof(T::last)
EVH_CAPI_FIRST_LAYOUT_ENDS_AT(evh_runtime_stats, mailbox_peak);
EVH_CAPI_FIRST_LAYOUT_ENDS_AT(evh_isolate_stats, mailbox_peak);
EVH_CAPI_FIRST_LAYOUT_ENDS_AT(evh_isolate_exit, reason);
EVH_CAPI_FIRST_LAYOUT_ENDS_AT(evh_timer_stats, late_max_ns);
EVH_CAPI_FIRST_LAYOUT_ENDS_AT(evh_io_event, deadline_ns);
EVH_CAPI_FIRST_LAYOUT_ENDS_AT(evh_process_event, size);
EVH_CAPI_FIRST_LAYOUT_ENDS_AT(evh_signal_event, count);
#undef EVH_CAPI_FIRST_LAYOUT_ENDS_AT

// Fills a whole struct of ours with `fill(T*)` (an EVH_* code) and copies the caller's share.
template <class T, class Fill>
int write_out(T* out, std::size_t out_size, Fill&& fill) noexcept {
  static_assert(kOutFirstLayoutEnd<T> != 0, "an output struct without a first layout");
  if (out == nullptr || out_size < kOutFirstLayoutEnd<T> || out_size > kMaxOptionsSize) {
    return EVH_EINVAL;
  }
  T full{};
  const int e = fill(&full);
  if (e != EVH_OK) return e;
  std::memset(static_cast<void*>(out), 0, out_size);
  std::memcpy(static_cast<void*>(out), &full, std::min(out_size, sizeof(T)));
  return EVH_OK;
}

// The same with `fill(from, T*)`: every `_size` entry point's whole body.
template <class T, class From>
int write_out(T* out, std::size_t out_size, int (*fill)(From, T*),
              std::type_identity_t<From> from) noexcept {
  return write_out(out, out_size, [&](T* full) { return fill(from, full); });
}

}  // namespace evh::capi

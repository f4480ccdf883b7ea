// The C API's messages: posting, reading, decoding what evh posts, and receivers.
#include <evh/event_handler.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <span>

#include "capi/handles.h"
#include "capi/options.h"

namespace evh::capi {
namespace {

// Post flags as a priority; false for flags evh does not know.
bool priority_of(unsigned flags, Priority& out) noexcept {
  if ((flags & ~static_cast<unsigned>(EVH_POST_OOB)) != 0) return false;
  out = (flags & EVH_POST_OOB) != 0 ? Priority::oob : Priority::normal;
  return true;
}

int post(evh_runtime* rt, evh_port_id port, Message message, unsigned flags) noexcept {
  Priority priority = Priority::normal;
  if (!valid(rt) || !priority_of(flags, priority)) return EVH_EINVAL;  // `message` released here
  return to_c(rt->rt->post(port_id(port), std::move(message), priority));
}

// The fills behind the `_size` entry points (write_out).
int fill_isolate_exit(const evh_message* message, evh_isolate_exit* out) {
  if (message == nullptr) return EVH_EINVAL;
  const auto exit = decode_isolate_exit(*from_c(message));
  if (!exit) return EVH_EINVAL;
  *out = evh_isolate_exit{static_cast<evh_port_id>(exit->isolate), static_cast<int>(exit->reason)};
  return EVH_OK;
}

int fill_io_event(const evh_message* message, evh_io_event* out) {
  if (message == nullptr) return EVH_EINVAL;
  const auto ev = decode_io_event(*from_c(message));
  if (!ev) return EVH_EINVAL;
  *out = evh_io_event{static_cast<int>(ev->notice), ev->fd, static_cast<uint32_t>(ev->events),
                      ev->error > 0 ? -ev->error : ev->error, ev->deadline_ns};
  return EVH_OK;
}

}  // namespace
}  // namespace evh::capi

using namespace evh::capi;

extern "C" {

int evh_post(evh_runtime* rt, evh_port_id port, const void* data, size_t size, unsigned flags) {
  // Message sizes are 32-bit (evh::Message::kMaxBytes).
  if ((data == nullptr && size != 0) || size > evh::Message::kMaxBytes) return EVH_EINVAL;
  return guarded([&] {
    return post(rt, port, evh::Message::bytes(std::span(static_cast<const std::byte*>(data), size)),
                flags);
  });
}

// An array's element: its layout is part of the ABI for good (evh.h says why it has no size).
static_assert(sizeof(evh_bytes) == sizeof(void*) + sizeof(size_t) &&
                  offsetof(evh_bytes, size) == sizeof(void*),
              "evh_bytes never changes: older callers' arrays would be misread");

int evh_post_batch(evh_runtime* rt, evh_port_id port, const evh_bytes* items, size_t count,
                   unsigned flags) {
  evh::Priority priority = evh::Priority::normal;
  if (!valid(rt) || !priority_of(flags, priority) || (items == nullptr && count != 0)) {
    return EVH_EINVAL;
  }
  for (size_t i = 0; i < count; ++i) {
    if ((items[i].data == nullptr && items[i].size != 0) || items[i].size > UINT32_MAX) {
      return EVH_EINVAL;
    }
  }
  return guarded([&] {
    // Chunks of 64 on the stack: no allocation for the batch itself.
    constexpr size_t kChunk = 64;
    evh::Message chunk[kChunk];
    for (size_t at = 0; at < count; at += kChunk) {
      const size_t n = std::min(kChunk, count - at);
      for (size_t i = 0; i < n; ++i) {
        const evh_bytes& b = items[at + i];
        chunk[i] = evh::Message::bytes(std::span(static_cast<const std::byte*>(b.data), b.size));
      }
      const int rc = to_c(rt->rt->post_batch(port_id(port), std::span(chunk, n), priority));
      if (rc != EVH_OK) return rc;
    }
    return EVH_OK;
  });
}

int evh_post_packed(evh_runtime* rt, evh_port_id port, const void* data, size_t each, size_t count,
                    unsigned flags) {
  evh::Priority priority = evh::Priority::normal;
  if (!valid(rt) || !priority_of(flags, priority) || each == 0 ||
      each > evh::Message::kInlineBytes || (data == nullptr && count != 0) ||
      count > SIZE_MAX / each) {
    return EVH_EINVAL;
  }
  return to_c(rt->rt->post_bytes_batch(
      port_id(port), std::span(static_cast<const std::byte*>(data), each * count), each, priority));
}

int evh_post_native(evh_runtime* rt, evh_port_id port, void* object, evh_finalizer finalizer,
                    unsigned flags) {
  // The message owns the object from here: every error path releases it, exactly once.
  return post(rt, port, evh::Message::native(object, finalizer), flags);
}

int evh_post_message(evh_runtime* rt, evh_port_id port, evh_message* message, unsigned flags) {
  if (message == nullptr) return EVH_EINVAL;
  evh::Message moved = std::move(*from_c(message));  // leaves `message` empty
  return post(rt, port, std::move(moved), flags);
}

int evh_message_kind(const evh_message* message) {
  if (message == nullptr) return EVH_MESSAGE_EMPTY;
  switch (from_c(message)->kind()) {
    case evh::Message::Kind::inline_bytes:
    case evh::Message::Kind::heap_bytes:
      return EVH_MESSAGE_BYTES;
    case evh::Message::Kind::native:
      return EVH_MESSAGE_NATIVE;
    case evh::Message::Kind::empty:
      break;
  }
  return EVH_MESSAGE_EMPTY;
}

evh_port_id evh_message_port(const evh_message* message) {
  return message != nullptr ? static_cast<evh_port_id>(from_c(message)->port()) : 0;
}

const void* evh_message_data(const evh_message* message, size_t* size) {
  std::span<const std::byte> d;
  if (message != nullptr) d = from_c(message)->data();
  if (size != nullptr) *size = d.size();
  return d.empty() ? nullptr : d.data();
}

void* evh_message_native(const evh_message* message) {
  return message != nullptr ? from_c(message)->native_object() : nullptr;
}

void* evh_message_take_native(evh_message* message) {
  return message != nullptr ? from_c(message)->take_native() : nullptr;
}

void evh_message_destroy(evh_message* message) {
  delete from_c(message);
}

int evh_message_isolate_exit_size(const evh_message* message, evh_isolate_exit* out,
                                  size_t out_size) {
  return write_out(out, out_size, &fill_isolate_exit, message);
}

int evh_message_isolate_error(const evh_message* message, evh_port_id* isolate, char* what,
                              size_t capacity) {
  if (message == nullptr || (what == nullptr && capacity != 0)) return EVH_EINVAL;
  return guarded([&] {
    const auto error = evh::decode_isolate_error(*from_c(message));
    if (!error) return EVH_EINVAL;
    if (isolate != nullptr) *isolate = static_cast<evh_port_id>(error->isolate);
    if (capacity != 0) {
      const size_t n = std::min(error->what.size(), capacity - 1);
      std::memcpy(what, error->what.data(), n);
      what[n] = '\0';
    }
    return static_cast<int>(std::min<size_t>(error->what.size(), INT32_MAX));
  });
}

int evh_message_io_event_size(const evh_message* message, evh_io_event* out, size_t out_size) {
  return write_out(out, out_size, &fill_io_event, message);
}

// ---- receivers ----

int evh_receiver_open(evh_runtime* rt, evh_receiver** out) {
  if (out == nullptr) return EVH_EINVAL;
  *out = nullptr;
  if (!valid(rt)) return EVH_EINVAL;
  return guarded([&] {
    auto opened = rt->rt->open_receiver();
    if (!opened.ok()) return to_c(opened.error());
    auto r = std::make_unique<evh_receiver>();
    r->runtime = rt;
    r->receiver = std::move(*opened);
    r->id = static_cast<evh_port_id>(r->receiver.id());
    rt->handles.fetch_add(1, std::memory_order_relaxed);
    *out = r.release();
    return EVH_OK;
  });
}

evh_port_id evh_receiver_port(const evh_receiver* receiver) {
  return valid(receiver) ? receiver->id : 0;
}

int evh_receiver_receive(evh_receiver* receiver, int64_t timeout_ns, evh_message** out) {
  if (out == nullptr) return EVH_EINVAL;
  *out = nullptr;
  std::chrono::nanoseconds timeout{};
  if (!valid(receiver) || !wait_timeout(timeout_ns, timeout)) return EVH_EINVAL;
  return guarded([&] {
    auto m = receiver->receiver.receive(timeout);
    if (!m.ok()) return to_c(m.error());
    *out = to_c(new evh::Message(std::move(*m)));
    return EVH_OK;
  });
}

int evh_receiver_try_receive(evh_receiver* receiver, evh_message** out) {
  if (out == nullptr) return EVH_EINVAL;
  *out = nullptr;
  if (!valid(receiver)) return EVH_EINVAL;
  return guarded([&] {
    auto m = receiver->receiver.try_receive();
    if (!m.ok()) return to_c(m.error());
    *out = to_c(new evh::Message(std::move(*m)));
    return EVH_OK;
  });
}

int evh_receiver_close(evh_receiver* receiver) {
  if (!valid(receiver)) return EVH_EINVAL;
  receiver->receiver.close();
  return EVH_OK;
}

int evh_receiver_destroy(evh_receiver* receiver) {
  if (!valid(receiver)) return EVH_EINVAL;
  return release_counted(receiver);  // closes it; queued messages are released here
}

}  // extern "C"

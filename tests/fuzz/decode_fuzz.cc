// Fuzz target: every message decoder of the public API, fed arbitrary bytes. A decoder must
// refuse what it did not make (nullopt), never read past the payload, and never crash; what it
// accepts must round-trip through its own fields.
#include <evh/event_handler.h>
#include <evh/isolate.h>
#include <evh/process.h>
#include <evh/signal.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto bytes = std::as_bytes(std::span<const std::uint8_t>(data, size));
  const evh::Message m = evh::Message::bytes(bytes);
  if (m.data().size() != size) std::abort();

  if (auto io = evh::decode_io_event(m)) {
    // Accepted only with its exact size and its magic.
    if (size != sizeof(evh::IoEvent) || io->magic != evh::IoEvent::kMagic) std::abort();
  }
  if (auto pe = evh::decode_process_event(m)) {
    // The text view, when there is one, lies inside the payload.
    const std::string_view text = pe->text();
    if (!text.empty()) {
      const char* lo = reinterpret_cast<const char*>(m.data().data());
      const char* hi = lo + m.data().size();
      if (text.data() < lo || text.data() + text.size() > hi) std::abort();
    }
  }
  (void)evh::decode_signal_event(m);
  (void)evh::decode_isolate_exit(m);
  try {
    (void)evh::decode_isolate_error(m);
  } catch (const std::bad_alloc&) {
    // decode_isolate_error copies the text; running out of memory is its only allowed failure.
  }
  return 0;
}

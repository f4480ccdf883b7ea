// Port ids: random-looking 64-bit values, never 0, never repeated within one generator's life.
//
// An id is a keyed permutation (an 8-round Feistel network over two 32-bit halves, with a key
// drawn from the kernel's random source per runtime) of a counter. A permutation of distinct
// counters gives distinct ids, so no id repeats; the key makes one id say nothing useful about
// the next. It is not a cryptographic cipher: ids are capabilities against accidents and
// guessing, not against an attacker who can observe many ids.
#pragma once

#include <evh/message.h>

#include <array>
#include <atomic>
#include <cstdint>

namespace evh::detail {

class PortIdGenerator {
 public:
  PortIdGenerator();  // draws the key; throws std::system_error if no entropy is available
  PortId next() noexcept;
  // The permutation itself, exposed for tests.
  std::uint64_t permute(std::uint64_t counter) const noexcept;

 private:
  std::array<std::uint32_t, 8> keys_{};
  std::atomic<std::uint64_t> counter_{1};
};

}  // namespace evh::detail

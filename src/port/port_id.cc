#include "port/port_id.h"

#include <sys/random.h>

#include <cerrno>
#include <system_error>

namespace evh::detail {
namespace {

std::uint32_t round_function(std::uint32_t half, std::uint32_t key) noexcept {
  std::uint64_t x = (static_cast<std::uint64_t>(half) << 32 | key) * 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return static_cast<std::uint32_t>(x);
}

}  // namespace

PortIdGenerator::PortIdGenerator() {
  std::size_t got = 0;
  auto* bytes = reinterpret_cast<unsigned char*>(keys_.data());
  while (got < sizeof keys_) {
    ssize_t n = getrandom(bytes + got, sizeof keys_ - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "evh: getrandom for port ids");
    }
    got += static_cast<std::size_t>(n);
  }
}

std::uint64_t PortIdGenerator::permute(std::uint64_t counter) const noexcept {
  auto left = static_cast<std::uint32_t>(counter >> 32);
  auto right = static_cast<std::uint32_t>(counter);
  for (std::uint32_t k : keys_) {
    std::uint32_t next_right = left ^ round_function(right, k);
    left = right;
    right = next_right;
  }
  return static_cast<std::uint64_t>(left) << 32 | right;
}

PortId PortIdGenerator::next() noexcept {
  for (;;) {
    std::uint64_t id = permute(counter_.fetch_add(1, std::memory_order_relaxed));
    if (id != 0) return static_cast<PortId>(id);  // exactly one counter maps to 0: skip it
  }
}

}  // namespace evh::detail

// lua/src/heap.h — the memory of one Lua state (its lua_Alloc).
//
// A state's small blocks (up to 512 bytes: strings, tables, closures, userdata such as timers)
// come from chunks the state owns, by size class, with a free list per class; larger ones from
// malloc. Lua tells the allocator the size of every block it frees or resizes, so blocks carry
// no header. Why: Lua states run on the pool's worker threads, where glibc's per-thread arenas
// grow one page at a time with an mprotect each; arming 100,000 timers from Lua spent most of its
// time there. A state's heap is used by one thread at a time (its isolate's), so it takes no lock.
// Everything goes back at once when the state is closed.
//
// Sanitizer builds use plain realloc/free, so that ASan sees every Lua block on its own.
#pragma once

#include <cstddef>

namespace evh_lua {

class Heap {
 public:
  Heap() = default;
  ~Heap();
  Heap(const Heap&) = delete;
  Heap& operator=(const Heap&) = delete;

  // The lua_Alloc: `ud` is the Heap.
  static void* alloc(void* ud, void* ptr, std::size_t osize, std::size_t nsize) noexcept;

 private:
  static constexpr std::size_t kGranule = 16;
  static constexpr std::size_t kMaxSmall = 512;
  static constexpr std::size_t kClasses = kMaxSmall / kGranule;
  static constexpr std::size_t kFirstChunk = 32 * 1024;
  static constexpr std::size_t kMaxChunk = 1024 * 1024;

  struct FreeBlock {
    FreeBlock* next;
  };
  struct Chunk {
    Chunk* next;
    std::size_t bytes;
  };
  // Chunks from this size on are mapped (and populated) directly.
  static constexpr std::size_t kMappedChunk = 128 * 1024;

  static std::size_t class_of(std::size_t size) noexcept { return (size - 1) / kGranule; }
  void* take(std::size_t size) noexcept;
  void give(void* block, std::size_t size) noexcept;
  bool grow(std::size_t need) noexcept;

  FreeBlock* free_[kClasses] = {};
  char* bump_ = nullptr;
  char* bump_end_ = nullptr;
  Chunk* chunks_ = nullptr;
  std::size_t next_chunk_ = kFirstChunk;
};

}  // namespace evh_lua

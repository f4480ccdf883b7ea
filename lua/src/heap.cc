// lua/src/heap.cc — the memory of one Lua state (heap.h).
#include "heap.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

namespace evh_lua {

Heap::~Heap() {
  while (chunks_ != nullptr) {
    Chunk* next = chunks_->next;
    if (chunks_->bytes >= kMappedChunk) {
      ::munmap(chunks_, chunks_->bytes);
    } else {
      std::free(chunks_);
    }
    chunks_ = next;
  }
}

bool Heap::grow(std::size_t need) noexcept {
  // The unused tail of the current chunk goes to the free lists, in the largest classes it fills.
  while (bump_end_ - bump_ >= static_cast<std::ptrdiff_t>(kGranule)) {
    std::size_t left = static_cast<std::size_t>(bump_end_ - bump_);
    const std::size_t size = left > kMaxSmall ? kMaxSmall : left - left % kGranule;
    give(bump_, size);
    bump_ += size;
  }
  std::size_t bytes = next_chunk_;
  while (bytes < need + sizeof(Chunk)) bytes *= 2;
  Chunk* chunk = nullptr;
  if (bytes >= kMappedChunk) {
    // Faulted in by one call: on a VM a page fault taken one by one costs microseconds, and a
    // state that needs this much will touch it all.
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p != MAP_FAILED) chunk = static_cast<Chunk*>(p);
  } else {
    chunk = static_cast<Chunk*>(std::malloc(bytes));
  }
  if (chunk == nullptr) return false;
  chunk->next = chunks_;
  chunk->bytes = bytes;
  chunks_ = chunk;
  // A header rounded up to the granule keeps every block 16-byte aligned (malloc's alignment).
  bump_ = reinterpret_cast<char*>(chunk) + kGranule;
  bump_end_ = reinterpret_cast<char*>(chunk) + bytes;
  if (next_chunk_ < kMaxChunk) next_chunk_ *= 2;
  return true;
}

void* Heap::take(std::size_t size) noexcept {
  const std::size_t c = class_of(size);
  if (FreeBlock* b = free_[c]; b != nullptr) {
    free_[c] = b->next;
    return b;
  }
  const std::size_t rounded = (c + 1) * kGranule;
  if (bump_end_ - bump_ < static_cast<std::ptrdiff_t>(rounded) && !grow(rounded)) return nullptr;
  void* p = bump_;
  bump_ += rounded;
  return p;
}

void Heap::give(void* block, std::size_t size) noexcept {
  const std::size_t c = class_of(size);
  auto* b = static_cast<FreeBlock*>(block);
  b->next = free_[c];
  free_[c] = b;
}

void* Heap::alloc(void* ud, void* ptr, std::size_t osize, std::size_t nsize) noexcept {
#if defined(EVH_SANITIZER_BUILD)
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    std::free(ptr);
    return nullptr;
  }
  return std::realloc(ptr, nsize);
#else
  auto* heap = static_cast<Heap*>(ud);
  // A new block: `osize` is then the kind of object, not a size.
  if (ptr == nullptr) osize = 0;
  const bool old_small = ptr != nullptr && osize <= kMaxSmall;
  if (nsize == 0) {
    if (old_small) {
      heap->give(ptr, osize);
    } else {
      std::free(ptr);
    }
    return nullptr;
  }
  if (nsize <= kMaxSmall) {
    // Within its class, or smaller: the block stays (a freed block may sit in a class below its
    // real size: only space is lost). Lua assumes a shrink never fails.
    if (old_small && class_of(nsize) <= class_of(osize)) return ptr;
    void* p = heap->take(nsize);
    if (p == nullptr) {
      // A large block shrinking into the small range must move, and Lua cannot take a failure
      // there: out of memory, as when Lua itself cannot allocate its error message.
      if (ptr != nullptr && nsize <= osize) std::abort();
      return nullptr;
    }
    if (ptr != nullptr) {
      std::memcpy(p, ptr, osize < nsize ? osize : nsize);
      if (old_small) {
        heap->give(ptr, osize);
      } else {
        std::free(ptr);
      }
    }
    return p;
  }
  if (ptr == nullptr || !old_small) return std::realloc(ptr, nsize);
  // Small to large.
  void* p = std::malloc(nsize);
  if (p == nullptr) return nullptr;
  std::memcpy(p, ptr, osize);
  heap->give(ptr, osize);
  return p;
#endif
}

}  // namespace evh_lua

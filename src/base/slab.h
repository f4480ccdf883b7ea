// Slab: fixed-size, aligned blocks carved from 64 KiB chunks, with a free list.
//
// Isolates (192 bytes, 64-byte aligned) and port records are allocated here rather than with
// operator new: an aligned malloc of 256 bytes costs glibc a header plus alignment slack (about
// 100 bytes per idle isolate, measured), and a runtime may hold hundreds of thousands of idle
// isolates. Chunks are returned to the system when the slab (its runtime) is destroyed; every
// block must have been deallocated by then.
//
// Threads: allocate() and deallocate() from any thread; a mutex guards the free list (both are
// called once per spawn or free, never per message).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#include "base/alloc_fault.h"

namespace evh::detail {

template <std::size_t kSize, std::size_t kAlign>
class Slab {
  static_assert(kSize % kAlign == 0 && kSize >= sizeof(void*));

 public:
  Slab() = default;
  Slab(const Slab&) = delete;
  Slab& operator=(const Slab&) = delete;
  ~Slab() {
    for (void* c : chunks_) std::free(c);
  }

  // Throws std::bad_alloc when out of memory (also when the allocation-failure seam says so).
  void* allocate() {
    alloc_site();
    std::lock_guard lock(mu_);
    if (free_ != nullptr) {
      FreeBlock* b = free_;
      free_ = b->next;
      return b;
    }
    if (bump_ == end_) {
      void* chunk = std::aligned_alloc(kAlign, kChunkBytes);
      if (chunk == nullptr) throw std::bad_alloc();
      chunks_.push_back(chunk);
      bump_ = static_cast<char*>(chunk);
      end_ = bump_ + kChunkBytes / kSize * kSize;
    }
    void* p = bump_;
    bump_ += kSize;
    return p;
  }

  void deallocate(void* p) noexcept {
    std::lock_guard lock(mu_);
    auto* b = static_cast<FreeBlock*>(p);
    b->next = free_;
    free_ = b;
  }

 private:
  static constexpr std::size_t kChunkBytes = 64 * 1024;
  struct FreeBlock {
    FreeBlock* next;
  };

  std::mutex mu_;
  FreeBlock* free_ = nullptr;
  char* bump_ = nullptr;
  char* end_ = nullptr;
  std::vector<void*> chunks_;
};

}  // namespace evh::detail

// Thread-local, 64-byte aligned scratch memory that grows on demand (packing buffers).
#pragma once
#include <cstddef>
#include <cstdlib>
#include <new>

namespace dsmoe {

class ScratchBuffer {
 public:
  ~ScratchBuffer() { std::free(ptr_); }
  float* floats(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) & ~size_t(63);
    if (bytes > cap_) {
      std::free(ptr_);
      ptr_ = std::aligned_alloc(64, bytes);
      if (!ptr_) { cap_ = 0; throw std::bad_alloc(); }
      cap_ = bytes;
    }
    return static_cast<float*>(ptr_);
  }
 private:
  void* ptr_ = nullptr;
  size_t cap_ = 0;
};

}  // namespace dsmoe

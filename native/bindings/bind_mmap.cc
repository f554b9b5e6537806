// Memory-mapped files for token shards (src/data/shards.ts): mapFile maps a file read-only and hands it
// to JavaScript as an external ArrayBuffer, so a multi-gigabyte shard is paged in by the kernel as
// windows are read, never copied into the JavaScript heap. The ArrayBuffer's finalizer unmaps it.
// alignedBuffer gives page-aligned memory for writes that bypass the page cache (O_DIRECT: the shard
// writer of `dsmoe tokenize`, src/data/tokenize-shards.ts), which JavaScript cannot allocate itself.
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#ifdef _WIN32
#include <malloc.h>
#endif
#include <string>

#ifndef _WIN32
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "register.h"

namespace dsmoe::bind {
namespace {

#ifndef _WIN32
struct Mapping {
  void* addr;
  size_t size;
};

// mapFile({path, elementSize = 1, access = 'normal'}) -> ArrayBuffer over the file's bytes (read-only:
// PROT_READ, MAP_SHARED; writing to a view of it crashes the process, so views must only be read).
// access 'random' (madvise MADV_RANDOM: no read-around, so a random window brings in its own pages and
// not a megabyte around it) or 'sequential' (MADV_SEQUENTIAL) tells the kernel how the pages are read.
// Errors name the file: missing or unreadable, not a regular file, empty, or a size that is not a
// multiple of elementSize (a truncated or wrongly typed token file).
Napi::Value map_file(const Napi::CallbackInfo& info) {
  Args args(info, "mapFile");
  const std::string file = args.string("path");
  const int64_t el = args.integer_or("elementSize", 1, 1, 8);
  int advice = MADV_NORMAL;
  if (args.has("access")) {
    const std::string access = args.string("access");
    if (access == "random") advice = MADV_RANDOM;
    else if (access == "sequential") advice = MADV_SEQUENTIAL;
    else if (access != "normal")
      range_error(args.where("access") + " must be 'normal', 'random' or 'sequential', got '" + access + "'");
  }
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) throw std::runtime_error(file + ": no such file");
    throw std::runtime_error(file + ": cannot open (" + std::strerror(err) + ")");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error(file + ": cannot stat (" + std::strerror(err) + ")");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error(file + ": not a regular file");
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    throw std::runtime_error(file + ": the file is empty");
  }
  if (size % static_cast<uint64_t>(el) != 0) {
    ::close(fd);
    throw std::runtime_error(file + ": " + std::to_string(size) + " bytes is not a multiple of the element size " +
                             std::to_string(el) + " (truncated, or another token type)");
  }
  void* addr = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_SHARED, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file open
  if (addr == MAP_FAILED) throw std::runtime_error(file + ": mmap failed (" + std::strerror(err) + ")");
  if (advice != MADV_NORMAL) ::madvise(addr, static_cast<size_t>(size), advice);  // a hint: failure is harmless
  auto* m = new Mapping{addr, static_cast<size_t>(size)};
  return Napi::ArrayBuffer::New(
      info.Env(), addr, m->size,
      [](Napi::Env, void*, Mapping* mapping) {
        ::munmap(mapping->addr, mapping->size);
        delete mapping;
      },
      m);
}
#else
Napi::Value map_file(const Napi::CallbackInfo& info) {
  Args args(info, "mapFile");
  throw std::runtime_error("memory-mapped files are not supported on Windows yet");
}
#endif

// alignedBuffer({bytes, alignment = 4096}) -> a zeroed ArrayBuffer of `bytes` bytes whose start is a
// multiple of `alignment` (a power of two from 64 to 1 MiB), freed when the buffer is garbage-collected.
Napi::Value aligned_buffer(const Napi::CallbackInfo& info) {
  Args args(info, "alignedBuffer");
  const int64_t bytes = args.integer("bytes", 1, int64_t{1} << 40);
  const int64_t alignment = args.integer_or("alignment", 4096, 64, int64_t{1} << 20);
  if ((alignment & (alignment - 1)) != 0)
    range_error(args.where("alignment") + " must be a power of two, got " + std::to_string(alignment));
  const auto size = static_cast<size_t>((bytes + alignment - 1) / alignment * alignment);
#ifdef _WIN32
  void* p = _aligned_malloc(size, static_cast<size_t>(alignment));
  auto release = [](Napi::Env, void* q) { _aligned_free(q); };
#else
  void* p = std::aligned_alloc(static_cast<size_t>(alignment), size);
  auto release = [](Napi::Env, void* q) { std::free(q); };
#endif
  if (p == nullptr) throw std::runtime_error("alignedBuffer: out of memory for " + std::to_string(bytes) + " bytes");
  std::memset(p, 0, size);
  try {
    return Napi::ArrayBuffer::New(info.Env(), p, static_cast<size_t>(bytes), release);
  } catch (...) {  // e.g. a runtime that refuses external buffers
    release(info.Env(), p);
    throw;
  }
}

}  // namespace

void register_mmap(Napi::Env env, Napi::Object exports) {
  export_function(env, exports, "mapFile", map_file);
  export_function(env, exports, "alignedBuffer", aligned_buffer);
}

}  // namespace dsmoe::bind

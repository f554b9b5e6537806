// The kernel bindings' `device` argument ('cpu' by default, 'cuda', 'cuda:N') and the one helper that
// runs a binding's op on that device's backend (backend::get(device), DESIGN.md §2).
//
// The CPU backend's memory is host memory: its ops run on the JavaScript arrays themselves, no copy.
// On another device, Stage copies: every array the op reads or writes is uploaded into a Buffer of
// that backend, and the ones it writes are downloaded by finish(). Outputs are uploaded too, so the
// device op starts from what the CPU op would see: elements it does not write (a leading-dimension
// gap, beta = 0 over NaN) come back unchanged, and read-modify-write outputs (beta != 0, accumulate)
// need no flag. The same host array passed twice (rope in place, dg = pe, dlogits = logits) is staged
// once, as the CPU op would see it. Only the first `n` elements the op needs are copied, so the rest
// of a longer array is never touched.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "../backend/backend.h"
#include "args.h"

namespace dsmoe::bind {

// The checked `device` argument: parsed with the other arguments (a RangeError names a bad one);
// the backend is looked up when the op runs (an unusable device is an Error that says why).
inline backend::Device read_device(Args& args) {
  if (!args.has("device")) return {};
  const std::string text = args.string("device");
  try {
    return backend::parse_device(text);
  } catch (const std::invalid_argument& e) {
    range_error(args.where("device") + ": " + e.what());
  }
}

class Stage {
 public:
  explicit Stage(const backend::Device& device)
      : be(backend::get(device)), host_(device.kind == backend::DeviceKind::Cpu) {}
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

  backend::Backend& be;
  bool on_host() const { return host_; }

  // n elements the op reads (in) or writes (out); returns the pointer to give the op. Null stays null.
  template <typename T>
  const T* in(const T* host, int64_t n) {
    return static_cast<const T*>(stage(const_cast<T*>(host), n * static_cast<int64_t>(sizeof(T)), false));
  }
  template <typename T>
  T* out(T* host, int64_t n) {
    return static_cast<T*>(stage(host, n * static_cast<int64_t>(sizeof(T)), true));
  }
  const void* in_bytes(const void* host, int64_t bytes) { return stage(const_cast<void*>(host), bytes, false); }

  // Copies the outputs back to the host (waits for the op). Nothing to do on the CPU backend.
  void finish() {
    for (Entry& e : entries_)
      if (e.write && e.buf.bytes() > 0) be.download(e.host, e.buf.data(), e.buf.bytes());
  }

 private:
  struct Entry {
    void* host;
    backend::Buffer buf;
    bool write;
  };
  void* stage(void* host, int64_t bytes, bool write) {
    if (host_ || host == nullptr) return host;
    for (Entry& e : entries_)
      if (e.host == host) {
        if (e.buf.bytes() != bytes) throw std::logic_error("one array staged twice with different sizes");
        e.write = e.write || write;
        return e.buf.data();
      }
    entries_.push_back({host, backend::Buffer(be, bytes), write});
    if (bytes > 0) be.upload(entries_.back().buf.data(), host, bytes);
    return entries_.back().buf.data();
  }

  bool host_;
  std::vector<Entry> entries_;
};

}  // namespace dsmoe::bind

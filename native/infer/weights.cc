#include "weights.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <stdexcept>

#include "../core/bf16.h"
#include "../kernels/cpu/quant.h"

namespace dsmoe::infer {

Weights::Weights(const model::Config& c) : cfg_(c), layout_(model::make_layout(c)) {}

Weights::~Weights() {
  if (map_) munmap(map_, map_size_);
}

const float* Weights::as_f32(WeightRef r, int64_t n) {
  if (r.quantized()) throw std::out_of_range("a norm weight cannot be quantized (int8/q4)");
  if (r.dtype == DType::F32 && reinterpret_cast<uintptr_t>(r.data) % alignof(float) == 0) return r.f32();
  auto copy = std::make_unique<float[]>(static_cast<size_t>(n));
  if (r.dtype == DType::F32) std::memcpy(copy.get(), r.data, sizeof(float) * static_cast<size_t>(n));
  else for (int64_t i = 0; i < n; ++i) copy[static_cast<size_t>(i)] = bf16_to_f32(r.bf16()[i]);
  owned_.push_back(std::move(copy));
  return owned_.back().get();
}

template <typename Resolve>
void Weights::assign(Resolve resolve) {
  // Tensor indices follow make_layout's order; offsets identify them.
  std::map<int64_t, size_t> by_offset;
  for (size_t i = 0; i < layout_.tensors.size(); ++i) by_offset[layout_.tensors[i].offset] = i;
  auto ref = [&](int64_t offset) -> WeightRef {
    if (offset < 0) return {};
    return resolve(by_offset.at(offset));
  };
  const int64_t D = cfg_.d_model;
  embed = ref(layout_.embed);
  lm_head = ref(layout_.lm_head);
  final_norm = as_f32(ref(layout_.final_norm), D);
  for (const model::LayerOffsets& o : layout_.layers) {
    LayerWeights w;
    w.attn_norm = as_f32(ref(o.attn_norm), D);
    w.att_router_hidden = ref(o.att_router_hidden);  // layout order: a missing tensor is named in file order
    w.att_router = ref(o.att_router);
    w.q = ref(o.q); w.k = ref(o.k); w.v = ref(o.v); w.o = ref(o.o);
    w.mlp_norm = as_f32(ref(o.mlp_norm), D);
    w.mlp_router_hidden = ref(o.mlp_router_hidden);  // layout order: a missing tensor is named in file order
    w.mlp_router = ref(o.mlp_router);
    w.up = ref(o.up); w.down = ref(o.down);
    layers.push_back(w);
  }
}

std::shared_ptr<Weights> Weights::from_buffer(const model::Config& c, const void* data, DType dtype,
                                              backend::Backend& be, std::shared_ptr<const void> owner) {
  // Norm weights are read as fp32 in place when they are fp32 (training's live parameters); a bf16
  // buffer is converted on the host, so it must be host memory.
  if (dtype != DType::F32 && be.device().kind != backend::DeviceKind::Cpu)
    throw std::invalid_argument("bf16 weights in device memory are not supported yet (issue 14)");
  std::shared_ptr<Weights> w(new Weights(c));
  w->be_ = &be;
  w->owner_ = std::move(owner);
  const char* base = static_cast<const char*>(data);
  w->assign([&](size_t i) {
    return WeightRef{base + w->layout_.tensors[i].offset * dtype_bytes(dtype), dtype};
  });
  return w;
}

namespace {
std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}
}  // namespace

std::shared_ptr<Weights> Weights::from_file(const model::Config& c, const std::string& path,
                                            const std::vector<FileTensor>& tensors, int64_t data_offset,
                                            FileLoad load) {
  std::shared_ptr<Weights> w(new Weights(c));
  w->load_ = load;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    throw std::runtime_error("'" + path + "' is not a regular file");
  }
  const int64_t file_size = st.st_size;
  if (data_offset < 0 || data_offset > file_size) {
    close(fd);
    throw std::out_of_range("dataOffset " + std::to_string(data_offset) + " is outside the file (" +
                            std::to_string(file_size) + " bytes)");
  }
  if (file_size > 0) {
    if (load == FileLoad::Read) {
      // Read into anonymous memory on 2 MiB huge pages (THP, madvise mode), placed so that the data
      // section starts on a cache line: decode streams every weight once per token, and 4 KiB page
      // cache pages (TLB misses) or rows split across cache lines cost it 1.3-2× in bandwidth.
      const size_t huge = size_t(2) << 20, pad = static_cast<size_t>((64 - data_offset % 64) % 64);
      const size_t bytes = (pad + static_cast<size_t>(file_size) + huge - 1) / huge * huge + huge;
      void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) {
        close(fd);
        throw std::runtime_error("cannot allocate " + std::to_string(bytes >> 20) + " MiB for '" + path +
                                 "': " + std::strerror(errno));
      }
      w->map_ = p;
      w->map_size_ = bytes;
      char* aligned = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(p) + huge - 1) / huge * huge);
      madvise(aligned, bytes - huge, MADV_HUGEPAGE);  // a hint: without THP the pages are 4 KiB
      w->data_ = aligned + pad;
      size_t done = 0;
      while (done < static_cast<size_t>(file_size)) {
        const ssize_t n = pread(fd, w->data_ + done, static_cast<size_t>(file_size) - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          const std::string why = n == 0 ? "the file got shorter while it was read" : std::strerror(errno);
          close(fd);
          throw std::runtime_error("cannot read '" + path + "': " + why);
        }
        done += static_cast<size_t>(n);
      }
      mprotect(p, bytes, PROT_READ);  // weights are never written; a stray write faults
    } else {
      // MAP_PRIVATE read-only: pages come from the page cache on first touch; nothing is copied.
      void* p = mmap(nullptr, static_cast<size_t>(file_size), PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        close(fd);
        throw std::runtime_error("cannot map '" + path + "': " + std::strerror(errno));
      }
      w->map_ = p;
      w->data_ = static_cast<char*>(p);
      w->map_size_ = static_cast<size_t>(file_size);
    }
  }
  close(fd);  // a mapping stays valid
  std::map<std::string, const FileTensor*> by_name;
  for (const FileTensor& t : tensors) by_name[t.name] = &t;
  const char* base = w->data_ + data_offset;
  const int64_t data_size = file_size - data_offset;
  w->assign([&](size_t i) {
    const model::Tensor& want = w->layout_.tensors[i];
    auto it = by_name.find(want.name);
    if (it == by_name.end()) throw std::out_of_range("tensor " + want.name + " is missing from '" + path + "'");
    const FileTensor& t = *it->second;
    // Checks a tensor's byte range against the bytes its shape needs and the file.
    auto check_span = [&](const FileTensor& f, int64_t bytes) {
      if (f.begin < 0 || f.end < f.begin || f.end - f.begin != bytes)
        throw std::out_of_range("tensor " + f.name + " spans bytes [" + std::to_string(f.begin) + ", " +
                                std::to_string(f.end) + "), its shape needs " + std::to_string(bytes) + " bytes");
      if (f.end > data_size)
        throw std::out_of_range("tensor " + f.name + " ends at byte " + std::to_string(f.end) +
                                " of the data section, past the end of the file (" + std::to_string(data_size) +
                                " data bytes)");
    };
    const int64_t k = want.shape.back();
    std::vector<int64_t> outer(want.shape.begin(), want.shape.end() - 1);
    if (t.dtype == "I8" || t.dtype == "U8") {
      // A quantized weight and its scale tensor (docs/format.md): I8 [.., n, k] + F32 [.., n];
      // Q4 as U8 [.., n, k/2] + F16 [.., n, k/32].
      const bool q4 = t.dtype == "U8";
      if (q4 && k % cpu::kQ4Group != 0)
        throw std::out_of_range("tensor " + want.name + " is q4 but its input dimension " + std::to_string(k) +
                                " is not a multiple of 32");
      std::vector<int64_t> shape = outer, scale_shape = outer;
      shape.push_back(q4 ? k / 2 : k);
      if (q4) scale_shape.push_back(k / cpu::kQ4Group);
      if (t.shape != shape)
        throw std::out_of_range("tensor " + want.name + " (" + t.dtype + ") has shape " + shape_str(t.shape) +
                                ", expected " + shape_str(shape));
      check_span(t, want.size / (q4 ? 2 : 1));
      auto sit = by_name.find(want.name + "_scale");
      if (sit == by_name.end())
        throw std::out_of_range("tensor " + want.name + "_scale is missing from '" + path + "'");
      const FileTensor& sc = *sit->second;
      if (sc.dtype != (q4 ? "F16" : "F32") || sc.shape != scale_shape)
        throw std::out_of_range("tensor " + sc.name + " is " + sc.dtype + " " + shape_str(sc.shape) + ", expected " +
                                (q4 ? "F16 " : "F32 ") + shape_str(scale_shape));
      int64_t scale_count = 1;
      for (int64_t d : scale_shape) scale_count *= d;
      const int64_t scale_bytes = q4 ? 2 : 4;
      check_span(sc, scale_count * scale_bytes);
      WeightRef r{base + t.begin, q4 ? DType::Q4 : DType::I8, base + sc.begin};
      // Scales are read through float*/uint16_t*: a misaligned one is copied once.
      if (reinterpret_cast<uintptr_t>(r.scales) % static_cast<uintptr_t>(scale_bytes) != 0) {
        auto copy = std::make_unique<float[]>(static_cast<size_t>(scale_count));
        std::memcpy(copy.get(), r.scales, static_cast<size_t>(scale_count * scale_bytes));
        r.scales = copy.get();
        w->owned_.push_back(std::move(copy));
      }
      return r;
    }
    DType dt;
    if (t.dtype == "F32") dt = DType::F32;
    else if (t.dtype == "BF16") dt = DType::BF16;
    else throw std::out_of_range("tensor " + want.name + " has dtype " + t.dtype + " (F32, BF16, I8 or U8 expected)");
    if (t.shape != want.shape)
      throw std::out_of_range("tensor " + want.name + " has shape " + shape_str(t.shape) + ", the config needs " +
                              shape_str(want.shape));
    check_span(t, want.size * dtype_bytes(dt));
    WeightRef r{base + t.begin, dt};
    // Kernels read elements through float*/uint16_t*: a tensor the file stores misaligned (legal in
    // safetensors, rare in practice) is copied once to fp32 rather than read through a bad pointer.
    if (reinterpret_cast<uintptr_t>(r.data) % dtype_bytes(dt) != 0) {
      auto copy = std::make_unique<float[]>(static_cast<size_t>(want.size));
      for (int64_t j = 0; j < want.size; ++j) {
        if (dt == DType::F32) std::memcpy(&copy[static_cast<size_t>(j)], base + t.begin + 4 * j, 4);
        else { uint16_t h; std::memcpy(&h, base + t.begin + 2 * j, 2); copy[static_cast<size_t>(j)] = bf16_to_f32(h); }
      }
      w->owned_.push_back(std::move(copy));
      r = WeightRef{w->owned_.back().get(), DType::F32};
    }
    return r;
  });
  return w;
}

}  // namespace dsmoe::infer

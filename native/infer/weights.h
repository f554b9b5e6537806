// Inference weights: one pointer and dtype per tensor, from a caller-owned flat buffer laid out by
// make_layout() (F32 or BF16), or from a memory-mapped safetensors file. Matrices are used in place
// (never copied), so the experts a run never selects are never read and, when mapped, never paged
// in. Only the [D] norm weights are copied (to fp32, for the RMSNorm kernel).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../backend/backend.h"
#include "../model/config.h"
#include "../model/layout.h"

namespace dsmoe::infer {

using backend::DType;
using backend::WeightRef;  // float* or uint16_t* (bf16), row-major as in DESIGN.md §3
using backend::dtype_bytes;
using backend::weight_bytes;

struct LayerWeights {
  const float* attn_norm = nullptr;  // [D]
  WeightRef att_router;              // [E_att, D], two-layer: [E_att, h]  (data null when E_att = 1)
  WeightRef att_router_hidden;       // [h, D]                (data null unless router_hidden = h > 0)
  WeightRef q, k, v, o;              // [E_att, H·dh, D], [G·dh, D], [G·dh, D], [E_att, D, H·dh]
  const float* mlp_norm = nullptr;   // [D]
  WeightRef mlp_router;              // [E_mlp, D], two-layer: [E_mlp, h]  (data null when E_mlp = 1)
  WeightRef mlp_router_hidden;       // [h, D]                (data null unless router_hidden = h > 0)
  WeightRef up, down;                // [E_mlp, F, D], [E_mlp, D, F]
};

// One tensor of a safetensors file as the TS side read it from the header: byte range
// [begin, end) relative to the data section, which starts at data_offset in the file.
struct FileTensor {
  std::string name, dtype;  // dtype "F32" or "BF16"
  std::vector<int64_t> shape;
  int64_t begin = 0, end = 0;
};

// How from_file brings a checkpoint in. Read (the default): copied once into anonymous memory on
// huge pages, cache-line aligned; decode reads it at full bandwidth. Map: the page cache's pages,
// shared between processes and paged in on first use (models larger than the free memory).
enum class FileLoad { Read, Map };

class Weights {
 public:
  // data: the flat buffer [layout.total] of F32 or BF16 elements in `be`'s memory; it must outlive
  // the Weights, or `owner` keeps it alive.
  static std::shared_ptr<Weights> from_buffer(const model::Config& c, const void* data, DType dtype,
                                              backend::Backend& be = backend::cpu(),
                                              std::shared_ptr<const void> owner = nullptr);
  // Reads `path` into huge-page memory (FileLoad::Read) or maps it read-only (FileLoad::Map) and
  // checks every tensor of the layout against the entries and the file size; throws
  // std::out_of_range naming the tensor on any mismatch.
  static std::shared_ptr<Weights> from_file(const model::Config& c, const std::string& path,
                                            const std::vector<FileTensor>& tensors, int64_t data_offset,
                                            FileLoad load = FileLoad::Read);
  ~Weights();
  Weights(const Weights&) = delete;
  Weights& operator=(const Weights&) = delete;

  const model::Config& config() const { return cfg_; }
  const model::Layout& layout() const { return layout_; }
  std::vector<LayerWeights> layers;
  WeightRef embed, lm_head;           // [V, D] each (the same tensor when tied)
  const float* final_norm = nullptr;  // [D]
  // Bytes held for a file's contents (read or mapped); 0 for from_buffer.
  int64_t mapped_bytes() const { return static_cast<int64_t>(map_size_); }
  FileLoad load() const { return load_; }
  // The backend whose memory holds the tensors (a mapped file: the CPU's); sessions run on it.
  backend::Backend& backend() const { return *be_; }

 private:
  explicit Weights(const model::Config& c);
  // Builds the per-layer view from a resolver tensor index -> WeightRef.
  template <typename Resolve>
  void assign(Resolve resolve);
  const float* as_f32(WeightRef r, int64_t n);  // norms: fp32 view, copied when bf16

  model::Config cfg_;
  model::Layout layout_;
  backend::Backend* be_ = &backend::cpu();
  std::shared_ptr<const void> owner_;            // keeps a from_buffer source alive
  std::vector<std::unique_ptr<float[]>> owned_;  // fp32 copies (norms, misaligned tensors)
  void* map_ = nullptr;
  char* data_ = nullptr;
  size_t map_size_ = 0;
  FileLoad load_ = FileLoad::Map;
};

}  // namespace dsmoe::infer

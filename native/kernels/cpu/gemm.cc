// GEMM driver: blocking, packing and threading shared by every micro-kernel.
//
// Work is split into tiles of C (mc x nc); all tiles of all problems of a batch go into one
// parallel_for, so a grouped GEMM with skewed groups still keeps every thread busy. Each tile walks
// K in kc blocks: it packs its A block (mc x kc, MR-row panels, row scales applied) and B block
// (kc x nc, NR-column panels, bf16 converted) into thread-local buffers, then runs the micro-kernel
// over the MR x NR blocks.
#include "gemm.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "../../core/aligned_buffer.h"
#include "../../core/bf16.h"
#include "../../core/cpu_features.h"
#include "../../core/threadpool.h"
#include "gemm_microkernels.h"

namespace dsmoe::cpu {
namespace {

GemmKernelInfo kernel_for_active_isa() {
  switch (active_isa()) {
    case Isa::Avx512: return gemm_kernel_avx512();
    case Isa::Avx2: return gemm_kernel_avx2();
    default: return gemm_kernel_generic();
  }
}

// Copies kb rows of an M/N-contiguous source (row p at src + p·ld, `cols` valid values) into panels
// of `width`: dst[panel][p][j], zero-padded; row p optionally scaled by scale[p·scale_stride].
template <typename T>
void pack_contiguous(const T* src, int64_t ld, int64_t cols, int64_t kb, int64_t width, int64_t panel_stride,
                     const float* scale, int64_t scale_stride, float* dst) {
  for (int64_t j0 = 0; j0 < cols; j0 += width) {
    const int64_t w = std::min(width, cols - j0);
    float* panel = dst + j0 / width * panel_stride;
    for (int64_t p = 0; p < kb; ++p) {
      const T* in = src + p * ld + j0;
      float* out = panel + p * width;
      const float s = scale ? scale[p * scale_stride] : 1.f;
      int64_t j = 0;
      if constexpr (sizeof(T) == 2) {
        for (; j < w; ++j) out[j] = bf16_to_f32(in[j]) * s;
      } else {
        for (; j < w; ++j) out[j] = in[j] * s;
      }
      for (; j < width; ++j) out[j] = 0.f;
    }
  }
}

// Packs op(A)[m0:m0+mb, k0:k0+kb] into MR-row panels (panel_stride apart), with A's row scale.
void pack_a(const GemmKernelInfo& ki, const GemmA& a, int64_t m0, int64_t mb, int64_t k0, int64_t kb,
            int64_t panel_stride, float* dst) {
  if (!a.trans)  // A [M, K]: K-contiguous rows, transposed into panels
    ki.pack_kmajor_f32(a.data + m0 * a.ld + k0, a.ld, mb, kb, ki.mr, panel_stride,
                       a.row_scale ? a.row_scale + m0 * a.row_scale_stride : nullptr, a.row_scale_stride, dst);
  else  // A [K, M]: rows of the panel are contiguous; the scale runs along K
    pack_contiguous(a.data + k0 * a.ld + m0, a.ld, mb, kb, ki.mr, panel_stride,
                    a.row_scale ? a.row_scale + k0 * a.row_scale_stride : nullptr, a.row_scale_stride, dst);
}

// Packs op(B)[k0:k0+kb, n0:n0+nb] into NR-column panels (panel_stride apart; bf16 → fp32).
void pack_b(const GemmKernelInfo& ki, const GemmB& b, int64_t k0, int64_t kb, int64_t n0, int64_t nb,
            int64_t panel_stride, float* dst) {
  const bool bf16 = b.dtype == DType::BF16;
  const float* f = static_cast<const float*>(b.data);
  const uint16_t* h = static_cast<const uint16_t*>(b.data);
  if (b.trans) {  // B [N, K], the weight layout
    if (bf16) ki.pack_kmajor_bf16(h + n0 * b.ld + k0, b.ld, nb, kb, ki.nr, panel_stride, dst);
    else ki.pack_kmajor_f32(f + n0 * b.ld + k0, b.ld, nb, kb, ki.nr, panel_stride, nullptr, 0, dst);
  } else {  // B [K, N]
    if (bf16) pack_contiguous(h + k0 * b.ld + n0, b.ld, nb, kb, ki.nr, panel_stride, nullptr, 0, dst);
    else pack_contiguous(f + k0 * b.ld + n0, b.ld, nb, kb, ki.nr, panel_stride, nullptr, 0, dst);
  }
}

void scale_tile(float* c, int64_t ldc, int64_t mb, int64_t nb, float beta) {
  for (int64_t i = 0; i < mb; ++i)
    for (int64_t j = 0; j < nb; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
}

void run_tile(const GemmKernelInfo& ki, const GemmProblem& pr, int64_t m0, int64_t mb, int64_t n0,
              int64_t nb) {
  thread_local ScratchBuffer a_buf, b_buf;
  float* c = pr.c + m0 * pr.ldc + n0;
  const int64_t mb_pad = (mb + ki.mr - 1) / ki.mr * ki.mr;
  const int64_t nb_pad = (nb + ki.nr - 1) / ki.nr * ki.nr;
  float* ap = a_buf.floats(static_cast<size_t>(mb_pad * ki.kc));
  float* bp = b_buf.floats(static_cast<size_t>(nb_pad * ki.kc));
  // K is the concatenation of the segments. It is walked in kc blocks; a block packs the pieces of
  // every segment it covers side by side, so short segments (one expert's 32 or 64 columns) still
  // give the micro-kernel long runs of K instead of one C update per segment.
  int64_t total_k = 0;
  for (int64_t s = 0; s < pr.n_segments; ++s) total_k += pr.segments[s].k;
  int64_t seg = 0, seg_k = 0;  // the next piece starts at column seg_k of segment seg
  bool first = true;
  for (int64_t k0 = 0; k0 < total_k; k0 += ki.kc) {
    const int64_t kb = std::min(ki.kc, total_k - k0);
    for (int64_t p = 0; p < kb;) {
      const GemmSegment& sg = pr.segments[seg];
      const int64_t take = std::min(sg.k - seg_k, kb - p);
      if (take > 0) {
        pack_b(ki, sg.b, seg_k, take, n0, nb, kb * ki.nr, bp + p * ki.nr);
        pack_a(ki, sg.a, m0, mb, seg_k, take, kb * ki.mr, ap + p * ki.mr);
        p += take;
        seg_k += take;
      }
      if (seg_k == sg.k) { ++seg; seg_k = 0; }
    }
    const float beta = first ? pr.beta : 1.f;
    // A micro-panel outermost: it stays in L1 while the B panels of the tile stream from L2.
    for (int64_t i0 = 0; i0 < mb; i0 += ki.mr) {
      const int64_t mr = std::min(ki.mr, mb - i0);
      for (int64_t j0 = 0; j0 < nb; j0 += ki.nr) {
        const int64_t nr = std::min(ki.nr, nb - j0);
        ki.kernel(kb, ap + i0 * kb, bp + j0 * kb, c + i0 * pr.ldc + j0, pr.ldc, pr.alpha, beta, mr, nr);
      }
    }
    first = false;
  }
  if (first) scale_tile(c, pr.ldc, mb, nb, pr.beta);  // K == 0: C = beta * C
}

}  // namespace

void pack_kmajor_f32_generic(const float* src, int64_t ld, int64_t rows, int64_t kb, int64_t width,
                             int64_t panel_stride, const float* scale, int64_t scale_stride, float* dst) {
  for (int64_t r0 = 0; r0 < rows; r0 += width) {
    float* panel = dst + r0 / width * panel_stride;
    for (int64_t i = 0; i < width; ++i) {
      if (r0 + i >= rows) {
        for (int64_t p = 0; p < kb; ++p) panel[p * width + i] = 0.f;
        continue;
      }
      const float* row = src + (r0 + i) * ld;
      const float s = scale ? scale[(r0 + i) * scale_stride] : 1.f;
      for (int64_t p = 0; p < kb; ++p) panel[p * width + i] = row[p] * s;
    }
  }
}

void pack_kmajor_bf16_generic(const uint16_t* src, int64_t ld, int64_t rows, int64_t kb, int64_t width,
                              int64_t panel_stride, float* dst) {
  for (int64_t r0 = 0; r0 < rows; r0 += width) {
    float* panel = dst + r0 / width * panel_stride;
    for (int64_t i = 0; i < width; ++i) {
      const uint16_t* row = src + (r0 + i) * ld;
      for (int64_t p = 0; p < kb; ++p) panel[p * width + i] = r0 + i < rows ? bf16_to_f32(row[p]) : 0.f;
    }
  }
}

void gemm_batch(const GemmProblem* problems, int64_t count) {
  const GemmKernelInfo ki = kernel_for_active_isa();
  struct TileRange { int64_t first_tile, m_tiles, n_tiles, mc, nc; const GemmProblem* problem; };
  std::vector<TileRange> ranges;
  ranges.reserve(static_cast<size_t>(count));
  const int64_t threads = num_threads();
  int64_t n_tiles = 0;
  for (int64_t i = 0; i < count; ++i) {
    const GemmProblem& p = problems[i];
    if (p.m <= 0 || p.n <= 0) continue;
    TileRange r{n_tiles, 0, 0, ki.mc, ki.nc, &p};
    // A lone problem on several threads: split N finer so that every thread gets work.
    if (count == 1 && threads > 1) {
      while ((p.m + r.mc - 1) / r.mc * ((p.n + r.nc - 1) / r.nc) < 2 * threads && r.nc > ki.nr)
        r.nc = std::max(ki.nr, r.nc / 2 / ki.nr * ki.nr);
    }
    r.m_tiles = (p.m + r.mc - 1) / r.mc;
    r.n_tiles = (p.n + r.nc - 1) / r.nc;
    n_tiles += r.m_tiles * r.n_tiles;
    ranges.push_back(r);
  }
  parallel_for(n_tiles, [&](int64_t tile, int) {
    auto it = std::upper_bound(ranges.begin(), ranges.end(), tile,
                               [](int64_t t, const TileRange& r) { return t < r.first_tile; });
    const TileRange& r = *(it - 1);
    const GemmProblem& p = *r.problem;
    const int64_t local = tile - r.first_tile;
    const int64_t m0 = (local % r.m_tiles) * r.mc, n0 = (local / r.m_tiles) * r.nc;
    run_tile(ki, p, m0, std::min(r.mc, p.m - m0), n0, std::min(r.nc, p.n - n0));
  });
}

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  GemmSegment seg;
  seg.a = {a, lda, trans_a, nullptr, 1};
  seg.b = {b, ldb, trans_b, DType::F32};
  seg.k = k;
  GemmProblem p;
  p.m = m; p.n = n; p.segments = &seg; p.n_segments = 1;
  p.alpha = alpha; p.beta = beta; p.c = c; p.ldc = ldc;
  gemm_batch(&p, 1);
}

void grouped_gemm(int64_t n_experts, const int32_t* offsets, const float* x, const void* w,
                  DType w_dtype, bool trans_w, int64_t n, int64_t k, float beta, float* y) {
  // The packers read fp32 or bf16 only; quantized weights are dequantized first (CpuBackend).
  if (w_dtype != DType::F32 && w_dtype != DType::BF16)
    throw std::invalid_argument("grouped_gemm: int8/q4 weights must be dequantized first (dequantize_rows)");
  const int64_t elem = w_dtype == DType::BF16 ? 2 : 4;
  std::vector<GemmSegment> segs(static_cast<size_t>(n_experts));
  std::vector<GemmProblem> probs;
  probs.reserve(static_cast<size_t>(n_experts));
  for (int64_t e = 0; e < n_experts; ++e) {
    int64_t r0 = offsets[e], rows = offsets[e + 1] - offsets[e];
    if (rows <= 0) continue;
    GemmSegment& s = segs[static_cast<size_t>(e)];
    s.a = {x + r0 * k, k, false, nullptr, 1};
    s.b = {static_cast<const char*>(w) + e * n * k * elem, trans_w ? k : n, trans_w, w_dtype};
    s.k = k;
    GemmProblem p;
    p.m = rows; p.n = n; p.segments = &s; p.n_segments = 1;
    p.alpha = 1.f; p.beta = beta; p.c = y + r0 * n; p.ldc = n;
    probs.push_back(p);
  }
  gemm_batch(probs.data(), static_cast<int64_t>(probs.size()));
}

void grouped_gemm_weight_grad(int64_t n_experts, const int32_t* offsets, const float* dy,
                              const float* x, int64_t n, int64_t k, float beta, float* dw) {
  std::vector<GemmSegment> segs(static_cast<size_t>(n_experts));
  std::vector<GemmProblem> probs(static_cast<size_t>(n_experts));
  for (int64_t e = 0; e < n_experts; ++e) {
    int64_t r0 = offsets[e], rows = offsets[e + 1] - offsets[e];
    GemmSegment& s = segs[static_cast<size_t>(e)];
    s.a = {dy + r0 * n, n, true, nullptr, 1};   // op(A) = dY_eᵀ  [N, rows]
    s.b = {x + r0 * k, k, false, DType::F32};   // op(B) = X_e    [rows, K]
    s.k = rows > 0 ? rows : 0;
    GemmProblem& p = probs[static_cast<size_t>(e)];
    p.m = n; p.n = k; p.segments = &s; p.n_segments = 1;
    p.alpha = 1.f; p.beta = beta; p.c = dw + e * n * k; p.ldc = k;
  }
  gemm_batch(probs.data(), n_experts);
}

void expert_weighted_gemm(int64_t t, int64_t n_experts, int64_t n, int64_t k, const float* x,
                          int64_t ldx, int64_t x_expert_stride, const float* w, const float* s,
                          float beta, float* y) {
  std::vector<GemmSegment> segs(static_cast<size_t>(n_experts));
  for (int64_t e = 0; e < n_experts; ++e) {
    GemmSegment& g = segs[static_cast<size_t>(e)];
    g.a = {x + e * x_expert_stride, ldx, false, s + e, n_experts};
    g.b = {w + e * n * k, k, true, DType::F32};
    g.k = k;
  }
  GemmProblem p;
  p.m = t; p.n = n; p.segments = segs.data(); p.n_segments = n_experts;
  p.alpha = 1.f; p.beta = beta; p.c = y; p.ldc = n;
  gemm_batch(&p, 1);
}

}  // namespace dsmoe::cpu

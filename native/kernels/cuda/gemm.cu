// GEMM and grouped expert GEMM on bf16 tensor cores (WMMA 16x16x16, fp32 accumulation), the CUDA
// counterparts of cpu::gemm / cpu::grouped_gemm (kernels/cpu/gemm.h).
//
// One kernel serves both: a block computes a 128x128 tile of C from 128x32 tiles of op(A) and 32x128
// tiles of op(B), converted to bf16 while they are staged in shared memory (fp32 inputs are rounded to
// nearest even; bf16 weights are used as they are). The next K-tile is loaded into registers while the
// tensor cores work on the current one. 8 warps, each a 64x32 sub-tile (4x2 WMMA accumulators).
// Every layout of the CPU gemm works (transA/transB, leading dimensions): the global loads are ordered
// so that a warp reads consecutive addresses in each layout; op(B) with transB (the [out, in] weight
// layout) is staged column-major so that its shared-memory stores do not conflict.
//
// Grouped form (rows grouped by expert, device offsets): a one-thread kernel first turns offsets into
// tile_start[e] (each expert's first M-tile) on the device; blocks loop over M-tiles t = blockIdx.x,
// + gridDim.x, ... and find their expert by binary search. The grid's x is an upper bound of the tiles
// (ceil(R/128) + E) when the caller knows the row count R, else a persistent grid (about two blocks per
// SM): no host round trip either way. Empty groups get no tiles.
// Grouped reduction (the weight gradient): grid z = expert, each block reads its reduction range from
// the device offsets. Both run all experts in one launch.
//
// Simple on purpose (correctness first): no cp.async/TMA pipeline, no wgmma. See native/cuda/README.md.
#include <cuda_bf16.h>
#include <mma.h>

#include "../../cuda/device.h"
#include "device_ops.h"

namespace dsmoe::cuda {
namespace {

using bf16 = __nv_bfloat16;
namespace wmma = nvcuda::wmma;

constexpr int BM = 128, BN = 128, BK = 32, THREADS = 256;
constexpr int A_LD = BK + 8;   // As [BM][A_LD]: op(A) row-major
constexpr int B_LD = BN + 8;   // Bs [BK][B_LD]: op(B) row-major (transB = false)
constexpr int BT_LD = BK + 8;  // Bs [BN][BT_LD]: op(B) column-major (transB = true)
constexpr int B_SMEM = (BK * B_LD > BN * BT_LD) ? BK * B_LD : BN * BT_LD;
constexpr int LOADS = BM * BK / THREADS;  // 16 elements of A and of B per thread per K-tile
static_assert(BM * BK == BN * BK, "A and B tiles have the same element count");

struct Problem {
  const void* a;
  int64_t lda;
  const void* b;
  int64_t ldb;
  int64_t b_stride;  // elements between consecutive experts' B (grouped)
  float* c;
  int64_t ldc;
  int64_t m, n, k;
  float alpha, beta;
  bool ta, tb;
  const int32_t* offsets;     // grouped rows: [E+1] (device), else null
  const int32_t* tile_start;  // grouped rows: [E+1] (device)
  int experts;
  const int32_t* k_offsets;   // grouped reduction (weight gradient): [E+1] (device), else null
  int64_t c_stride;           // grouped reduction: elements between consecutive experts' C
  const float* row_scale;     // optional: C row r scaled by row_scale[r * row_scale_stride] (not grouped)
  int64_t row_scale_stride;
};

__device__ __forceinline__ bf16 to_bf16(float x) { return __float2bfloat16_rn(x); }
__device__ __forceinline__ bf16 to_bf16(bf16 x) { return x; }

// One 128x128 tile of C: rows tile_m*BM.. of op(A) (m rows, reduction length K), columns blockIdx.y*BN..
// Called by every thread of the block (block-uniform arguments); starts and ends with no shared-memory
// state in flight, so a block may compute several tiles in a row.
template <typename TA, typename TB>
__device__ __forceinline__ void gemm_tile(const Problem& p, const TA* A, const TB* B, float* C, int64_t m,
                                          int64_t K, int64_t tile_m, bf16* As, bf16* Bs, float* stage) {
  const int64_t row0 = tile_m * BM, col0 = static_cast<int64_t>(blockIdx.y) * BN;
  const int64_t n = p.n, lda = p.lda, ldb = p.ldb;
  const bool ta = p.ta, tb = p.tb;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp / 4, wn = warp % 4;  // warp tile: rows wm*64 .. +64, cols wn*32 .. +32

  bf16 ra[LOADS], rb[LOADS];
  auto load = [&](int64_t k0) {
#pragma unroll
    for (int i = 0; i < LOADS; ++i) {
      const int idx = tid + i * THREADS;
      int r, c;  // r: row of op(A) in the tile, c: k in the tile
      if (!ta) { r = idx / BK; c = idx % BK; }
      else { c = idx / BM; r = idx % BM; }
      const int64_t gr = row0 + r, gk = k0 + c;
      bf16 v = __float2bfloat16_rn(0.f);
      if (gr < m && gk < K) v = to_bf16(ta ? A[gk * lda + gr] : A[gr * lda + gk]);
      ra[i] = v;
    }
#pragma unroll
    for (int i = 0; i < LOADS; ++i) {
      const int idx = tid + i * THREADS;
      int kk, nn;
      if (!tb) { kk = idx / BN; nn = idx % BN; }
      else { nn = idx / BK; kk = idx % BK; }
      const int64_t gk = k0 + kk, gn = col0 + nn;
      bf16 v = __float2bfloat16_rn(0.f);
      if (gk < K && gn < n) v = to_bf16(tb ? B[gn * ldb + gk] : B[gk * ldb + gn]);
      rb[i] = v;
    }
  };
  auto store = [&]() {
#pragma unroll
    for (int i = 0; i < LOADS; ++i) {
      const int idx = tid + i * THREADS;
      int r, c;
      if (!ta) { r = idx / BK; c = idx % BK; }
      else { c = idx / BM; r = idx % BM; }
      As[r * A_LD + c] = ra[i];
    }
#pragma unroll
    for (int i = 0; i < LOADS; ++i) {
      const int idx = tid + i * THREADS;
      if (!tb) Bs[(idx / BN) * B_LD + idx % BN] = rb[i];
      else Bs[(idx / BK) * BT_LD + idx % BK] = rb[i];
    }
  };

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  if (K > 0) load(0);
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    __syncthreads();  // the previous tile has been read
    store();
    __syncthreads();
    if (k0 + BK < K) load(k0 + BK);  // in flight while the tensor cores work
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) wmma::load_matrix_sync(fa[i], As + (wm * 64 + i * 16) * A_LD + kk, A_LD);
      if (tb) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb[2];
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], Bs + (wn * 32 + j * 16) * BT_LD + kk, BT_LD);
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      } else {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> fb[2];
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], Bs + kk * B_LD + wn * 32 + j * 16, B_LD);
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
    }
  }

  // Epilogue through a per-warp 16x16 staging tile: bounds, alpha, row scale and beta (beta = 0 never
  // reads C).
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(stage, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int64_t gr = row0 + wm * 64 + i * 16 + e / 16, gc = col0 + wn * 32 + j * 16 + e % 16;
        if (gr < m && gc < n) {
          float a = p.alpha;
          if (p.row_scale) a *= p.row_scale[gr * p.row_scale_stride];
          float v = a * stage[e];
          if (p.beta != 0.f) v += p.beta * C[gr * p.ldc + gc];
          C[gr * p.ldc + gc] = v;
        }
      }
      __syncwarp();
    }
}

template <typename TA, typename TB>
__global__ void __launch_bounds__(THREADS) gemm_kernel(Problem p) {
  __shared__ __align__(128) bf16 As[BM * A_LD];
  __shared__ __align__(128) bf16 Bs[B_SMEM];
  __shared__ __align__(128) float Cs[THREADS / 32][16 * 16];
  float* stage = Cs[threadIdx.x / 32];
  const TA* A = static_cast<const TA*>(p.a);
  const TB* B = static_cast<const TB*>(p.b);
  if (p.offsets) {
    // Grouped rows: M-tile t of the concatenated experts; blocks loop over t (a persistent grid when the
    // caller does not know the row count), blocks past the last tile do nothing.
    const int total = p.tile_start[p.experts];
    for (int t = static_cast<int>(blockIdx.x); t < total; t += static_cast<int>(gridDim.x)) {
      int lo = 0, hi = p.experts - 1;  // the last expert whose first tile is <= t (it has tiles)
      while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (p.tile_start[mid] <= t) lo = mid;
        else hi = mid - 1;
      }
      const int64_t r0 = p.offsets[lo];
      gemm_tile<TA, TB>(p, A + r0 * p.lda, B + static_cast<int64_t>(lo) * p.b_stride, p.c + r0 * p.ldc,
                        p.offsets[lo + 1] - r0, p.k, t - p.tile_start[lo], As, Bs, stage);
    }
    return;
  }
  if (p.k_offsets) {
    // Grouped reduction: expert blockIdx.z reduces over its rows [k_offsets[e], k_offsets[e+1]) of the
    // stored A (transA) and B (!transB), into its own C.
    const int64_t e = blockIdx.z, r0 = p.k_offsets[e];
    gemm_tile<TA, TB>(p, A + r0 * p.lda, B + r0 * p.ldb, p.c + e * p.c_stride, p.m, p.k_offsets[e + 1] - r0,
                      blockIdx.x, As, Bs, stage);
    return;
  }
  gemm_tile<TA, TB>(p, A, B, p.c, p.m, p.k, blockIdx.x, As, Bs, stage);
}

// tile_start[e] = Σ_{f<e} ceil(rows_f / BM), tile_start[E] = the total. One thread: E is small.
__global__ void tile_prefix_kernel(const int32_t* offsets, int experts, int32_t* tile_start) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  int32_t t = 0;
  for (int e = 0; e < experts; ++e) {
    tile_start[e] = t;
    t += (offsets[e + 1] - offsets[e] + BM - 1) / BM;
  }
  tile_start[experts] = t;
}

// Random bf16 values in [-1, 1) for the benchmarks (a hash of the index: no host data).
__global__ void fill_bf16_kernel(bf16* x, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15; h *= 2246822519u; h ^= h >> 13; h *= 3266489917u; h ^= h >> 16;
    x[i] = __float2bfloat16_rn(static_cast<float>(h) * (2.f / 4294967296.f) - 1.f);
  }
}

constexpr int64_t kMaxGridX = 2147483647LL, kMaxGridY = 65535;

template <typename TA, typename TB>
void launch(const Problem& p, int64_t m_tiles, int64_t z = 1) {
  const int64_t n_tiles = (p.n + BN - 1) / BN;
  if (m_tiles <= 0 || n_tiles <= 0 || z <= 0) return;
  if (m_tiles > kMaxGridX || n_tiles > kMaxGridY || z > kMaxGridY)
    throw std::runtime_error("gemm too large for one launch (" + std::to_string(m_tiles) + " x " +
                             std::to_string(n_tiles) + " x " + std::to_string(z) + " tiles)");
  gemm_kernel<TA, TB><<<dim3(static_cast<unsigned>(m_tiles), static_cast<unsigned>(n_tiles),
                             static_cast<unsigned>(z)),
                        THREADS>>>(p);
  DSMOE_CUDA_CHECK_LAUNCH("gemm_kernel");
}

// Blocks in x of a grouped launch: the exact bound when the row count is known, else a persistent grid
// of about two blocks per SM in all (the kernel loops over the tiles).
int64_t grouped_grid_x(int64_t experts, int64_t rows_hint, int64_t n) {
  if (rows_hint >= 0) return (rows_hint + BM - 1) / BM + experts;  // an upper bound of Σ_e ceil(rows_e / BM)
  int dev = 0, sms = 0;
  DSMOE_CUDA_CHECK(cudaGetDevice(&dev));
  DSMOE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const int64_t n_tiles = (n + BN - 1) / BN;
  const int64_t x = (2 * static_cast<int64_t>(sms) + n_tiles - 1) / n_tiles;
  return x > 0 ? x : 1;
}

// Grouped launch over device data; offsets/tile_start are device arrays of E+1.
template <typename TA, typename TB>
void launch_grouped(int64_t experts, int64_t rows_hint, const int32_t* d_offsets, int32_t* d_tile_start,
                    const TA* x, const TB* w, bool trans_w, int64_t n, int64_t k, float beta, float* y) {
  if (experts <= 0 || n <= 0) return;
  tile_prefix_kernel<<<1, 1>>>(d_offsets, static_cast<int>(experts), d_tile_start);
  DSMOE_CUDA_CHECK_LAUNCH("tile_prefix_kernel");
  Problem p{};
  p.a = x; p.lda = k; p.ta = false;
  p.b = w; p.tb = trans_w; p.ldb = trans_w ? k : n; p.b_stride = n * k;
  p.c = y; p.ldc = n;
  p.m = 0; p.n = n; p.k = k; p.alpha = 1.f; p.beta = beta;
  p.offsets = d_offsets; p.tile_start = d_tile_start; p.experts = static_cast<int>(experts);
  launch<TA, TB>(p, grouped_grid_x(experts, rows_hint, n));
}

}  // namespace

// ---- device entry points (device_ops.h) ------------------------------------------------------------

namespace dev {

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const void* b, bool b_bf16, int64_t ldb, float beta, float* c, int64_t ldc, const float* row_scale,
          int64_t row_scale_stride) {
  if (m <= 0 || n <= 0) return;
  Problem p{};
  p.a = a; p.lda = lda; p.ta = trans_a;
  p.b = b; p.ldb = ldb; p.tb = trans_b; p.b_stride = 0;
  p.c = c; p.ldc = ldc;
  p.m = m; p.n = n; p.k = k; p.alpha = alpha; p.beta = beta;
  p.row_scale = row_scale; p.row_scale_stride = row_scale_stride;
  const int64_t m_tiles = (m + BM - 1) / BM;
  if (b_bf16) launch<float, bf16>(p, m_tiles);
  else launch<float, float>(p, m_tiles);
}

void grouped_gemm(int64_t experts, const int32_t* offsets, int64_t rows_hint, const float* x, const void* w,
                  bool w_bf16, bool trans_w, int64_t n, int64_t k, float beta, float* y) {
  if (experts <= 0 || n <= 0 || rows_hint == 0) return;
  if (experts > 2147483647LL - 1) throw std::runtime_error("grouped_gemm: too many experts");
  ScratchBuffer<int32_t> tiles(experts + 1);
  if (w_bf16)
    launch_grouped<float, bf16>(experts, rows_hint, offsets, tiles.get(), x, static_cast<const bf16*>(w), trans_w, n,
                                k, beta, y);
  else
    launch_grouped<float, float>(experts, rows_hint, offsets, tiles.get(), x, static_cast<const float*>(w), trans_w,
                                 n, k, beta, y);
}

void grouped_gemm_weight_grad(int64_t experts, const int32_t* offsets, const float* dy, const float* x, int64_t n,
                              int64_t k, float beta, float* dw) {
  if (experts <= 0 || n <= 0 || k <= 0) return;
  // dW[e] [n, k] = op(A)·op(B): op(A) = dY_eᵀ (A = dy stored [rows, n], transA), op(B) = X_e (B = x
  // stored [rows, k]); the reduction runs over the expert's rows, read from offsets on the device.
  Problem p{};
  p.a = dy; p.lda = n; p.ta = true;
  p.b = x; p.ldb = k; p.tb = false;
  p.c = dw; p.ldc = k; p.c_stride = n * k;
  p.m = n; p.n = k; p.k = 0; p.alpha = 1.f; p.beta = beta;
  p.k_offsets = offsets;
  launch<float, float>(p, (n + BM - 1) / BM, experts);
}

}  // namespace dev

// ---- benchmark timers (api.h): device-resident bf16 data, CUDA events ------------------------------

double bench_gemm(int64_t m, int64_t n, int64_t k, int reps) {
  require_device();
  DeviceBuffer<bf16> da(m * k), db(n * k);
  DeviceBuffer<float> dc(m * n);
  fill_bf16_kernel<<<grid_for(m * k, 256), 256>>>(da.get(), m * k, 1);
  DSMOE_CUDA_CHECK_LAUNCH("fill_bf16_kernel");
  fill_bf16_kernel<<<grid_for(n * k, 256), 256>>>(db.get(), n * k, 2);
  DSMOE_CUDA_CHECK_LAUNCH("fill_bf16_kernel");
  Problem p{};
  p.a = da.get(); p.lda = k; p.ta = false;
  p.b = db.get(); p.ldb = k; p.tb = true;
  p.c = dc.get(); p.ldc = n;
  p.m = m; p.n = n; p.k = k; p.alpha = 1.f; p.beta = 0.f;
  const int64_t m_tiles = (m + BM - 1) / BM;
  launch<bf16, bf16>(p, m_tiles);  // warm-up
  EventTimer t;
  t.start();
  for (int r = 0; r < reps; ++r) launch<bf16, bf16>(p, m_tiles);
  return t.stop() / reps;
}

double bench_grouped_gemm(int64_t experts, const int32_t* offsets, int64_t n, int64_t k, int reps) {
  require_device();
  const int64_t rows = offsets[experts];
  DeviceBuffer<int32_t> doff(offsets, experts + 1), dtiles(experts + 1);
  DeviceBuffer<bf16> dx(rows * k), dw(experts * n * k);
  DeviceBuffer<float> dy(rows * n);
  fill_bf16_kernel<<<grid_for(rows * k, 256), 256>>>(dx.get(), rows * k, 3);
  DSMOE_CUDA_CHECK_LAUNCH("fill_bf16_kernel");
  fill_bf16_kernel<<<grid_for(experts * n * k, 256), 256>>>(dw.get(), experts * n * k, 4);
  DSMOE_CUDA_CHECK_LAUNCH("fill_bf16_kernel");
  if (rows == 0) return 0.0;
  launch_grouped<bf16, bf16>(experts, rows, doff.get(), dtiles.get(), dx.get(), dw.get(), true, n, k, 0.f, dy.get());
  EventTimer t;
  t.start();
  for (int r = 0; r < reps; ++r)
    launch_grouped<bf16, bf16>(experts, rows, doff.get(), dtiles.get(), dx.get(), dw.get(), true, n, k, 0.f,
                               dy.get());
  return t.stop() / reps;
}

}  // namespace dsmoe::cuda

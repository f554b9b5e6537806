// Routing, norms, RoPE, GELU, cross-entropy and AdamW on the device: the CUDA counterparts of
// kernels/cpu/routing.h and kernels/cpu/nn.h, with the same contracts (see those headers). Sums
// that the CPU kernels take in double are taken in double here too; every output element is
// written by one thread in a fixed order, so results do not depend on scheduling — except
// embedding_backward (float atomics over repeated tokens) and the switch loss's expert counts (integer
// atomics: exact). The entry points are device_ops.h's (device pointers, stream 0).
#include <cfloat>
#include <cmath>
#include <vector>

#include "../../cuda/device.h"
#include "device_common.cuh"
#include "device_ops.h"

namespace dsmoe::cuda {
namespace {

constexpr int kThreads = 256;

using common::gstride;
using common::gtid;

__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Block-wide sum (all threads get it); blockDim.x a multiple of 32, <= 1024.
__device__ double block_sum(double v) {
  __shared__ double part[32];
  v = warp_sum(v);
  const int w = threadIdx.x / 32, l = threadIdx.x % 32, nw = blockDim.x / 32;
  __syncthreads();  // part may still be read by a previous call
  if (l == 0) part[w] = v;
  __syncthreads();
  double t = l < nw ? part[l] : 0.0;
  return warp_sum(t);
}
__device__ float block_max(float v) {
  __shared__ float part[32];
  v = warp_max(v);
  const int w = threadIdx.x / 32, l = threadIdx.x % 32, nw = blockDim.x / 32;
  __syncthreads();
  if (l == 0) part[w] = v;
  __syncthreads();
  float t = l < nw ? part[l] : -INFINITY;
  return warp_max(t);
}

// ---- routing ------------------------------------------------------------------------------------

// One warp per token.
__global__ void router_softmax_kernel(int64_t T, int64_t E, const float* logits, float* probs) {
  const int64_t warps = gstride() / 32;
  for (int64_t t = gtid() / 32; t < T; t += warps) {
    const int lane = threadIdx.x % 32;
    const float* x = logits + t * E;
    float* p = probs + t * E;
    float mx = -INFINITY;
    for (int64_t e = lane; e < E; e += 32) mx = fmaxf(mx, x[e]);
    mx = warp_max(mx);
    double sum = 0;
    for (int64_t e = lane; e < E; e += 32) sum += expf(x[e] - mx);
    sum = warp_sum(sum);
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t e = lane; e < E; e += 32) p[e] = expf(x[e] - mx) * inv;
  }
}

using common::rank_key;

// One thread per (token, expert): its rank among the token's experts (descending score, ties to the
// lower index, NaN below every number) is where it goes when the rank is < k.
__global__ void route_topk_kernel(int64_t T, int64_t E, const float* probs, int64_t k, int32_t* pair_token,
                                  int32_t* pair_expert, float* pair_weight) {
  for (int64_t i = gtid(); i < T * E; i += gstride()) {
    const int64_t t = i / E, e = i % E;
    const float* p = probs + t * E;
    const float ke = rank_key(p[e]);
    int64_t rank = 0;
    for (int64_t f = 0; f < E && rank < k; ++f) {
      const float kf = rank_key(p[f]);
      rank += (kf > ke || (kf == ke && f < e));
    }
    if (rank < k) {
      const int64_t o = t * k + rank;
      pair_token[o] = static_cast<int32_t>(t);
      pair_expert[o] = static_cast<int32_t>(e);
      pair_weight[o] = p[e];
    }
  }
}

// group_by_expert, step 1: one block per chunk of kChunk pairs. counts[e * chunks + c] = pairs of
// expert e in chunk c; local[p] = pairs of the same expert before p in its chunk (stable order).
constexpr int kChunk = 256;
__global__ void group_count_kernel(int64_t P, int64_t chunks, const int32_t* pair_expert, int32_t* counts,
                                   int32_t* local) {
  __shared__ int32_t ex[kChunk];
  const int64_t c = blockIdx.x;
  const int64_t p = c * kChunk + threadIdx.x;
  ex[threadIdx.x] = p < P ? pair_expert[p] : -1;
  __syncthreads();
  if (p < P) {
    const int32_t e = ex[threadIdx.x];
    int32_t r = 0;
    for (int j = 0; j < static_cast<int>(threadIdx.x); ++j) r += ex[j] == e;
    local[p] = r;
    atomicAdd(&counts[static_cast<int64_t>(e) * chunks + c], 1);  // a count: the order does not matter
  }
}

// Step 2: exclusive scan of counts (expert-major, chunk-minor) in one block, and offsets from it.
__global__ void group_scan_kernel(int64_t E, int64_t chunks, int64_t P, int32_t* counts /* in: counts, out: base */,
                                  int32_t* offsets) {
  __shared__ int32_t sums[1024];
  common::block_exclusive_scan(E * chunks, counts, sums);
  __syncthreads();
  for (int64_t x = threadIdx.x; x < E; x += blockDim.x) offsets[x] = counts[x * chunks];
  if (threadIdx.x == 0) offsets[E] = static_cast<int32_t>(P);
}

// Step 3: scatter.
__global__ void group_scatter_kernel(int64_t P, int64_t chunks, const int32_t* pair_expert, const int32_t* base,
                                     const int32_t* local, int32_t* order, int32_t* position) {
  for (int64_t p = gtid(); p < P; p += gstride()) {
    const int32_t pos = base[static_cast<int64_t>(pair_expert[p]) * chunks + p / kChunk] + local[p];
    order[pos] = static_cast<int32_t>(p);
    position[p] = pos;
  }
}

__global__ void gather_rows_kernel(int64_t P, int64_t D, const float* x, const int32_t* pair_token,
                                   const int32_t* order, float* xg) {
  for (int64_t i = gtid(); i < P * D; i += gstride()) {
    const int64_t r = i / D, d = i % D;
    xg[i] = x[static_cast<int64_t>(pair_token[order[r]]) * D + d];
  }
}

// One thread per (token, column): the token's pairs are contiguous (token-major), found by binary search.
// pair_weight null: weight 1 (gather_rows_backward; 1·x is exact, so this is the CPU's sum as well).
__global__ void combine_kernel(int64_t T, int64_t P, int64_t N, const float* yg, const int32_t* pair_token,
                               const float* pair_weight, const int32_t* position, float* y, float beta) {
  for (int64_t i = gtid(); i < T * N; i += gstride()) {
    const int64_t t = i / N, n = i % N;
    int64_t lo = 0, hi = P;  // first pair with pair_token >= t
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (pair_token[mid] < t) lo = mid + 1;
      else hi = mid;
    }
    float o = beta == 0.f ? 0.f : (beta == 1.f ? y[i] : y[i] * beta);
    for (int64_t p = lo; p < P && pair_token[p] == t; ++p)
      o += (pair_weight ? pair_weight[p] : 1.f) * yg[static_cast<int64_t>(position[p]) * N + n];
    y[i] = o;
  }
}

// ---- nn -----------------------------------------------------------------------------------------

// One block per row.
__global__ void rmsnorm_forward_kernel(int64_t rows, int64_t dim, const float* x, const float* w, float eps,
                                       float* y, float* rstd) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * dim;
    double ss = 0;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) ss += static_cast<double>(xr[j]) * xr[j];
    ss = block_sum(ss);
    const float s = static_cast<float>(1.0 / sqrt(ss / static_cast<double>(dim) + eps));
    if (rstd && threadIdx.x == 0) rstd[r] = s;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) y[r * dim + j] = xr[j] * s * w[j];
  }
}

__global__ void rmsnorm_backward_dx_kernel(int64_t rows, int64_t dim, const float* x, const float* w,
                                           const float* rstd, const float* dy, float* dx) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * dim;
    const float* gr = dy + r * dim;
    double dot = 0;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) dot += static_cast<double>(gr[j]) * w[j] * xr[j];
    dot = block_sum(dot);
    const double s = rstd[r];
    const float c = static_cast<float>(s * s * s * dot / static_cast<double>(dim));
    const float sf = static_cast<float>(s);
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) dx[r * dim + j] = sf * w[j] * gr[j] - xr[j] * c;
  }
}

// One thread per column: dw[j] (+)= Σ_r dy·x·rstd in double, rows in order.
__global__ void rmsnorm_backward_dw_kernel(int64_t rows, int64_t dim, const float* x, const float* rstd,
                                           const float* dy, float* dw, bool accumulate) {
  for (int64_t j = gtid(); j < dim; j += gstride()) {
    double total = accumulate ? static_cast<double>(dw[j]) : 0.0;
    for (int64_t r = 0; r < rows; ++r)
      total += static_cast<double>(dy[r * dim + j]) * x[r * dim + j] * static_cast<double>(rstd[r]);
    dw[j] = static_cast<float>(total);
  }
}

// One thread per (row, head, i < half); the angle and the rotation in double, as the CPU kernel.
// sign = 1: rope_forward; sign = -1: rope_backward (rotation by -a). out may equal x (each thread reads
// both halves of its pair before writing them).
__global__ void rope_kernel(int64_t rows, int64_t heads, int64_t head_dim, double theta, const int32_t* positions,
                            const float* x, float* out, double sign) {
  const int64_t half = head_dim / 2;
  for (int64_t idx = gtid(); idx < rows * heads * half; idx += gstride()) {
    const int64_t i = idx % half, rh = idx / half, r = rh / heads;
    const double inv_freq = pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    const double a = static_cast<double>(positions[r]) * inv_freq;
    double sn, cs;
    sincos(a, &sn, &cs);
    sn *= sign;
    const float* xi = x + rh * head_dim;
    const double u = xi[i], v = xi[i + half];
    out[rh * head_dim + i] = static_cast<float>(u * cs - v * sn);
    out[rh * head_dim + i + half] = static_cast<float>(v * cs + u * sn);
  }
}

constexpr float kSqrt1_2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
constexpr float kTanhC = 0.79788456080286535588f;  // √(2/π)
constexpr float kTanhA = 0.044715f;

__global__ void gelu_forward_kernel(int64_t n, const float* x, float* y, bool tanh_approx) {
  for (int64_t i = gtid(); i < n; i += gstride()) {
    const float v = x[i];
    y[i] = tanh_approx ? 0.5f * v * (1.f + tanhf(kTanhC * (v + kTanhA * v * v * v)))
                       : 0.5f * v * (1.f + erff(v * kSqrt1_2));
  }
}

__global__ void gelu_backward_kernel(int64_t n, const float* x, const float* dy, float* dx, bool tanh_approx) {
  for (int64_t i = gtid(); i < n; i += gstride()) {
    const float v = x[i];
    float d;
    if (tanh_approx) {
      const float t = tanhf(kTanhC * (v + kTanhA * v * v * v));
      d = 0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * kTanhC * (1.f + 3.f * kTanhA * v * v);
    } else {
      d = 0.5f * (1.f + erff(v * kSqrt1_2)) + v * kInvSqrt2Pi * expf(-0.5f * v * v);
    }
    dx[i] = dy[i] * d;
  }
}

// One block per row; row_loss in double for the mean. g (grad_scale / n_valid) is read from the device
// (cross_entropy_count_kernel). dlogits may alias logits: the target logit is read before any write.
__global__ void cross_entropy_kernel(int64_t rows, int64_t vocab, const float* logits, const int32_t* targets,
                                     float* dlogits, float* losses, double* row_loss, const float* g_ptr) {
  const float g = *g_ptr;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* l = logits + r * vocab;
    float* d = dlogits ? dlogits + r * vocab : nullptr;
    const int32_t t = targets[r];
    if (t < 0) {
      if (d)
        for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) d[j] = 0.f;
      if (threadIdx.x == 0) {
        if (losses) losses[r] = 0.f;
        row_loss[r] = 0.0;
      }
      continue;
    }
    const float target_logit = l[t];  // before any thread of the block writes d (which may alias l)
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) mx = fmaxf(mx, l[j]);
    mx = block_max(mx);
    double sum = 0;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) sum += expf(l[j] - mx);
    sum = block_sum(sum);
    if (threadIdx.x == 0) {
      const double loss = static_cast<double>(mx) + log(sum) - static_cast<double>(target_logit);
      row_loss[r] = loss;
      if (losses) losses[r] = static_cast<float>(loss);
    }
    if (d) {
      const float scale = static_cast<float>(static_cast<double>(g) / sum);
      for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
        float v = expf(l[j] - mx) * scale;
        if (j == t) v -= g;
        d[j] = v;
      }
    }
  }
}

__global__ void adamw_kernel(int64_t n, float* param, const float* grad, float* m, float* v, float lr, float beta1,
                             float beta2, float eps, float wd, float inv_bc1, float inv_sqrt_bc2) {
  const float a1 = 1.f - beta1, a2 = 1.f - beta2;
  for (int64_t i = gtid(); i < n; i += gstride()) {
    const float gi = grad[i];
    const float mi = beta1 * m[i] + a1 * gi;
    const float vi = beta2 * v[i] + a2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float update = (mi * inv_bc1) / (sqrtf(vi) * inv_sqrt_bc2 + eps) + wd * param[i];
    param[i] -= lr * update;
  }
}

// ---- more of the backend's ops ----------------------------------------------------------------------

// Warp per token: dlogits = p ⊙ (dp − Σ_e p·dp), the dot in double. dlogits may alias dprobs (each
// lane writes only the elements it read, after the warp's dot).
__global__ void router_softmax_backward_kernel(int64_t T, int64_t E, const float* probs, const float* dprobs,
                                               float* dlogits) {
  const int64_t warps = gstride() / 32;
  for (int64_t t = gtid() / 32; t < T; t += warps) {
    const int lane = threadIdx.x % 32;
    const float* p = probs + t * E;
    const float* dp = dprobs + t * E;
    double dot = 0;
    for (int64_t e = lane; e < E; e += 32) dot += static_cast<double>(p[e]) * dp[e];
    dot = warp_sum(dot);
    for (int64_t e = lane; e < E; e += 32)
      dlogits[t * E + e] = static_cast<float>(p[e] * (static_cast<double>(dp[e]) - dot));  // in double, as the CPU
  }
}

// Warp per pair: dyg[position[p]] = w_p·dy[t], dweight[p] = dy[t]·yg[position[p]] in double.
__global__ void combine_backward_kernel(int64_t P, int64_t N, const float* dy, const float* yg,
                                        const int32_t* pair_token, const float* pair_weight, const int32_t* position,
                                        float* dyg, float* dweight) {
  const int64_t warps = gstride() / 32;
  for (int64_t p = gtid() / 32; p < P; p += warps) {
    const int lane = threadIdx.x % 32;
    const float* d = dy + static_cast<int64_t>(pair_token[p]) * N;
    const int64_t r = static_cast<int64_t>(position[p]) * N;
    const float w = pair_weight[p];
    double dot = 0;
    for (int64_t n = lane; n < N; n += 32) {
      dot += static_cast<double>(d[n]) * yg[r + n];
      dyg[r + n] = w * d[n];
    }
    dot = warp_sum(dot);
    if (lane == 0) dweight[p] = static_cast<float>(dot);
  }
}

// Warp per (token, expert) row r: ds[r] = Σ_f pe·g (double), dg = s[r]·pe (dg may alias pe: each lane
// reads its elements of pe once, before writing them).
__global__ void expert_scores_backward_kernel(int64_t TE, int64_t F, const float* s, const float* pe,
                                              const float* g, float* ds, float* dg) {
  const int64_t warps = gstride() / 32;
  for (int64_t r = gtid() / 32; r < TE; r += warps) {
    const int lane = threadIdx.x % 32;
    const float sr = s[r];
    double dot = 0;
    for (int64_t f = lane; f < F; f += 32) {
      const float v = pe[r * F + f];
      dot += static_cast<double>(v) * g[r * F + f];
      dg[r * F + f] = sr * v;
    }
    dot = warp_sum(dot);
    if (lane == 0) ds[r] = static_cast<float>(dot);
  }
}

// weights and mask are zeroed before; the P pairs are distinct (token, expert) cells: no races.
__global__ void pair_weights_kernel(int64_t E, int64_t P, const int32_t* pair_token, const int32_t* pair_expert,
                                    const float* probs, float* weights, uint8_t* mask) {
  for (int64_t p = gtid(); p < P; p += gstride()) {
    const int64_t i = static_cast<int64_t>(pair_token[p]) * E + pair_expert[p];
    weights[i] = probs[i];
    mask[i] = 1;
  }
}

// Row i of the grouped [P, HD] layout <-> the (token, expert) slice of the [T, QD] layout.
// scatter = true: dst[token·QD + expert·HD + c] = src[i·HD + c]; false: the reverse.
__global__ void pair_heads_kernel(int64_t P, int64_t HD, int64_t QD, const int32_t* order, const int32_t* pair_token,
                                  const int32_t* pair_expert, const float* src, float* dst, bool scatter) {
  for (int64_t idx = gtid(); idx < P * HD; idx += gstride()) {
    const int64_t i = idx / HD, c = idx % HD;
    const int32_t p = order[i];
    const int64_t wide = static_cast<int64_t>(pair_token[p]) * QD + static_cast<int64_t>(pair_expert[p]) * HD + c;
    if (scatter) dst[wide] = src[idx];
    else dst[idx] = src[wide];
  }
}

// Cross-entropy, step 1: n_valid rows (targets ≥ 0) and g = grad_scale / n_valid, both on the device.
// One block of kThreads.
__global__ void cross_entropy_count_kernel(int64_t rows, const int32_t* targets, float grad_scale, float* g,
                                           double* n_valid) {
  double c = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) c += targets[r] >= 0 ? 1.0 : 0.0;
  c = block_sum(c);  // integers below 2^53: exact in any order
  if (threadIdx.x == 0) {
    *n_valid = c;
    *g = c > 0 ? static_cast<float>(static_cast<double>(grad_scale) / c) : 0.f;
  }
}

// One block: out[0] = Σ in[0..n) in double, each thread over a contiguous run in order, then a fixed
// tree; (divide by *divisor when given and > 0, 0 when given and 0). Deterministic for a given n.
__global__ void reduce_sum_kernel(int64_t n, const double* in, const double* divisor, double* out) {
  const int64_t seg = (n + blockDim.x - 1) / blockDim.x, b = threadIdx.x * seg, e = min(n, b + seg);
  double s = 0;
  for (int64_t i = b; i < e; ++i) s += in[i];
  s = block_sum(s);
  if (threadIdx.x == 0) {
    if (divisor) s = *divisor > 0 ? s / *divisor : 0.0;
    *out = s;
  }
}

constexpr int64_t kSumChunk = 4096;  // elements per block partial of sum_squares
__global__ void sum_squares_partial_kernel(int64_t n, const float* x, double* partial) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * kSumChunk, e = min(n, b + kSumChunk);
  double s = 0;
  for (int64_t i = b + threadIdx.x; i < e; i += blockDim.x) s += static_cast<double>(x[i]) * x[i];
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void scale_kernel(int64_t n, float* x, float s) {
  for (int64_t i = gtid(); i < n; i += gstride()) x[i] *= s;
}
__global__ void add_kernel(int64_t n, float* y, const float* x) {
  for (int64_t i = gtid(); i < n; i += gstride()) y[i] += x[i];
}
__global__ void scale_rows_kernel(int64_t rows, int64_t cols, const float* x, int64_t ldx, const float* scale,
                                  int64_t scale_stride, float* out) {
  for (int64_t i = gtid(); i < rows * cols; i += gstride()) {
    const int64_t r = i / cols, c = i % cols;
    out[i] = scale[r * scale_stride] * x[r * ldx + c];
  }
}
__global__ void fill_kernel(int64_t n, float* x, float v) {
  for (int64_t i = gtid(); i < n; i += gstride()) x[i] = v;
}
__global__ void offset_indices_kernel(int64_t n, int32_t* x, int32_t delta) {
  for (int64_t i = gtid(); i < n; i += gstride()) x[i] += delta;
}

__global__ void embedding_forward_kernel(int64_t N, int64_t D, const int32_t* tokens, const void* table, bool bf16,
                                         float* out) {
  for (int64_t i = gtid(); i < N * D; i += gstride()) {
    const int64_t t = i / D, j = i % D;
    const int64_t src = static_cast<int64_t>(tokens[t]) * D + j;
    if (bf16) {
      const uint32_t bits = static_cast<uint32_t>(static_cast<const uint16_t*>(table)[src]) << 16;
      out[i] = __uint_as_float(bits);  // bf16 -> fp32 is exact: the high half of the fp32 pattern
    } else {
      out[i] = static_cast<const float*>(table)[src];
    }
  }
}

__global__ void embedding_backward_kernel(int64_t N, int64_t D, const int32_t* tokens, const float* dy,
                                          float* dtable) {
  for (int64_t i = gtid(); i < N * D; i += gstride()) {
    const int64_t t = i / D, j = i % D;
    atomicAdd(dtable + static_cast<int64_t>(tokens[t]) * D + j, dy[i]);  // repeated tokens: any order
  }
}

// Router statistics: thread per expert, its column summed over tokens in order (double).
__global__ void column_sum_kernel(int64_t T, int64_t E, const float* probs, double* col) {
  for (int64_t e = gtid(); e < E; e += gstride()) {
    double s = 0;
    for (int64_t t = 0; t < T; ++t) s += probs[t * E + e];
    col[e] = s;
  }
}
// Thread per token: −Σ_e S log S (0 at S = 0), in double.
__global__ void row_entropy_kernel(int64_t T, int64_t E, const float* probs, double* ent) {
  for (int64_t t = gtid(); t < T; t += gstride()) {
    double h = 0;
    for (int64_t e = 0; e < E; ++e) {
      const double p = probs[t * E + e];
      if (p > 0) h -= p * log(p);
    }
    ent[t] = h;
  }
}

// MI loss gradient: dprobs[t,e] (+)= scale·(log max(p_e, FLT_MIN) − log max(S[t,e], FLT_MIN)), p_e = col[e]/T.
__global__ void mi_grad_kernel(int64_t T, int64_t E, const float* probs, const double* col, double scale,
                               float* dprobs, bool accumulate) {
  for (int64_t i = gtid(); i < T * E; i += gstride()) {
    const int64_t e = i % E;
    const double log_p = log(fmax(col[e] / static_cast<double>(T), static_cast<double>(FLT_MIN)));
    const double log_s = log(fmax(static_cast<double>(probs[i]), static_cast<double>(FLT_MIN)));
    const float g = static_cast<float>(scale * (log_p - log_s));
    dprobs[i] = accumulate ? dprobs[i] + g : g;
  }
}

// Switch loss: pairs per expert (integer atomics: exact in any order).
__global__ void expert_count_kernel(int64_t P, const int32_t* pair_expert, unsigned long long* count) {
  for (int64_t p = gtid(); p < P; p += gstride()) atomicAdd(count + pair_expert[p], 1ull);
}
// dprobs[t,e] (+)= scale·f_e, f_e = count[e] / P.
__global__ void switch_grad_kernel(int64_t T, int64_t E, int64_t P, const unsigned long long* count, double scale,
                                   float* dprobs, bool accumulate) {
  for (int64_t i = gtid(); i < T * E; i += gstride()) {
    const double f = P > 0 ? static_cast<double>(count[i % E]) / static_cast<double>(P) : 0.0;
    const float g = static_cast<float>(scale * f);
    dprobs[i] = accumulate ? dprobs[i] + g : g;
  }
}

unsigned blocks_for_rows(int64_t rows) {
  return static_cast<unsigned>(rows < 65535 * 16 ? (rows > 0 ? rows : 1) : 65535 * 16);
}

}  // namespace

// ---- device entry points (device_ops.h): device pointers, stream 0, no host copies -------------------

namespace dev {

void router_softmax(int64_t T, int64_t E, const float* logits, float* probs) {
  if (T <= 0 || E <= 0) return;
  router_softmax_kernel<<<grid_for(T * 32, kThreads), kThreads>>>(T, E, logits, probs);
  DSMOE_CUDA_CHECK_LAUNCH("router_softmax_kernel");
}

void router_softmax_backward(int64_t T, int64_t E, const float* probs, const float* dprobs, float* dlogits) {
  if (T <= 0 || E <= 0) return;
  router_softmax_backward_kernel<<<grid_for(T * 32, kThreads), kThreads>>>(T, E, probs, dprobs, dlogits);
  DSMOE_CUDA_CHECK_LAUNCH("router_softmax_backward_kernel");
}

void route_topk(int64_t T, int64_t E, const float* probs, int64_t k, int32_t* pair_token, int32_t* pair_expert,
                float* pair_weight) {
  if (T <= 0 || E <= 0) return;
  route_topk_kernel<<<grid_for(T * E, kThreads), kThreads>>>(T, E, probs, k, pair_token, pair_expert, pair_weight);
  DSMOE_CUDA_CHECK_LAUNCH("route_topk_kernel");
}

void group_by_expert(int64_t P, int64_t E, const int32_t* pair_expert, int32_t* offsets, int32_t* order,
                     int32_t* position) {
  if (P <= 0) {
    if (E >= 0) DSMOE_CUDA_CHECK(cudaMemsetAsync(offsets, 0, static_cast<size_t>(E + 1) * sizeof(int32_t), 0));
    return;
  }
  const int64_t chunks = (P + kChunk - 1) / kChunk;
  if (chunks > 2147483647LL) throw std::runtime_error("group_by_expert: too many pairs");
  ScratchBuffer<int32_t> counts(E * chunks), local(P);
  if (E > 0) DSMOE_CUDA_CHECK(cudaMemsetAsync(counts.get(), 0, static_cast<size_t>(E * chunks) * sizeof(int32_t), 0));
  group_count_kernel<<<static_cast<unsigned>(chunks), kChunk>>>(P, chunks, pair_expert, counts.get(), local.get());
  DSMOE_CUDA_CHECK_LAUNCH("group_count_kernel");
  group_scan_kernel<<<1, 1024>>>(E, chunks, P, counts.get(), offsets);
  DSMOE_CUDA_CHECK_LAUNCH("group_scan_kernel");
  group_scatter_kernel<<<grid_for(P, kThreads), kThreads>>>(P, chunks, pair_expert, counts.get(), local.get(), order,
                                                            position);
  DSMOE_CUDA_CHECK_LAUNCH("group_scatter_kernel");
}

void gather_rows(int64_t P, int64_t D, const float* x, const int32_t* pair_token, const int32_t* order, float* xg) {
  if (P <= 0 || D <= 0) return;
  gather_rows_kernel<<<grid_for(P * D, kThreads), kThreads>>>(P, D, x, pair_token, order, xg);
  DSMOE_CUDA_CHECK_LAUNCH("gather_rows_kernel");
}

void gather_rows_backward(int64_t T, int64_t P, int64_t D, const float* dxg, const int32_t* pair_token,
                          const int32_t* position, float* dx, float beta) {
  if (T <= 0 || D <= 0) return;
  combine_kernel<<<grid_for(T * D, kThreads), kThreads>>>(T, P, D, dxg, pair_token, nullptr, position, dx, beta);
  DSMOE_CUDA_CHECK_LAUNCH("combine_kernel (gather_rows_backward)");
}

void combine(int64_t T, int64_t P, int64_t N, const float* yg, const int32_t* pair_token, const float* pair_weight,
             const int32_t* position, float* y, float beta) {
  if (T <= 0 || N <= 0) return;
  combine_kernel<<<grid_for(T * N, kThreads), kThreads>>>(T, P, N, yg, pair_token, pair_weight, position, y, beta);
  DSMOE_CUDA_CHECK_LAUNCH("combine_kernel");
}

void combine_backward(int64_t T, int64_t P, int64_t N, const float* dy, const float* yg, const int32_t* pair_token,
                      const float* pair_weight, const int32_t* position, float* dyg, float* dweight) {
  (void)T;
  if (P <= 0) return;
  combine_backward_kernel<<<grid_for(P * 32, kThreads), kThreads>>>(P, N, dy, yg, pair_token, pair_weight, position,
                                                                    dyg, dweight);
  DSMOE_CUDA_CHECK_LAUNCH("combine_backward_kernel");
}

void pair_weights(int64_t T, int64_t E, int64_t P, const int32_t* pair_token, const int32_t* pair_expert,
                  const float* probs, float* weights, uint8_t* mask) {
  if (T <= 0 || E <= 0) return;
  DSMOE_CUDA_CHECK(cudaMemsetAsync(weights, 0, static_cast<size_t>(T * E) * sizeof(float), 0));
  DSMOE_CUDA_CHECK(cudaMemsetAsync(mask, 0, static_cast<size_t>(T * E), 0));
  if (P <= 0) return;
  pair_weights_kernel<<<grid_for(P, kThreads), kThreads>>>(E, P, pair_token, pair_expert, probs, weights, mask);
  DSMOE_CUDA_CHECK_LAUNCH("pair_weights_kernel");
}

void scatter_pair_heads(int64_t P, int64_t HD, int64_t QD, const int32_t* order, const int32_t* pair_token,
                        const int32_t* pair_expert, const float* src, float* dst) {
  if (P <= 0 || HD <= 0) return;
  pair_heads_kernel<<<grid_for(P * HD, kThreads), kThreads>>>(P, HD, QD, order, pair_token, pair_expert, src, dst,
                                                              true);
  DSMOE_CUDA_CHECK_LAUNCH("pair_heads_kernel (scatter)");
}

void gather_pair_heads(int64_t P, int64_t HD, int64_t QD, const int32_t* order, const int32_t* pair_token,
                       const int32_t* pair_expert, const float* src, float* dst) {
  if (P <= 0 || HD <= 0) return;
  pair_heads_kernel<<<grid_for(P * HD, kThreads), kThreads>>>(P, HD, QD, order, pair_token, pair_expert, src, dst,
                                                              false);
  DSMOE_CUDA_CHECK_LAUNCH("pair_heads_kernel (gather)");
}

void expert_scores_backward(int64_t T, int64_t E, int64_t F, const float* s, const float* pe, const float* g,
                            float* ds, float* dg) {
  if (T * E <= 0) return;
  expert_scores_backward_kernel<<<grid_for(T * E * 32, kThreads), kThreads>>>(T * E, F, s, pe, g, ds, dg);
  DSMOE_CUDA_CHECK_LAUNCH("expert_scores_backward_kernel");
}

void rmsnorm_forward(int64_t rows, int64_t dim, const float* x, const float* w, float eps, float* y, float* rstd) {
  if (rows <= 0) return;
  rmsnorm_forward_kernel<<<blocks_for_rows(rows), kThreads>>>(rows, dim, x, w, eps, y, rstd);
  DSMOE_CUDA_CHECK_LAUNCH("rmsnorm_forward_kernel");
}

void rmsnorm_backward(int64_t rows, int64_t dim, const float* x, const float* w, const float* rstd, const float* dy,
                      float* dx, float* dw, bool accumulate_dw) {
  if (dim <= 0) return;
  // dw first: dx may alias dy or x (as on the CPU). The same stream orders the two kernels.
  rmsnorm_backward_dw_kernel<<<grid_for(dim, kThreads), kThreads>>>(rows, dim, x, rstd, dy, dw, accumulate_dw);
  DSMOE_CUDA_CHECK_LAUNCH("rmsnorm_backward_dw_kernel");
  if (rows > 0) {
    rmsnorm_backward_dx_kernel<<<blocks_for_rows(rows), kThreads>>>(rows, dim, x, w, rstd, dy, dx);
    DSMOE_CUDA_CHECK_LAUNCH("rmsnorm_backward_dx_kernel");
  }
}

void rope_forward(int64_t rows, int64_t heads, int64_t head_dim, double theta, const int32_t* positions,
                  const float* x, float* out) {
  const int64_t n = rows * heads * head_dim;
  if (n <= 0) return;
  rope_kernel<<<grid_for(n / 2, kThreads), kThreads>>>(rows, heads, head_dim, theta, positions, x, out, 1.0);
  DSMOE_CUDA_CHECK_LAUNCH("rope_kernel");
}

void rope_backward(int64_t rows, int64_t heads, int64_t head_dim, double theta, const int32_t* positions,
                   const float* dy, float* dx) {
  const int64_t n = rows * heads * head_dim;
  if (n <= 0) return;
  rope_kernel<<<grid_for(n / 2, kThreads), kThreads>>>(rows, heads, head_dim, theta, positions, dy, dx, -1.0);
  DSMOE_CUDA_CHECK_LAUNCH("rope_kernel (backward)");
}

void gelu_forward(int64_t n, const float* x, float* y, bool tanh_approx) {
  if (n <= 0) return;
  gelu_forward_kernel<<<grid_for(n, kThreads), kThreads>>>(n, x, y, tanh_approx);
  DSMOE_CUDA_CHECK_LAUNCH("gelu_forward_kernel");
}

void gelu_backward(int64_t n, const float* x, const float* dy, float* dx, bool tanh_approx) {
  if (n <= 0) return;
  gelu_backward_kernel<<<grid_for(n, kThreads), kThreads>>>(n, x, dy, dx, tanh_approx);
  DSMOE_CUDA_CHECK_LAUNCH("gelu_backward_kernel");
}

double cross_entropy(int64_t rows, int64_t vocab, const float* logits, const int32_t* targets, float* dlogits,
                     float* losses, float grad_scale) {
  if (rows <= 0) return 0.0;
  // scratch: [0] = n_valid, [1] = the mean, [2..2+rows) = row losses; g in its own float.
  ScratchBuffer<double> scratch(rows + 2);
  ScratchBuffer<float> g(1);
  double* n_valid = scratch.get();
  double* mean = scratch.get() + 1;
  double* row_loss = scratch.get() + 2;
  cross_entropy_count_kernel<<<1, kThreads>>>(rows, targets, grad_scale, g.get(), n_valid);
  DSMOE_CUDA_CHECK_LAUNCH("cross_entropy_count_kernel");
  cross_entropy_kernel<<<blocks_for_rows(rows), kThreads>>>(rows, vocab, logits, targets, dlogits, losses, row_loss,
                                                            g.get());
  DSMOE_CUDA_CHECK_LAUNCH("cross_entropy_kernel");
  reduce_sum_kernel<<<1, 1024>>>(rows, row_loss, n_valid, mean);
  DSMOE_CUDA_CHECK_LAUNCH("reduce_sum_kernel");
  double out = 0;
  DSMOE_CUDA_CHECK(cudaMemcpy(&out, mean, sizeof(double), cudaMemcpyDeviceToHost));  // the op returns it: waits
  return out;
}

void adamw_update(int64_t n, float* param, const float* grad, float* m, float* v, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int64_t step) {
  if (n <= 0) return;
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  const float inv_bc1 = static_cast<float>(1.0 / bc1);
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  adamw_kernel<<<grid_for(n, kThreads), kThreads>>>(n, param, grad, m, v, lr, beta1, beta2, eps, weight_decay,
                                                    inv_bc1, inv_sqrt_bc2);
  DSMOE_CUDA_CHECK_LAUNCH("adamw_kernel");
}

double sum_squares(int64_t n, const float* x) {
  if (n <= 0) return 0.0;
  const int64_t blocks = (n + kSumChunk - 1) / kSumChunk;
  if (blocks > 2147483647LL) throw std::runtime_error("sum_squares: too many elements");
  ScratchBuffer<double> partial(blocks + 1);
  sum_squares_partial_kernel<<<static_cast<unsigned>(blocks), kThreads>>>(n, x, partial.get());
  DSMOE_CUDA_CHECK_LAUNCH("sum_squares_partial_kernel");
  reduce_sum_kernel<<<1, 1024>>>(blocks, partial.get(), nullptr, partial.get() + blocks);
  DSMOE_CUDA_CHECK_LAUNCH("reduce_sum_kernel");
  double out = 0;
  DSMOE_CUDA_CHECK(cudaMemcpy(&out, partial.get() + blocks, sizeof(double), cudaMemcpyDeviceToHost));  // waits
  return out;
}

void scale_inplace(int64_t n, float* x, float s) {
  if (n <= 0) return;
  scale_kernel<<<grid_for(n, kThreads), kThreads>>>(n, x, s);
  DSMOE_CUDA_CHECK_LAUNCH("scale_kernel");
}

void add_inplace(int64_t n, float* y, const float* x) {
  if (n <= 0) return;
  add_kernel<<<grid_for(n, kThreads), kThreads>>>(n, y, x);
  DSMOE_CUDA_CHECK_LAUNCH("add_kernel");
}

void scale_rows(int64_t rows, int64_t cols, const float* x, int64_t ldx, const float* scale, int64_t scale_stride,
                float* out) {
  if (rows <= 0 || cols <= 0) return;
  scale_rows_kernel<<<grid_for(rows * cols, kThreads), kThreads>>>(rows, cols, x, ldx, scale, scale_stride, out);
  DSMOE_CUDA_CHECK_LAUNCH("scale_rows_kernel");
}

void fill(int64_t n, float* x, float value) {
  if (n <= 0) return;
  fill_kernel<<<grid_for(n, kThreads), kThreads>>>(n, x, value);
  DSMOE_CUDA_CHECK_LAUNCH("fill_kernel");
}

void offset_indices(int64_t n, int32_t* x, int32_t delta) {
  if (n <= 0 || delta == 0) return;
  offset_indices_kernel<<<grid_for(n, kThreads), kThreads>>>(n, x, delta);
  DSMOE_CUDA_CHECK_LAUNCH("offset_indices_kernel");
}

void embedding_forward(int64_t N, int64_t D, const int32_t* tokens, const void* table, bool table_bf16, float* out) {
  if (N <= 0 || D <= 0) return;
  embedding_forward_kernel<<<grid_for(N * D, kThreads), kThreads>>>(N, D, tokens, table, table_bf16, out);
  DSMOE_CUDA_CHECK_LAUNCH("embedding_forward_kernel");
}

void embedding_backward(int64_t N, int64_t D, const int32_t* tokens, const float* dy, float* dtable) {
  if (N <= 0 || D <= 0) return;
  embedding_backward_kernel<<<grid_for(N * D, kThreads), kThreads>>>(N, D, tokens, dy, dtable);
  DSMOE_CUDA_CHECK_LAUNCH("embedding_backward_kernel");
}

void router_statistics(int64_t T, int64_t E, const float* probs, double* prob_sum, double* entropy_sum) {
  if (T <= 0 || E <= 0) return;
  // scratch: [0, E) column sums, [E] the entropy total, [E+1, E+1+T) per-token entropies.
  ScratchBuffer<double> scratch(E + 1 + T);
  column_sum_kernel<<<grid_for(E, kThreads), kThreads>>>(T, E, probs, scratch.get());
  DSMOE_CUDA_CHECK_LAUNCH("column_sum_kernel");
  row_entropy_kernel<<<grid_for(T, kThreads), kThreads>>>(T, E, probs, scratch.get() + E + 1);
  DSMOE_CUDA_CHECK_LAUNCH("row_entropy_kernel");
  reduce_sum_kernel<<<1, 1024>>>(T, scratch.get() + E + 1, nullptr, scratch.get() + E);
  DSMOE_CUDA_CHECK_LAUNCH("reduce_sum_kernel");
  std::vector<double> host(static_cast<size_t>(E + 1));
  DSMOE_CUDA_CHECK(cudaMemcpy(host.data(), scratch.get(), static_cast<size_t>(E + 1) * sizeof(double),
                              cudaMemcpyDeviceToHost));  // host outputs: waits
  for (int64_t e = 0; e < E; ++e) prob_sum[e] += host[static_cast<size_t>(e)];
  *entropy_sum += host[static_cast<size_t>(E)];
}

cpu::MiLossValue mi_loss(int64_t T, int64_t E, const float* probs, double grad_scale, float* dprobs,
                         bool accumulate) {
  cpu::MiLossValue v;
  if (T <= 0 || E <= 0) return v;
  // scratch: [0, E) column sums, [E] the entropy total, [E+1, E+1+T) per-token entropies.
  ScratchBuffer<double> scratch(E + 1 + T);
  column_sum_kernel<<<grid_for(E, kThreads), kThreads>>>(T, E, probs, scratch.get());
  DSMOE_CUDA_CHECK_LAUNCH("column_sum_kernel");
  row_entropy_kernel<<<grid_for(T, kThreads), kThreads>>>(T, E, probs, scratch.get() + E + 1);
  DSMOE_CUDA_CHECK_LAUNCH("row_entropy_kernel");
  reduce_sum_kernel<<<1, 1024>>>(T, scratch.get() + E + 1, nullptr, scratch.get() + E);
  DSMOE_CUDA_CHECK_LAUNCH("reduce_sum_kernel");
  if (dprobs) {
    mi_grad_kernel<<<grid_for(T * E, kThreads), kThreads>>>(T, E, probs, scratch.get(),
                                                            grad_scale / static_cast<double>(T), dprobs, accumulate);
    DSMOE_CUDA_CHECK_LAUNCH("mi_grad_kernel");
  }
  std::vector<double> host(static_cast<size_t>(E + 1));
  DSMOE_CUDA_CHECK(cudaMemcpy(host.data(), scratch.get(), static_cast<size_t>(E + 1) * sizeof(double),
                              cudaMemcpyDeviceToHost));  // the op returns the loss: waits
  for (int64_t e = 0; e < E; ++e) {
    const double pe = host[static_cast<size_t>(e)] / static_cast<double>(T);
    if (pe > 0) v.h_e -= pe * std::log(pe);
  }
  v.h_e_given_x = host[static_cast<size_t>(E)] / static_cast<double>(T);
  v.loss = -v.h_e + v.h_e_given_x;
  return v;
}

double switch_loss(int64_t T, int64_t E, const float* probs, const int32_t* pair_expert, int64_t P,
                   double grad_scale, float* dprobs, bool accumulate) {
  if (E <= 0) return 0.0;
  ScratchBuffer<unsigned long long> count(E);
  ScratchBuffer<double> col(E);
  DSMOE_CUDA_CHECK(cudaMemsetAsync(count.get(), 0, static_cast<size_t>(E) * sizeof(unsigned long long), 0));
  DSMOE_CUDA_CHECK(cudaMemsetAsync(col.get(), 0, static_cast<size_t>(E) * sizeof(double), 0));
  if (P > 0) {
    expert_count_kernel<<<grid_for(P, kThreads), kThreads>>>(P, pair_expert, count.get());
    DSMOE_CUDA_CHECK_LAUNCH("expert_count_kernel");
  }
  if (T > 0) {
    column_sum_kernel<<<grid_for(E, kThreads), kThreads>>>(T, E, probs, col.get());
    DSMOE_CUDA_CHECK_LAUNCH("column_sum_kernel");
    if (dprobs) {
      const double scale = grad_scale * static_cast<double>(E) / static_cast<double>(T);
      switch_grad_kernel<<<grid_for(T * E, kThreads), kThreads>>>(T, E, P, count.get(), scale, dprobs, accumulate);
      DSMOE_CUDA_CHECK_LAUNCH("switch_grad_kernel");
    }
  }
  std::vector<unsigned long long> hc(static_cast<size_t>(E));
  std::vector<double> hp(static_cast<size_t>(E));
  DSMOE_CUDA_CHECK(cudaMemcpy(hc.data(), count.get(), static_cast<size_t>(E) * sizeof(unsigned long long),
                              cudaMemcpyDeviceToHost));  // the op returns the loss: waits
  DSMOE_CUDA_CHECK(cudaMemcpy(hp.data(), col.get(), static_cast<size_t>(E) * sizeof(double), cudaMemcpyDeviceToHost));
  double loss = 0;
  for (int64_t e = 0; e < E; ++e) {
    const double f = P > 0 ? static_cast<double>(hc[static_cast<size_t>(e)]) / static_cast<double>(P) : 0.0;
    loss += f * (T > 0 ? hp[static_cast<size_t>(e)] / static_cast<double>(T) : 0.0);
  }
  return loss * static_cast<double>(E);
}

}  // namespace dev

}  // namespace dsmoe::cuda

// Routing, norms, RoPE, GELU, cross-entropy and AdamW on the device: the CUDA counterparts of
// kernels/cpu/routing.h and kernels/cpu/nn.h, with the same contracts (see those headers). Sums
// that the CPU kernels take in double are taken in double here too; every output element is
// written by one thread in a fixed order, so results do not depend on scheduling.
#include <cfloat>
#include <cmath>
#include <vector>

#include "../../cuda/device.h"

namespace dsmoe::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t gtid() { return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; }
__device__ __forceinline__ int64_t gstride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

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

__device__ __forceinline__ float rank_key(float s) { return isnan(s) ? -INFINITY : s; }

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
  const int64_t L = E * chunks;
  const int tid = threadIdx.x, nt = blockDim.x;
  const int64_t seg = (L + nt - 1) / nt, b = tid * seg, e = min(L, b + seg);
  int32_t s = 0;
  for (int64_t i = b; i < e; ++i) s += counts[i];
  sums[tid] = s;
  __syncthreads();
  for (int o = 1; o < nt; o <<= 1) {  // Hillis-Steele inclusive scan of the thread sums
    const int32_t v = tid >= o ? sums[tid - o] : 0;
    __syncthreads();
    sums[tid] += v;
    __syncthreads();
  }
  int32_t run = tid > 0 ? sums[tid - 1] : 0;
  for (int64_t i = b; i < e; ++i) {
    const int32_t v = counts[i];
    counts[i] = run;
    run += v;
  }
  __syncthreads();
  for (int64_t x = tid; x < E; x += nt) offsets[x] = counts[x * chunks];
  if (tid == 0) offsets[E] = static_cast<int32_t>(P);
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
      o += pair_weight[p] * yg[static_cast<int64_t>(position[p]) * N + n];
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
__global__ void rope_kernel(int64_t rows, int64_t heads, int64_t head_dim, double theta, const int32_t* positions,
                            const float* x, float* out) {
  const int64_t half = head_dim / 2;
  for (int64_t idx = gtid(); idx < rows * heads * half; idx += gstride()) {
    const int64_t i = idx % half, rh = idx / half, r = rh / heads;
    const double inv_freq = pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    const double a = static_cast<double>(positions[r]) * inv_freq;
    double sn, cs;
    sincos(a, &sn, &cs);
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

// One block per row; row_loss in double for the mean, summed on the host in row order.
__global__ void cross_entropy_kernel(int64_t rows, int64_t vocab, const float* logits, const int32_t* targets,
                                     float* dlogits, float* losses, double* row_loss, float g) {
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
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) mx = fmaxf(mx, l[j]);
    mx = block_max(mx);
    double sum = 0;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) sum += expf(l[j] - mx);
    sum = block_sum(sum);
    if (threadIdx.x == 0) {
      const double loss = static_cast<double>(mx) + log(sum) - static_cast<double>(l[t]);
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

unsigned blocks_for_rows(int64_t rows) { return static_cast<unsigned>(rows < 65535 * 16 ? (rows > 0 ? rows : 1) : 65535 * 16); }

}  // namespace

// ---- host entry points (copy in, run, copy out) --------------------------------------------------

void router_softmax(int64_t T, int64_t E, const float* logits, float* probs) {
  require_device();
  if (T * E == 0) return;
  DeviceBuffer<float> dl(logits, T * E), dp(T * E);
  router_softmax_kernel<<<grid_for(T * 32, kThreads), kThreads>>>(T, E, dl.get(), dp.get());
  DSMOE_CUDA_CHECK_LAUNCH("router_softmax_kernel");
  dp.download(probs, T * E);
}

void route_topk(int64_t T, int64_t E, const float* probs, int64_t k, int32_t* pair_token, int32_t* pair_expert,
                float* pair_weight) {
  require_device();
  if (T == 0) return;
  DeviceBuffer<float> dp(probs, T * E), dw(T * k);
  DeviceBuffer<int32_t> dt(T * k), de(T * k);
  route_topk_kernel<<<grid_for(T * E, kThreads), kThreads>>>(T, E, dp.get(), k, dt.get(), de.get(), dw.get());
  DSMOE_CUDA_CHECK_LAUNCH("route_topk_kernel");
  dt.download(pair_token, T * k);
  de.download(pair_expert, T * k);
  dw.download(pair_weight, T * k);
}

void group_by_expert(int64_t P, int64_t E, const int32_t* pair_expert, int32_t* offsets, int32_t* order,
                     int32_t* position) {
  require_device();
  if (P == 0) {
    for (int64_t e = 0; e <= E; ++e) offsets[e] = 0;
    return;
  }
  const int64_t chunks = (P + kChunk - 1) / kChunk;
  DeviceBuffer<int32_t> de(pair_expert, P), counts(E * chunks), local(P), doff(E + 1), dord(P), dpos(P);
  counts.zero();
  group_count_kernel<<<static_cast<unsigned>(chunks), kChunk>>>(P, chunks, de.get(), counts.get(), local.get());
  DSMOE_CUDA_CHECK_LAUNCH("group_count_kernel");
  group_scan_kernel<<<1, 1024>>>(E, chunks, P, counts.get(), doff.get());
  DSMOE_CUDA_CHECK_LAUNCH("group_scan_kernel");
  group_scatter_kernel<<<grid_for(P, kThreads), kThreads>>>(P, chunks, de.get(), counts.get(), local.get(),
                                                            dord.get(), dpos.get());
  DSMOE_CUDA_CHECK_LAUNCH("group_scatter_kernel");
  doff.download(offsets, E + 1);
  dord.download(order, P);
  dpos.download(position, P);
}

void gather_rows(int64_t T, int64_t P, int64_t D, const float* x, const int32_t* pair_token, const int32_t* order,
                 float* xg) {
  require_device();
  if (P * D == 0) return;
  DeviceBuffer<float> dx(x, T * D), dxg(P * D);
  DeviceBuffer<int32_t> dt(pair_token, P), dord(order, P);
  gather_rows_kernel<<<grid_for(P * D, kThreads), kThreads>>>(P, D, dx.get(), dt.get(), dord.get(), dxg.get());
  DSMOE_CUDA_CHECK_LAUNCH("gather_rows_kernel");
  dxg.download(xg, P * D);
}

void combine(int64_t T, int64_t P, int64_t N, const float* yg, const int32_t* pair_token, const float* pair_weight,
             const int32_t* position, float* y, float beta) {
  require_device();
  if (T * N == 0) return;
  DeviceBuffer<float> dyg(yg, P * N), dw(pair_weight, P), dy(T * N);
  DeviceBuffer<int32_t> dt(pair_token, P), dpos(position, P);
  if (beta != 0.f) dy.upload(y, T * N);
  combine_kernel<<<grid_for(T * N, kThreads), kThreads>>>(T, P, N, dyg.get(), dt.get(), dw.get(), dpos.get(),
                                                          dy.get(), beta);
  DSMOE_CUDA_CHECK_LAUNCH("combine_kernel");
  dy.download(y, T * N);
}

void rmsnorm_forward(int64_t rows, int64_t dim, const float* x, const float* w, float eps, float* y, float* rstd) {
  require_device();
  if (rows == 0) return;
  DeviceBuffer<float> dx(x, rows * dim), dw(w, dim), dy(rows * dim), dr(rstd ? rows : 0);
  rmsnorm_forward_kernel<<<blocks_for_rows(rows), kThreads>>>(rows, dim, dx.get(), dw.get(), eps, dy.get(),
                                                              rstd ? dr.get() : nullptr);
  DSMOE_CUDA_CHECK_LAUNCH("rmsnorm_forward_kernel");
  dy.download(y, rows * dim);
  if (rstd) dr.download(rstd, rows);
}

void rmsnorm_backward(int64_t rows, int64_t dim, const float* x, const float* w, const float* rstd, const float* dy,
                      float* dx, float* dw, bool accumulate_dw) {
  require_device();
  DeviceBuffer<float> dX(x, rows * dim), dW(w, dim), dR(rstd, rows), dDY(dy, rows * dim), dDX(rows * dim), dDW(dim);
  if (accumulate_dw) dDW.upload(dw, dim);
  if (rows > 0) {
    rmsnorm_backward_dx_kernel<<<blocks_for_rows(rows), kThreads>>>(rows, dim, dX.get(), dW.get(), dR.get(),
                                                                    dDY.get(), dDX.get());
    DSMOE_CUDA_CHECK_LAUNCH("rmsnorm_backward_dx_kernel");
  }
  rmsnorm_backward_dw_kernel<<<grid_for(dim, kThreads), kThreads>>>(rows, dim, dX.get(), dR.get(), dDY.get(),
                                                                    dDW.get(), accumulate_dw);
  DSMOE_CUDA_CHECK_LAUNCH("rmsnorm_backward_dw_kernel");
  dDX.download(dx, rows * dim);
  dDW.download(dw, dim);
}

void rope_forward(int64_t rows, int64_t heads, int64_t head_dim, double theta, const int32_t* positions,
                  const float* x, float* out) {
  require_device();
  const int64_t n = rows * heads * head_dim;
  if (n == 0) return;
  DeviceBuffer<float> dx(x, n), dout(n);
  DeviceBuffer<int32_t> dpos(positions, rows);
  rope_kernel<<<grid_for(n / 2, kThreads), kThreads>>>(rows, heads, head_dim, theta, dpos.get(), dx.get(), dout.get());
  DSMOE_CUDA_CHECK_LAUNCH("rope_kernel");
  dout.download(out, n);
}

void gelu_forward(int64_t n, const float* x, float* y, bool tanh_approx) {
  require_device();
  if (n == 0) return;
  DeviceBuffer<float> dx(x, n), dy(n);
  gelu_forward_kernel<<<grid_for(n, kThreads), kThreads>>>(n, dx.get(), dy.get(), tanh_approx);
  DSMOE_CUDA_CHECK_LAUNCH("gelu_forward_kernel");
  dy.download(y, n);
}

void gelu_backward(int64_t n, const float* x, const float* dy, float* dx, bool tanh_approx) {
  require_device();
  if (n == 0) return;
  DeviceBuffer<float> dX(x, n), dDY(dy, n), dDX(n);
  gelu_backward_kernel<<<grid_for(n, kThreads), kThreads>>>(n, dX.get(), dDY.get(), dDX.get(), tanh_approx);
  DSMOE_CUDA_CHECK_LAUNCH("gelu_backward_kernel");
  dDX.download(dx, n);
}

double cross_entropy(int64_t rows, int64_t vocab, const float* logits, const int32_t* targets, float* dlogits,
                     float* losses, float grad_scale) {
  require_device();
  if (rows == 0) return 0.0;
  int64_t n_valid = 0;
  for (int64_t r = 0; r < rows; ++r) n_valid += targets[r] >= 0;
  const float g = n_valid > 0 ? static_cast<float>(static_cast<double>(grad_scale) / n_valid) : 0.f;
  DeviceBuffer<float> dl(logits, rows * vocab), dd(dlogits ? rows * vocab : 0), dlosses(losses ? rows : 0);
  DeviceBuffer<int32_t> dt(targets, rows);
  DeviceBuffer<double> drow(rows);
  cross_entropy_kernel<<<blocks_for_rows(rows), kThreads>>>(rows, vocab, dl.get(), dt.get(),
                                                            dlogits ? dd.get() : nullptr,
                                                            losses ? dlosses.get() : nullptr, drow.get(), g);
  DSMOE_CUDA_CHECK_LAUNCH("cross_entropy_kernel");
  std::vector<double> row(static_cast<size_t>(rows));
  drow.download(row.data(), rows);
  if (dlogits) dd.download(dlogits, rows * vocab);
  if (losses) dlosses.download(losses, rows);
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) total += row[r];
  return n_valid > 0 ? total / static_cast<double>(n_valid) : 0.0;
}

void adamw_update(int64_t n, float* param, const float* grad, float* m, float* v, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int64_t step) {
  require_device();
  if (n == 0) return;
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  const float inv_bc1 = static_cast<float>(1.0 / bc1);
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  DeviceBuffer<float> dp(param, n), dg(grad, n), dm(m, n), dv(v, n);
  adamw_kernel<<<grid_for(n, kThreads), kThreads>>>(n, dp.get(), dg.get(), dm.get(), dv.get(), lr, beta1, beta2, eps,
                                                    weight_decay, inv_bc1, inv_sqrt_bc2);
  DSMOE_CUDA_CHECK_LAUNCH("adamw_kernel");
  dp.download(param, n);
  dm.download(m, n);
  dv.download(v, n);
}

}  // namespace dsmoe::cuda

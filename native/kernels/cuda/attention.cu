// Fused causal attention forward for the MoA layout, the CUDA counterpart of cpu::attention_forward
// (kernels/cpu/attention.h): query head h uses kv head (h % H) / (H / G); the Tq queries sit at the
// last Tq of Tk positions (Tq = 1 is decode against a cache of Tk).
//
// Memory-efficient (flash-style): one block per (batch, head, 16 queries); 8 warps, 2 queries each.
// Keys and values stream through shared memory in tiles of 32; each lane scores one key of the tile
// against the warp's query (dot product over d from shared memory, K rows padded by one float so the
// 32 lanes hit 32 banks), then the online softmax updates the running max m, the sum l and the output
// accumulator (lane owns dimensions lane, lane + 32, ...; the weights are broadcast by shuffles). The
// T x T score matrix never exists. lse = m + log l, as the CPU kernel saves it for the backward.
// Tiles past the last position any query of the block may see are never loaded.
#include "../../cuda/device.h"
#include "device_ops.h"

namespace dsmoe::cuda {
namespace {

constexpr int kWarps = 8, kQPerWarp = 2, BQ = kWarps * kQPerWarp, BKV = 32;
constexpr int kMaxR = static_cast<int>(kMaxAttentionHeadDim / 32);  // output dims per lane

struct Shape {
  int64_t B, Tq, Tk, Hq, H, G, dh;
  float scale;
};

__global__ void __launch_bounds__(kWarps * 32) attention_forward_kernel(Shape s, const float* __restrict__ q,
                                                                         const float* __restrict__ k,
                                                                         const float* __restrict__ v,
                                                                         float* __restrict__ out,
                                                                         float* __restrict__ lse) {
  extern __shared__ float smem[];
  const int64_t dh = s.dh;
  float* Qs = smem;                  // [BQ][dh]
  float* Ks = Qs + BQ * dh;          // [BKV][dh + 1]
  float* Vs = Ks + BKV * (dh + 1);   // [BKV][dh]

  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * BQ, h = blockIdx.y, b = blockIdx.z;
  const int64_t g = (h % s.H) / (s.H / s.G);
  const int64_t offset = s.Tk - s.Tq;  // absolute position of query i is offset + i
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

  for (int64_t idx = tid; idx < BQ * dh; idx += blockDim.x) {
    const int64_t qi = q0 + idx / dh, d = idx % dh;
    Qs[idx] = qi < s.Tq ? q[((b * s.Tq + qi) * s.Hq + h) * dh + d] : 0.f;
  }

  float m[kQPerWarp], l[kQPerWarp], acc[kQPerWarp][kMaxR];
#pragma unroll
  for (int u = 0; u < kQPerWarp; ++u) {
    m[u] = -INFINITY;
    l[u] = 0.f;
#pragma unroll
    for (int r = 0; r < kMaxR; ++r) acc[u][r] = 0.f;
  }

  const int64_t last_q = min(q0 + BQ, s.Tq) - 1;
  const int64_t key_end = offset + last_q + 1;  // keys [0, key_end) are visible to some query here
  for (int64_t j0 = 0; j0 < key_end; j0 += BKV) {
    __syncthreads();  // Q loaded / the previous tile consumed
    for (int64_t idx = tid; idx < BKV * dh; idx += blockDim.x) {
      const int64_t j = idx / dh, d = idx % dh, key = j0 + j;
      const int64_t src = ((b * s.Tk + key) * s.G + g) * dh + d;
      Ks[j * (dh + 1) + d] = key < s.Tk ? k[src] : 0.f;
      Vs[j * dh + d] = key < s.Tk ? v[src] : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int u = 0; u < kQPerWarp; ++u) {
      const int qq = warp * kQPerWarp + u;
      const int64_t qi = q0 + qq;
      if (qi >= s.Tq) continue;  // warp-uniform
      const int64_t key = j0 + lane;
      float sc = -INFINITY;
      if (key <= offset + qi && key < s.Tk) {
        const float* qr = Qs + qq * dh;
        const float* kr = Ks + lane * (dh + 1);
        float dot = 0.f;
        for (int64_t d = 0; d < dh; ++d) dot += qr[d] * kr[d];
        sc = s.scale * dot;
      }
      float mt = sc;
      for (int o = 16; o > 0; o >>= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
      const float m_new = fmaxf(m[u], mt);
      if (m_new == -INFINITY) continue;  // nothing visible yet (cannot happen: key 0 is in the first tile)
      const float p = expf(sc - m_new);  // 0 for masked keys
      const float corr = expf(m[u] - m_new);
      float ps = p;
      for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
      l[u] = l[u] * corr + ps;
#pragma unroll
      for (int r = 0; r < kMaxR; ++r) acc[u][r] *= corr;
      for (int jj = 0; jj < BKV; ++jj) {
        const float pj = __shfl_sync(0xffffffffu, p, jj);
#pragma unroll
        for (int r = 0; r < kMaxR; ++r) {
          const int64_t d = lane + 32 * r;
          if (d < dh) acc[u][r] += pj * Vs[jj * dh + d];
        }
      }
      m[u] = m_new;
    }
  }

#pragma unroll
  for (int u = 0; u < kQPerWarp; ++u) {
    const int64_t qi = q0 + warp * kQPerWarp + u;
    if (qi >= s.Tq) continue;
    const float inv = 1.f / l[u];
    float* o = out + ((b * s.Tq + qi) * s.Hq + h) * dh;
#pragma unroll
    for (int r = 0; r < kMaxR; ++r) {
      const int64_t d = lane + 32 * r;
      if (d < dh) o[d] = acc[u][r] * inv;
    }
    if (lane == 0) lse[(b * s.Hq + h) * s.Tq + qi] = m[u] + logf(l[u]);
  }
}

// ---- backward (issue 14) ----------------------------------------------------------------------------
// The CPU kernel's two passes (kernels/cpu/attention_impl.inc), each output element owned by one warp
// that sums in a fixed order (no atomics: the same bits on every run):
//   dq:     warp per (b, h, query i): D_i = dO_i·O_i (saved for the second pass), then over the visible
//           keys in tiles of 32 (lane per key): P_ij = exp(scale·q_i·k_j − lse_i), dP_ij = dO_i·v_j,
//           w_j = scale·P_ij·(dP_ij − D_i); dq[d] = Σ_j w_j·k_j[d] (lane owns d = lane + 32r).
//   dk, dv: warp per (b, g, key j): over every query head of every expert that uses kv head g
//           (expert-major, as the CPU) and the queries that see key j, in tiles of 32 (lane per query):
//           dv[d] = Σ P_ij·dO_i[d], dk[d] = Σ scale·P_ij·(dP_ij − D_i)·q_i[d].
// Each P is recomputed from the saved lse, never stored. A query's dq depends only on its own row and
// its visible keys, so decode (tq = 1) gives the same bits as the last row of a full computation.
// The lane-per-key (-query) dot products read rows from global memory (L1/L2-cached); the vectors the
// warp shares (q_i and dO_i, or k_j and v_j) sit in shared memory. fp32 throughout, as the CPU.
constexpr int kBwdWarps = 8;

__global__ void __launch_bounds__(kBwdWarps * 32) attention_backward_dq_kernel(
    Shape s, const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const float* __restrict__ out, const float* __restrict__ lse, const float* __restrict__ dout,
    float* __restrict__ dq, float* __restrict__ dsum) {
  extern __shared__ float smem[];
  const int64_t dh = s.dh;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* qs = smem + static_cast<int64_t>(warp) * 2 * dh;  // this warp's q_i, then dO_i
  float* dos = qs + dh;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kBwdWarps + warp, h = blockIdx.y, b = blockIdx.z;
  if (i >= s.Tq) return;  // warp-uniform; no block-wide barrier below
  const int64_t g = (h % s.H) / (s.H / s.G);
  const int64_t r = ((b * s.Tq + i) * s.Hq + h) * dh;
  float di = 0.f;
  for (int64_t d = lane; d < dh; d += 32) {
    qs[d] = q[r + d];
    dos[d] = dout[r + d];
    di += dout[r + d] * out[r + d];
  }
  for (int o = 16; o > 0; o >>= 1) di += __shfl_xor_sync(0xffffffffu, di, o);
  __syncwarp();
  const int64_t li = (b * s.Hq + h) * s.Tq + i;
  if (lane == 0) dsum[li] = di;
  const float l = lse[li];
  const int64_t n = s.Tk - s.Tq + i + 1;  // visible keys
  float acc[kMaxR];
#pragma unroll
  for (int rr = 0; rr < kMaxR; ++rr) acc[rr] = 0.f;
  for (int64_t j0 = 0; j0 < n; j0 += 32) {
    const int64_t j = j0 + lane;
    float w = 0.f;
    if (j < n) {
      const float* kr = k + ((b * s.Tk + j) * s.G + g) * dh;
      const float* vr = v + ((b * s.Tk + j) * s.G + g) * dh;
      float sc = 0.f, dp = 0.f;
      for (int64_t d = 0; d < dh; ++d) {
        sc += qs[d] * kr[d];
        dp += dos[d] * vr[d];
      }
      const float p = expf(s.scale * sc - l);
      w = s.scale * p * (dp - di);
    }
    const int64_t valid = n - j0 < 32 ? n - j0 : 32;
    for (int jj = 0; jj < valid; ++jj) {
      const float wj = __shfl_sync(0xffffffffu, w, jj);
      const float* kr = k + ((b * s.Tk + j0 + jj) * s.G + g) * dh;
#pragma unroll
      for (int rr = 0; rr < kMaxR; ++rr) {
        const int64_t d = lane + 32 * rr;
        if (d < dh) acc[rr] += wj * kr[d];
      }
    }
  }
#pragma unroll
  for (int rr = 0; rr < kMaxR; ++rr) {
    const int64_t d = lane + 32 * rr;
    if (d < dh) dq[r + d] = acc[rr];
  }
}

__global__ void __launch_bounds__(kBwdWarps * 32) attention_backward_dkv_kernel(
    Shape s, const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const float* __restrict__ lse, const float* __restrict__ dout, const float* __restrict__ dsum,
    float* __restrict__ dk, float* __restrict__ dv) {
  extern __shared__ float smem[];
  const int64_t dh = s.dh;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* ks = smem + static_cast<int64_t>(warp) * 2 * dh;  // this warp's k_j, then v_j
  float* vs = ks + dh;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kBwdWarps + warp, g = blockIdx.y, b = blockIdx.z;
  if (j >= s.Tk) return;  // warp-uniform
  const int64_t kr = ((b * s.Tk + j) * s.G + g) * dh;
  for (int64_t d = lane; d < dh; d += 32) {
    ks[d] = k[kr + d];
    vs[d] = v[kr + d];
  }
  __syncwarp();
  const int64_t offset = s.Tk - s.Tq;
  const int64_t i_first = j - offset > 0 ? j - offset : 0;  // queries at absolute position >= j see key j
  const int64_t group = s.H / s.G, experts = s.Hq / s.H;
  float adk[kMaxR], adv[kMaxR];
#pragma unroll
  for (int rr = 0; rr < kMaxR; ++rr) adk[rr] = adv[rr] = 0.f;
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t h = e * s.H + g * group; h < e * s.H + (g + 1) * group; ++h)
      for (int64_t i0 = i_first; i0 < s.Tq; i0 += 32) {
        const int64_t i = i0 + lane;
        float pv = 0.f, w = 0.f;
        if (i < s.Tq) {
          const int64_t r = ((b * s.Tq + i) * s.Hq + h) * dh, li = (b * s.Hq + h) * s.Tq + i;
          float sc = 0.f, dp = 0.f;
          for (int64_t d = 0; d < dh; ++d) {
            sc += q[r + d] * ks[d];
            dp += dout[r + d] * vs[d];
          }
          pv = expf(s.scale * sc - lse[li]);
          w = s.scale * pv * (dp - dsum[li]);
        }
        const int64_t valid = s.Tq - i0 < 32 ? s.Tq - i0 : 32;
        for (int ii = 0; ii < valid; ++ii) {
          const float pj = __shfl_sync(0xffffffffu, pv, ii), wj = __shfl_sync(0xffffffffu, w, ii);
          const int64_t r = ((b * s.Tq + i0 + ii) * s.Hq + h) * dh;
#pragma unroll
          for (int rr = 0; rr < kMaxR; ++rr) {
            const int64_t d = lane + 32 * rr;
            if (d < dh) {
              adv[rr] += pj * dout[r + d];
              adk[rr] += wj * q[r + d];
            }
          }
        }
      }
#pragma unroll
  for (int rr = 0; rr < kMaxR; ++rr) {
    const int64_t d = lane + 32 * rr;
    if (d < dh) {
      dk[kr + d] = adk[rr];
      dv[kr + d] = adv[rr];
    }
  }
}

}  // namespace

namespace dev {

void attention_forward(const AttentionShape& sh, const float* q, const float* k, const float* v, float* out,
                       float* lse) {
  const Shape s{sh.batch, sh.tq, sh.tk, sh.n_heads_total, sh.heads_per_expert, sh.kv_heads, sh.head_dim, sh.scale};
  if (s.B * s.Tq * s.Hq * s.dh <= 0) return;
  if (s.dh > kMaxAttentionHeadDim) throw std::runtime_error("attention: head_dim > 256 is not supported on CUDA");
  if (s.Hq > 65535 || s.B > 65535) throw std::runtime_error("attention: more than 65535 heads or batches");
  const size_t smem = static_cast<size_t>(BQ * s.dh + BKV * (s.dh + 1) + BKV * s.dh) * sizeof(float);
  if (smem > 48 * 1024)
    DSMOE_CUDA_CHECK(cudaFuncSetAttribute(attention_forward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>((s.Tq + BQ - 1) / BQ), static_cast<unsigned>(s.Hq),
                  static_cast<unsigned>(s.B));
  attention_forward_kernel<<<grid, kWarps * 32, smem>>>(s, q, k, v, out, lse);
  DSMOE_CUDA_CHECK_LAUNCH("attention_forward_kernel");
}

void attention_backward(const AttentionShape& sh, const float* q, const float* k, const float* v, const float* out,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv) {
  const Shape s{sh.batch, sh.tq, sh.tk, sh.n_heads_total, sh.heads_per_expert, sh.kv_heads, sh.head_dim, sh.scale};
  if (s.B * s.Tk * s.G * s.dh <= 0) return;
  if (s.dh > kMaxAttentionHeadDim) throw std::runtime_error("attention: head_dim > 256 is not supported on CUDA");
  if (s.Hq > 65535 || s.B > 65535) throw std::runtime_error("attention: more than 65535 heads or batches");
  const size_t smem = static_cast<size_t>(kBwdWarps) * 2 * s.dh * sizeof(float);  // <= 16 KiB
  ScratchBuffer<float> dsum(s.B * s.Hq * s.Tq);  // D_i = dO_i·O_i per (b, h, i), from pass 1 to pass 2
  if (s.Tq > 0) {
    const dim3 grid(static_cast<unsigned>((s.Tq + kBwdWarps - 1) / kBwdWarps), static_cast<unsigned>(s.Hq),
                    static_cast<unsigned>(s.B));
    attention_backward_dq_kernel<<<grid, kBwdWarps * 32, smem>>>(s, q, k, v, out, lse, dout, dq, dsum.get());
    DSMOE_CUDA_CHECK_LAUNCH("attention_backward_dq_kernel");
  }
  const dim3 grid(static_cast<unsigned>((s.Tk + kBwdWarps - 1) / kBwdWarps), static_cast<unsigned>(s.G),
                  static_cast<unsigned>(s.B));
  attention_backward_dkv_kernel<<<grid, kBwdWarps * 32, smem>>>(s, q, k, v, lse, dout, dsum.get(), dk, dv);
  DSMOE_CUDA_CHECK_LAUNCH("attention_backward_dkv_kernel");
}

}  // namespace dev

}  // namespace dsmoe::cuda

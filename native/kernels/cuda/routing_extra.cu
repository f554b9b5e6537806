// The routings whose pair count depends on the data (issue 14): threshold, threshold-top-k and the
// training mask's compaction, the CUDA counterparts of cpu::route_threshold, cpu::route_threshold_topk
// and CpuBackend::mask_scores (same contracts: kernels/cpu/routing.h, backend/backend.h).
//
// Each is a device compaction in three steps, all on stream 0 with no host round trip until the end:
//   1. a count per token (thread per token, over its E experts);
//   2. an exclusive prefix sum of the counts in one block (int64; also writes the total);
//   3. the pairs written at each token's start.
// Only the total (P, or the sum of the threshold counts for threshold-top-k's K) is read back: the op
// returns it, so it waits for its own kernels. Results are exact and do not depend on scheduling:
// counts and scans are integers, and the pair order is decided per token by rank (descending score,
// ties to the lower expert index, NaN below every number), as cpu::route_topk's partial sort does.
#include <cmath>

#include "../../cuda/device.h"
#include "device_common.cuh"
#include "device_ops.h"

namespace dsmoe::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kScanThreads = 1024;

using common::gstride;
using common::gtid;
using common::rank_key;

// count[t] = #{e : E·S_e > eps} (in double, exact: an fp32 value times an integer < 2^31), at least 1.
// NaN never passes (the comparison is false).
__global__ void threshold_count_kernel(int64_t T, int64_t E, const float* probs, double eps, int64_t* count) {
  for (int64_t t = gtid(); t < T; t += gstride()) {
    const float* p = probs + t * E;
    int64_t c = 0;
    for (int64_t e = 0; e < E; ++e) c += static_cast<double>(E) * static_cast<double>(p[e]) > eps;
    count[t] = c > 0 ? c : 1;
  }
}

// In place: x[i] = Σ_{j<i} x[j] (exclusive), *total = Σ x; one block of kScanThreads.
__global__ void __launch_bounds__(kScanThreads) exclusive_scan_kernel(int64_t n, int64_t* x, int64_t* total) {
  __shared__ int64_t sums[kScanThreads];
  const int64_t t = common::block_exclusive_scan(n, x, sums);
  if (threadIdx.x == 0) *total = t;
}

// Thread per (token, expert): its rank among the token's experts; ranks < m (the token's pair count,
// start[t+1] − start[t]) are written at start[t] + rank. The threshold set of a token is exactly its
// best m experts (E·S_e > eps is monotone in S_e; equal scores pass or fail together).
__global__ void threshold_emit_kernel(int64_t T, int64_t E, const float* probs, const int64_t* start,
                                      const int64_t* total, int32_t* pair_token, int32_t* pair_expert,
                                      float* pair_weight) {
  for (int64_t i = gtid(); i < T * E; i += gstride()) {
    const int64_t t = i / E, e = i % E;
    const int64_t m = (t + 1 < T ? start[t + 1] : *total) - start[t];
    const float* p = probs + t * E;
    const float ke = rank_key(p[e]);
    int64_t rank = 0;
    for (int64_t f = 0; f < E && rank < m; ++f) {
      const float kf = rank_key(p[f]);
      rank += (kf > ke || (kf == ke && f < e));
    }
    if (rank < m) {
      const int64_t o = start[t] + rank;
      pair_token[o] = static_cast<int32_t>(t);
      pair_expert[o] = static_cast<int32_t>(e);
      pair_weight[o] = p[e];
    }
  }
}

// count[t] = the mask's experts of token t.
__global__ void mask_count_kernel(int64_t T, int64_t E, const uint8_t* mask, int64_t* count) {
  for (int64_t t = gtid(); t < T; t += gstride()) {
    int64_t c = 0;
    for (int64_t e = 0; e < E; ++e) c += mask[t * E + e] != 0;
    count[t] = c;
  }
}

// Thread per token: ds = 0 off the mask; the mask's experts, ascending, from start[t].
__global__ void mask_emit_kernel(int64_t T, int64_t E, const uint8_t* mask, const int64_t* start, float* ds,
                                 int32_t* pair_expert) {
  for (int64_t t = gtid(); t < T; t += gstride()) {
    int64_t o = start[t];
    for (int64_t e = 0; e < E; ++e) {
      if (mask[t * E + e]) pair_expert[o++] = static_cast<int32_t>(e);
      else ds[t * E + e] = 0.f;
    }
  }
}

// counts [T] -> exclusive starts in place; returns the total (waits for it).
int64_t scan_and_read_total(int64_t T, int64_t* counts, int64_t* total) {
  exclusive_scan_kernel<<<1, kScanThreads>>>(T, counts, total);
  DSMOE_CUDA_CHECK_LAUNCH("exclusive_scan_kernel");
  int64_t host = 0;
  DSMOE_CUDA_CHECK(cudaMemcpy(&host, total, sizeof(int64_t), cudaMemcpyDeviceToHost));
  return host;
}

}  // namespace

namespace dev {

int64_t route_threshold(int64_t T, int64_t E, const float* probs, double eps, int32_t* pair_token,
                        int32_t* pair_expert, float* pair_weight) {
  if (T <= 0 || E <= 0) return 0;
  ScratchBuffer<int64_t> start(T + 1);  // counts, then starts; start[T] holds the total
  int64_t* total = start.get() + T;
  threshold_count_kernel<<<grid_for(T, kThreads), kThreads>>>(T, E, probs, eps, start.get());
  DSMOE_CUDA_CHECK_LAUNCH("threshold_count_kernel");
  exclusive_scan_kernel<<<1, kScanThreads>>>(T, start.get(), total);
  DSMOE_CUDA_CHECK_LAUNCH("exclusive_scan_kernel");
  threshold_emit_kernel<<<grid_for(T * E, kThreads), kThreads>>>(T, E, probs, start.get(), total, pair_token,
                                                                 pair_expert, pair_weight);
  DSMOE_CUDA_CHECK_LAUNCH("threshold_emit_kernel");
  int64_t P = 0;  // after the emit kernel (same stream): the op's pairs are final when it returns
  DSMOE_CUDA_CHECK(cudaMemcpy(&P, total, sizeof(int64_t), cudaMemcpyDeviceToHost));
  return P;
}

int64_t route_threshold_topk(int64_t T, int64_t E, const float* probs, double eps, int32_t* pair_token,
                             int32_t* pair_expert, float* pair_weight) {
  if (T <= 0) return 1;  // cpu: K = 1 when T = 0
  if (E <= 0) return 0;
  int64_t sum = 0;
  {
    ScratchBuffer<int64_t> counts(T + 1);
    threshold_count_kernel<<<grid_for(T, kThreads), kThreads>>>(T, E, probs, eps, counts.get());
    DSMOE_CUDA_CHECK_LAUNCH("threshold_count_kernel");
    sum = scan_and_read_total(T, counts.get(), counts.get() + T);
  }
  // round(sum / T), half up, clamped to [1, E]: cpu::route_threshold_topk's integer formula.
  int64_t K = (2 * sum + T) / (2 * T);
  K = K < 1 ? 1 : (K > E ? E : K);
  route_topk(T, E, probs, K, pair_token, pair_expert, pair_weight);
  return K;
}

int64_t mask_scores(int64_t T, int64_t E, const uint8_t* mask, float* ds, int32_t* pair_expert) {
  if (T <= 0 || E <= 0) return 0;
  ScratchBuffer<int64_t> start(T + 1);
  mask_count_kernel<<<grid_for(T, kThreads), kThreads>>>(T, E, mask, start.get());
  DSMOE_CUDA_CHECK_LAUNCH("mask_count_kernel");
  exclusive_scan_kernel<<<1, kScanThreads>>>(T, start.get(), start.get() + T);
  DSMOE_CUDA_CHECK_LAUNCH("exclusive_scan_kernel");
  mask_emit_kernel<<<grid_for(T, kThreads), kThreads>>>(T, E, mask, start.get(), ds, pair_expert);
  DSMOE_CUDA_CHECK_LAUNCH("mask_emit_kernel");
  int64_t P = 0;
  DSMOE_CUDA_CHECK(cudaMemcpy(&P, start.get() + T, sizeof(int64_t), cudaMemcpyDeviceToHost));
  return P;
}

}  // namespace dev
}  // namespace dsmoe::cuda

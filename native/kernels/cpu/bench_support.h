// Yardsticks for benchmarks (not used by the model): the machine's FMA peak and a naive GEMM.
#pragma once
#include <cstdint>

namespace dsmoe::cpu {

// fp32 FLOP/s of a register-only FMA loop on `threads` threads for about `seconds`: the ceiling
// any GEMM can reach on this machine with the active ISA.
double measure_fma_peak(int threads, double seconds);

// The plain triple loop C[m,n] = A[m,k]·B[n,k]ᵀ (single thread), for scale in benchmark tables.
void naive_gemm_nt(int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c);

// Streaming-read bandwidth in bytes/s: sums `bytes` of memory on `threads` threads, best of `reps`.
double measure_read_bandwidth(int64_t bytes, int threads, int reps);

}  // namespace dsmoe::cpu

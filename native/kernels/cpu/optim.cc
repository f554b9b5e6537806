// AdamW and the pieces of global gradient-norm clipping (nn.h).
#include <cmath>
#include <vector>

#include "nn.h"
#include "nn_internal.h"

namespace dsmoe::cpu {

using namespace nn_detail;

void adamw_update(int64_t n, float* param, const float* grad, float* m, float* v, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t step) {
  // Bias corrections once, in double (β^step for large steps underflows gracefully to 0).
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  const float inv_bc1 = static_cast<float>(1.0 / bc1);
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  const float a1 = 1.f - beta1, a2 = 1.f - beta2;
  parallel_chunks(n, 4 * kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {  // a plain loop the compiler vectorises (sqrt/div only)
      const float gi = grad[i];
      const float mi = beta1 * m[i] + a1 * gi;
      const float vi = beta2 * v[i] + a2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      const float update = (mi * inv_bc1) / (std::sqrt(vi) * inv_sqrt_bc2 + eps) + weight_decay * param[i];
      param[i] -= lr * update;
    }
  });
}

double sum_squares(int64_t n, const float* x) {
  // Fixed chunks (independent of the thread count), each summed in double, added in chunk order.
  constexpr int64_t kChunk = 4 * kGrain;
  const int64_t n_chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(n_chunks), 0.0);
  parallel_chunks(n, kChunk, [&](int64_t b, int64_t e) { partial[b / kChunk] = dot_f64(e - b, x + b, x + b); });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

void scale_inplace(int64_t n, float* x, float s) {
  parallel_chunks(n, 4 * kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] *= s;
  });
}

}  // namespace dsmoe::cpu

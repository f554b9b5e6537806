// Fused softmax cross-entropy (nn.h).
#include <cmath>
#include <vector>

#include "nn.h"
#include "nn_internal.h"

namespace dsmoe::cpu {

using namespace nn_detail;

double cross_entropy(int64_t rows, int64_t vocab, const float* logits, const int32_t* targets,
                     float* dlogits, float* losses, float grad_scale) {
  int64_t n_valid = 0;
  for (int64_t r = 0; r < rows; ++r) n_valid += targets[r] >= 0;
  // 1/n_valid folded into the gradient scale; with no valid row every gradient is zero (no 0/0).
  const float g = n_valid > 0 ? static_cast<float>(static_cast<double>(grad_scale) / n_valid) : 0.f;

  std::vector<double> row_loss(static_cast<size_t>(rows), 0.0);  // summed in row order below
  parallel_chunks(rows, rows_per_task(vocab), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* l = logits + r * vocab;
      float* d = dlogits ? dlogits + r * vocab : nullptr;
      const int32_t t = targets[r];
      if (t < 0) {
        if (d)
          for (int64_t j = 0; j < vocab; ++j) d[j] = 0.f;
        if (losses) losses[r] = 0.f;
        continue;
      }
      // Max-subtracted: every exp argument is ≤ 0, so nothing overflows; the sum is in double.
      float mx = l[0];
      for (int64_t j = 1; j < vocab; ++j) mx = std::max(mx, l[j]);
      double sum = 0;
      for (int64_t j = 0; j < vocab; ++j) sum += std::exp(static_cast<double>(l[j]) - mx);
      const double lse = mx + std::log(sum);
      const double loss = lse - l[t];  // read before d (which may be l) is written
      row_loss[r] = loss;
      if (losses) losses[r] = static_cast<float>(loss);
      if (d) {
        for (int64_t j = 0; j < vocab; ++j)
          d[j] = g * static_cast<float>(std::exp(static_cast<double>(l[j]) - lse));
        d[t] -= g;
      }
    }
  });

  double total = 0;
  for (int64_t r = 0; r < rows; ++r) total += row_loss[r];
  return n_valid > 0 ? total / static_cast<double>(n_valid) : 0.0;
}

}  // namespace dsmoe::cpu

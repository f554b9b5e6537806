// Fused softmax cross-entropy (nn.h).
#include <cmath>
#include <vector>

#include "nn.h"
#include "nn_internal.h"
#include "vecmath.h"

namespace dsmoe::cpu {

using namespace nn_detail;

namespace {
// Per-thread row of exp values when the caller wants the loss only.
float* scratch_row(int64_t n) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}
}  // namespace

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
      // e_j = exp(l_j − max) goes straight into d (which may alias l: l[t] is read first).
      const float target_logit = l[t];
      float* e = d ? d : scratch_row(vocab);
      const double sum = exp_shifted_sum(vocab, l, mx, e);
      const double lse = mx + std::log(sum);
      const double loss = lse - target_logit;
      row_loss[r] = loss;
      if (losses) losses[r] = static_cast<float>(loss);
      if (d) {
        const float scale = static_cast<float>(g / sum);
        for (int64_t j = 0; j < vocab; ++j) d[j] *= scale;
        d[t] -= g;
      }
    }
  });

  double total = 0;
  for (int64_t r = 0; r < rows; ++r) total += row_loss[r];
  return n_valid > 0 ? total / static_cast<double>(n_valid) : 0.0;
}

}  // namespace dsmoe::cpu

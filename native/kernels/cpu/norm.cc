// RMSNorm forward and backward (nn.h).
#include <cmath>
#include <vector>

#include "nn.h"
#include "nn_internal.h"

namespace dsmoe::cpu {

using namespace nn_detail;

void rmsnorm_forward(int64_t rows, int64_t dim, const float* x, const float* w, float eps, float* y,
                     float* rstd) {
  parallel_chunks(rows, rows_per_task(dim), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      // Mean square in double: no overflow or cancellation worries for large dim.
      const double ms = dot_f64(dim, xr, xr) / static_cast<double>(dim);
      const float s = static_cast<float>(1.0 / std::sqrt(ms + eps));
      for (int64_t j = 0; j < dim; ++j) yr[j] = xr[j] * s * w[j];  // element-wise: y may alias x
      if (rstd) rstd[r] = s;
    }
  });
}

// The weight gradient sums over rows. To be reproducible for any thread count, rows are cut into
// fixed chunks of kDwRows; each chunk's partial sum (double) lands in its own slot, and the slots are
// then added in chunk order. The same task computes dx of its rows after reading them for dw, so
// dx may overwrite dy or x.
void rmsnorm_backward(int64_t rows, int64_t dim, const float* x, const float* w, const float* rstd,
                      const float* dy, float* dx, float* dw, bool accumulate_dw) {
  constexpr int64_t kDwRows = 64;
  const int64_t n_chunks = (rows + kDwRows - 1) / kDwRows;
  std::vector<double> partial(static_cast<size_t>(n_chunks * dim), 0.0);  // [n_chunks, dim]

  parallel_chunks(rows, kDwRows, [&](int64_t r0, int64_t r1) {
    double* acc = partial.data() + (r0 / kDwRows) * dim;
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      const float* gr = dy + r * dim;
      const double s = rstd[r];
      for (int64_t j = 0; j < dim; ++j) acc[j] += static_cast<double>(gr[j]) * xr[j] * s;
    }
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      const float* gr = dy + r * dim;
      float* dxr = dx + r * dim;
      double dot = 0;  // Σ dy·w·x
      for (int64_t j = 0; j < dim; ++j) dot += static_cast<double>(gr[j]) * w[j] * xr[j];
      const double s = rstd[r];
      const float c = static_cast<float>(s * s * s * dot / static_cast<double>(dim));
      const float sf = rstd[r];
      for (int64_t j = 0; j < dim; ++j) dxr[j] = sf * w[j] * gr[j] - xr[j] * c;
    }
  });

  // Chunk partials in chunk order, parallel over columns.
  parallel_chunks(dim, 1024, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      double total = accumulate_dw ? static_cast<double>(dw[j]) : 0.0;
      for (int64_t c = 0; c < n_chunks; ++c) total += partial[c * dim + j];
      dw[j] = static_cast<float>(total);
    }
  });
}

}  // namespace dsmoe::cpu

// Rotary position embedding, rotate-half convention (nn.h).
#include <cmath>
#include <vector>

#include "nn.h"
#include "nn_internal.h"

namespace dsmoe::cpu {

using namespace nn_detail;

namespace {

// Rotates every head of every row by +angle (sign = 1) or −angle (sign = −1). The cos/sin of a row
// are shared by its heads and computed in double: at position 1e5 an fp32 angle would already be
// off by ~4e-3 rad.
void rope_rotate(int64_t rows, int64_t heads, int64_t head_dim, double theta, const int32_t* positions,
                 const float* in, float* out, double sign) {
  const int64_t half = head_dim / 2, row_elems = heads * head_dim;
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq[i] = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));

  parallel_chunks(rows, rows_per_task(row_elems), [&](int64_t r0, int64_t r1) {
    std::vector<double> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
    for (int64_t r = r0; r < r1; ++r) {
      const double pos = positions[r];
      for (int64_t i = 0; i < half; ++i) {
        const double a = pos * inv_freq[i];
        cs[i] = std::cos(a);
        sn[i] = sign * std::sin(a);
      }
      for (int64_t h = 0; h < heads; ++h) {
        const float* xi = in + r * row_elems + h * head_dim;
        float* yo = out + r * row_elems + h * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          // Read both halves before writing either: out may equal in.
          const double a = xi[i], b = xi[i + half];
          yo[i] = static_cast<float>(a * cs[i] - b * sn[i]);
          yo[i + half] = static_cast<float>(b * cs[i] + a * sn[i]);
        }
      }
    }
  });
}

}  // namespace

void rope_forward(int64_t rows, int64_t heads, int64_t head_dim, double theta, const int32_t* positions,
                  const float* x, float* out) {
  rope_rotate(rows, heads, head_dim, theta, positions, x, out, 1.0);
}

void rope_backward(int64_t rows, int64_t heads, int64_t head_dim, double theta, const int32_t* positions,
                   const float* dy, float* dx) {
  rope_rotate(rows, heads, head_dim, theta, positions, dy, dx, -1.0);
}

}  // namespace dsmoe::cpu

// GELU, exact (erf) and tanh forms, forward and backward (nn.h), over vecmath.h's array functions.
#include "nn.h"
#include "nn_internal.h"
#include "vecmath.h"

namespace dsmoe::cpu {

using namespace nn_detail;

void gelu_forward(int64_t n, const float* x, float* y, GeluKind kind) {
  parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) {
    if (kind == GeluKind::Tanh) gelu_tanh_array(e - b, x + b, y + b);
    else gelu_erf_array(e - b, x + b, y + b);
  });
}

void gelu_backward(int64_t n, const float* x, const float* dy, float* dx, GeluKind kind) {
  parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) {
    if (kind == GeluKind::Tanh) gelu_tanh_grad_array(e - b, x + b, dy + b, dx + b);
    else gelu_erf_grad_array(e - b, x + b, dy + b, dx + b);
  });
}

}  // namespace dsmoe::cpu

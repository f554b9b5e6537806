// Bindings of the GEMM family: Backend ops (backend.h) on the `device` argument's backend (stage.h).
#include <vector>

#include "../core/bf16.h"
#include "../kernels/cpu/gemm.h"
#include "op_args.h"
#include "register.h"
#include "stage.h"

namespace dsmoe::bind {
namespace {

using cpu::DType;

// gemm({transA, transB, m, n, k, alpha=1, beta=0, a, lda?, b (f32|bf16), ldb?, c, ldc?, device?})
// Backend::gemm is fp32; a bf16 B runs the CPU kernel's bf16 form on the CPU, and is widened to fp32
// (exactly) for another device.
Work bind_gemm(Args& args) {
  const GemmArgs g = read_gemm(args);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    if (g.b_bf16 && st.on_host()) {
      cpu::GemmSegment seg;
      seg.a = {g.a.data, g.lda, g.ta, nullptr, 1};
      seg.b = {g.b.data, g.ldb, g.tb, DType::BF16};
      seg.k = g.k;
      cpu::GemmProblem p;
      p.m = g.m; p.n = g.n; p.segments = &seg; p.n_segments = 1;
      p.alpha = g.alpha; p.beta = g.beta; p.c = g.c.data; p.ldc = g.ldc;
      cpu::gemm_batch(&p, 1);
      return;
    }
    std::vector<float> wide;
    const float* b = static_cast<const float*>(g.b.data);
    if (g.b_bf16) {
      wide.resize(static_cast<size_t>(g.b_elems));
      const auto* h = static_cast<const uint16_t*>(g.b.data);
      for (int64_t i = 0; i < g.b_elems; ++i) wide[static_cast<size_t>(i)] = bf16_to_f32(h[i]);
      b = wide.data();
    }
    st.be.gemm(g.ta, g.tb, g.m, g.n, g.k, g.alpha, st.in(g.a.data, g.a_elems), g.lda, st.in(b, g.b_elems), g.ldb,
               g.beta, st.out(g.c.data, g.c_elems), g.ldc);
    st.finish();
  };
}

// groupedGemm({experts, offsets [E+1], x [R, k], w [E, n, k] (transW) or [E, k, n], n, k, transW=true,
//              beta=0, y [R, n], device?})   (w: Float32Array or bf16 Uint16Array)
Work bind_grouped_gemm(Args& args) {
  const GroupedGemmArgs g = read_grouped_gemm(args);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    const DType dt = g.w_bf16 ? DType::BF16 : DType::F32;
    const int64_t w_bytes = g.experts * g.n * g.k * backend::dtype_bytes(dt);
    st.be.grouped_gemm(g.experts, st.in(g.offsets->data(), g.experts + 1), st.in(g.x.data, g.rows * g.k),
                       {st.in_bytes(g.w.data, w_bytes), dt}, g.trans_w, g.n, g.k, g.beta,
                       st.out(g.y.data, g.rows * g.n));
    st.finish();
  };
}

// groupedGemmWeightGrad({experts, offsets, dy [R, n], x [R, k], n, k, beta=0, dw [E, n, k], device?})
Work bind_grouped_gemm_weight_grad(Args& args) {
  const int64_t experts = args.integer("experts", 1);
  const int64_t n = args.integer("n", 0), k = args.integer("k", 0);
  const float beta = static_cast<float>(args.number_or("beta", 0.0));
  const Index off = group_offsets(args, experts);
  const int64_t rows = off->back();
  auto dy = args.f32_in("dy", checked_mul(rows, n, args.where("dy")));
  auto x = args.f32_in("x", checked_mul(rows, k, args.where("x")));
  auto dw = args.f32("dw", checked_mul(experts, checked_mul(n, k, args.where("dw")), args.where("dw")));
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.grouped_gemm_weight_grad(experts, st.in(off->data(), experts + 1), st.in(dy.data, rows * n),
                                   st.in(x.data, rows * k), n, k, beta, st.out(dw.data, experts * n * k));
    st.finish();
  };
}

// expertWeightedGemm({t, experts, n, k, x, ldx?, xExpertStride=0, w [E, n, k], s [t, E], beta=0, y [t, n],
//                     device?})
//   y[t] = beta·y[t] + Σ_e s[t,e] · x_e[t] · w[e]ᵀ,  x_e = x + e·xExpertStride (rows ldx apart)
Work bind_expert_weighted_gemm(Args& args) {
  const int64_t t = args.integer("t", 0), experts = args.integer("experts", 1);
  const int64_t n = args.integer("n", 0), k = args.integer("k", 0);
  const int64_t ldx = args.integer_or("ldx", k, 1);
  const int64_t xstride = args.integer_or("xExpertStride", 0, 0, std::numeric_limits<int64_t>::max() / 4);
  const float beta = static_cast<float>(args.number_or("beta", 0.0));
  int64_t x_need = Args::matrix_elems(t, k, ldx, args.where("x"));
  if (x_need > 0) x_need = checked_add(x_need, checked_mul(experts - 1, xstride, args.where("x")), args.where("x"));
  auto x = args.f32_in("x", x_need);
  auto w = args.f32_in("w", checked_mul(experts, checked_mul(n, k, args.where("w")), args.where("w")));
  auto s = args.f32_in("s", checked_mul(t, experts, args.where("s")));
  auto y = args.f32("y", checked_mul(t, n, args.where("y")));
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.expert_weighted_gemm(t, experts, n, k, st.in(x.data, x_need), ldx, xstride, st.in(w.data, experts * n * k),
                               st.in(s.data, t * experts), beta, st.out(y.data, t * n));
    st.finish();
  };
}

}  // namespace

void register_gemm(Napi::Env env, Napi::Object exports) {
  export_kernel(env, exports, "gemm", bind_gemm);
  export_kernel(env, exports, "groupedGemm", bind_grouped_gemm);
  export_kernel(env, exports, "groupedGemmWeightGrad", bind_grouped_gemm_weight_grad);
  export_kernel(env, exports, "expertWeightedGemm", bind_expert_weighted_gemm);
}

}  // namespace dsmoe::bind

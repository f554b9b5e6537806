// Bindings of the GEMM family (kernels/cpu/gemm.h).
#include "../kernels/cpu/gemm.h"
#include "register.h"

namespace dsmoe::bind {
namespace {

using cpu::DType;

// gemm({transA, transB, m, n, k, alpha=1, beta=0, a, lda?, b (f32|bf16), ldb?, c, ldc?})
Work bind_gemm(Args& args) {
  const bool ta = args.boolean_or("transA", false), tb = args.boolean_or("transB", false);
  const int64_t m = args.integer("m", 0), n = args.integer("n", 0), k = args.integer("k", 0);
  const float alpha = static_cast<float>(args.number_or("alpha", 1.0));
  const float beta = static_cast<float>(args.number_or("beta", 0.0));
  // Stored shapes: A [m, k] or [k, m]; B [k, n] or [n, k]; C [m, n].
  const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
  const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
  const int64_t lda = args.integer_or("lda", a_cols, 1), ldb = args.integer_or("ldb", b_cols, 1);
  const int64_t ldc = args.integer_or("ldc", n, 1);
  auto a = args.f32_in("a", Args::matrix_elems(a_rows, a_cols, lda, args.where("a")));
  bool b_bf16 = false;
  auto b = args.f32_or_bf16("b", Args::matrix_elems(b_rows, b_cols, ldb, args.where("b")), &b_bf16);
  auto c = args.f32("c", Args::matrix_elems(m, n, ldc, args.where("c")));
  return [=] {
    cpu::GemmSegment seg;
    seg.a = {a.data, lda, ta, nullptr, 1};
    seg.b = {b.data, ldb, tb, b_bf16 ? DType::BF16 : DType::F32};
    seg.k = k;
    cpu::GemmProblem p;
    p.m = m; p.n = n; p.segments = &seg; p.n_segments = 1;
    p.alpha = alpha; p.beta = beta; p.c = c.data; p.ldc = ldc;
    cpu::gemm_batch(&p, 1);
  };
}

// Checks group offsets: offsets[0] = 0, non-decreasing, offsets[E] = rows. Returns rows.
int64_t check_offsets(Args& args, const View<int32_t>& off, int64_t experts) {
  if (off.data[0] != 0) range_error(args.where("offsets") + "[0] must be 0, got " + std::to_string(off.data[0]));
  for (int64_t e = 0; e < experts; ++e)
    if (off.data[e + 1] < off.data[e])
      range_error(args.where("offsets") + " must be non-decreasing (offsets[" + std::to_string(e + 1) +
                  "] = " + std::to_string(off.data[e + 1]) + " < offsets[" + std::to_string(e) +
                  "] = " + std::to_string(off.data[e]) + ")");
  return off.data[experts];
}

// groupedGemm({experts, offsets [E+1], x [R, k], w [E, n, k] (transW) or [E, k, n], n, k, transW=true,
//              beta=0, y [R, n]})   (w: Float32Array or bf16 Uint16Array)
Work bind_grouped_gemm(Args& args) {
  const int64_t experts = args.integer("experts", 1);
  const int64_t n = args.integer("n", 0), k = args.integer("k", 0);
  const bool trans_w = args.boolean_or("transW", true);
  const float beta = static_cast<float>(args.number_or("beta", 0.0));
  auto off = args.i32("offsets", experts + 1);
  const int64_t rows = check_offsets(args, off, experts);
  auto x = args.f32_in("x", checked_mul(rows, k, args.where("x")));
  bool bf16 = false;
  auto w = args.f32_or_bf16("w", checked_mul(experts, checked_mul(n, k, args.where("w")), args.where("w")), &bf16);
  auto y = args.f32("y", checked_mul(rows, n, args.where("y")));
  return [=] {
    cpu::grouped_gemm(experts, off.data, x.data, w.data, bf16 ? DType::BF16 : DType::F32, trans_w, n, k,
                      beta, y.data);
  };
}

// groupedGemmWeightGrad({experts, offsets, dy [R, n], x [R, k], n, k, beta=0, dw [E, n, k]})
Work bind_grouped_gemm_weight_grad(Args& args) {
  const int64_t experts = args.integer("experts", 1);
  const int64_t n = args.integer("n", 0), k = args.integer("k", 0);
  const float beta = static_cast<float>(args.number_or("beta", 0.0));
  auto off = args.i32("offsets", experts + 1);
  const int64_t rows = check_offsets(args, off, experts);
  auto dy = args.f32_in("dy", checked_mul(rows, n, args.where("dy")));
  auto x = args.f32_in("x", checked_mul(rows, k, args.where("x")));
  auto dw = args.f32("dw", checked_mul(experts, checked_mul(n, k, args.where("dw")), args.where("dw")));
  return [=] { cpu::grouped_gemm_weight_grad(experts, off.data, dy.data, x.data, n, k, beta, dw.data); };
}

// expertWeightedGemm({t, experts, n, k, x, ldx?, xExpertStride=0, w [E, n, k], s [t, E], beta=0, y [t, n]})
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
  return [=] { cpu::expert_weighted_gemm(t, experts, n, k, x.data, ldx, xstride, w.data, s.data, beta, y.data); };
}

}  // namespace

void register_gemm(Napi::Env env, Napi::Object exports) {
  export_kernel(env, exports, "gemm", bind_gemm);
  export_kernel(env, exports, "groupedGemm", bind_grouped_gemm);
  export_kernel(env, exports, "groupedGemmWeightGrad", bind_grouped_gemm_weight_grad);
  export_kernel(env, exports, "expertWeightedGemm", bind_expert_weighted_gemm);
}

}  // namespace dsmoe::bind

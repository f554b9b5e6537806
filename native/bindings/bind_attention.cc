// Bindings of the attention kernels (kernels/cpu/attention.h).
#include <cmath>
#include <string>

#include "../kernels/cpu/attention.h"
#include "register.h"

namespace dsmoe::bind {
namespace {

// The shape arguments both kernels share, checked, with the element counts of each tensor.
struct Shapes {
  cpu::AttentionShape s;
  int64_t q_elems, kv_elems, lse_elems;  // [B,Tq,Hq,dh], [B,Tk,G,dh], [B,Hq,Tq]
};

Shapes read_shapes(Args& args) {
  Shapes r;
  cpu::AttentionShape& s = r.s;
  s.batch = args.integer("batch", 1);
  s.tq = args.integer("tq", 1);
  s.tk = args.integer("tk", 1);
  if (s.tk < s.tq)
    range_error(args.where("tk") + " (" + std::to_string(s.tk) + ") must be at least tq (" + std::to_string(s.tq) +
                "): the queries are the last tq of the tk positions");
  s.n_heads_total = args.integer("nHeads", 1);
  s.heads_per_expert = args.integer("headsPerExpert", 1);
  s.kv_heads = args.integer("kvHeads", 1);
  s.head_dim = args.integer("headDim", 1);
  if (s.n_heads_total % s.heads_per_expert != 0)
    range_error(args.where("headsPerExpert") + " (" + std::to_string(s.heads_per_expert) + ") must divide nHeads (" +
                std::to_string(s.n_heads_total) + "): nHeads = experts · headsPerExpert");
  if (s.heads_per_expert % s.kv_heads != 0)
    range_error(args.where("kvHeads") + " (" + std::to_string(s.kv_heads) + ") must divide headsPerExpert (" +
                std::to_string(s.heads_per_expert) + ")");
  const double scale = args.number_or("scale", 1.0 / std::sqrt(static_cast<double>(s.head_dim)));
  s.scale = static_cast<float>(scale);
  if (!std::isfinite(s.scale)) range_error(args.where("scale") + " must be finite in fp32, got " + std::to_string(scale));

  const std::string wq = args.where("q"), wk = args.where("k"), wl = args.where("lse");
  r.q_elems = checked_mul(checked_mul(checked_mul(s.batch, s.tq, wq), s.n_heads_total, wq), s.head_dim, wq);
  r.kv_elems = checked_mul(checked_mul(checked_mul(s.batch, s.tk, wk), s.kv_heads, wk), s.head_dim, wk);
  r.lse_elems = checked_mul(checked_mul(s.batch, s.n_heads_total, wl), s.tq, wl);
  return r;
}

// attentionForward({batch, tq, tk, nHeads, headsPerExpert, kvHeads, headDim, scale?, q, k, v, out, lse})
Work bind_attention_forward(Args& args) {
  const Shapes sh = read_shapes(args);
  auto q = args.f32_in("q", sh.q_elems);
  auto k = args.f32_in("k", sh.kv_elems);
  auto v = args.f32_in("v", sh.kv_elems);
  auto out = args.f32("out", sh.q_elems);
  auto lse = args.f32("lse", sh.lse_elems);
  return [=] { cpu::attention_forward(sh.s, q.data, k.data, v.data, out.data, lse.data); };
}

// attentionBackward({...forward shape args, q, k, v, out, lse, dout, dq, dk, dv})
Work bind_attention_backward(Args& args) {
  const Shapes sh = read_shapes(args);
  auto q = args.f32_in("q", sh.q_elems);
  auto k = args.f32_in("k", sh.kv_elems);
  auto v = args.f32_in("v", sh.kv_elems);
  auto out = args.f32_in("out", sh.q_elems);
  auto lse = args.f32_in("lse", sh.lse_elems);
  auto dout = args.f32_in("dout", sh.q_elems);
  auto dq = args.f32("dq", sh.q_elems);
  auto dk = args.f32("dk", sh.kv_elems);
  auto dv = args.f32("dv", sh.kv_elems);
  return [=] {
    cpu::attention_backward(sh.s, q.data, k.data, v.data, out.data, lse.data, dout.data, dq.data, dk.data, dv.data);
  };
}

}  // namespace

void register_attention(Napi::Env env, Napi::Object exports) {
  export_kernel(env, exports, "attentionForward", bind_attention_forward);
  export_kernel(env, exports, "attentionBackward", bind_attention_backward);
}

}  // namespace dsmoe::bind

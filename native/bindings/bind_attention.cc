// Bindings of the attention kernels (kernels/cpu/attention.h).
#include <cmath>
#include <string>

#include "../kernels/cpu/attention.h"
#include "op_args.h"
#include "register.h"

namespace dsmoe::bind {
namespace {

// The shape arguments both kernels share are read by op_args.h (shared with the CUDA bindings).
using Shapes = AttentionShapes;
Shapes read_shapes(Args& args) { return read_attention_shapes(args); }

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

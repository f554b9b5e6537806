// Bindings of the attention ops: Backend ops (backend.h) on the `device` argument's backend (stage.h).
#include <cmath>
#include <string>

#include "../kernels/cpu/attention.h"
#include "op_args.h"
#include "register.h"
#include "stage.h"

namespace dsmoe::bind {
namespace {

// The shape arguments both kernels share are read by op_args.h.
using Shapes = AttentionShapes;
Shapes read_shapes(Args& args) { return read_attention_shapes(args); }

// attentionForward({batch, tq, tk, nHeads, headsPerExpert, kvHeads, headDim, scale?, q, k, v, out, lse,
//                   device?})
Work bind_attention_forward(Args& args) {
  const Shapes sh = read_shapes(args);
  auto q = args.f32_in("q", sh.q_elems);
  auto k = args.f32_in("k", sh.kv_elems);
  auto v = args.f32_in("v", sh.kv_elems);
  auto out = args.f32("out", sh.q_elems);
  auto lse = args.f32("lse", sh.lse_elems);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.attention_forward(sh.s, st.in(q.data, sh.q_elems), st.in(k.data, sh.kv_elems), st.in(v.data, sh.kv_elems),
                            st.out(out.data, sh.q_elems), st.out(lse.data, sh.lse_elems));
    st.finish();
  };
}

// attentionBackward({...forward shape args, q, k, v, out, lse, dout, dq, dk, dv, device?})
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
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    const int64_t nq = sh.q_elems, nkv = sh.kv_elems;
    st.be.attention_backward(sh.s, st.in(q.data, nq), st.in(k.data, nkv), st.in(v.data, nkv), st.in(out.data, nq),
                             st.in(lse.data, sh.lse_elems), st.in(dout.data, nq), st.out(dq.data, nq),
                             st.out(dk.data, nkv), st.out(dv.data, nkv));
    st.finish();
  };
}

}  // namespace

void register_attention(Napi::Env env, Napi::Object exports) {
  export_kernel(env, exports, "attentionForward", bind_attention_forward);
  export_kernel(env, exports, "attentionBackward", bind_attention_backward);
}

}  // namespace dsmoe::bind

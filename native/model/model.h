// The DS-MoE transformer: training forward, backward, the training step and evaluation, composed
// from the ops of a Backend (backend/backend.h) and nothing else. Parameters, gradients and AdamW
// moments are flat arrays in that backend's memory laid out by make_layout() (owned by a Trainer,
// trainer.h, or by a test); activations live in a backend workspace that grows with the batch shape.
//
// Per block (DESIGN.md §1.1):  h += MoA(rmsnorm(h));  h += MoE-MLP(rmsnorm(h)).
// Each MoE layer weighs its experts' outputs by W[t, e]:
//   dsmoe  W = S                (every expert, full router gradient, + α·L_MI)
//   smoe   W = S ⊙ topk-mask    (gradients only through the selected experts, + switch loss)
//   dense  W = 1                (one expert, no router)
// and the weighted sum Σ_e W[:,e] ⊙ (x_e · Wout[e]ᵀ) is one expert_weighted_gemm.
#pragma once
#include <cstdint>
#include <vector>

#include "../backend/backend.h"
#include "config.h"
#include "layout.h"

namespace dsmoe::model {

struct Buffers {
  float* params = nullptr;
  float* grads = nullptr;
  float* adam_m = nullptr;
  float* adam_v = nullptr;
};

struct StepStats {
  double loss = 0, lm_loss = 0, aux_loss = 0, grad_norm = 0;
  double att_entropy = 0, att_cond_entropy = 0, mlp_entropy = 0, mlp_cond_entropy = 0;
  int64_t tokens = 0;
};

struct OptimSettings {
  float lr = 3e-4f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.01f, clip = 1.f;
  int64_t step = 1;
};

class Model {
 public:
  // buffers: backend memory of layout().total floats each.
  Model(const Config& config, const Buffers& buffers, backend::Backend& be);
  ~Model();  // defined where LayerCache is complete

  const Config& config() const { return cfg_; }
  const Layout& layout() const { return layout_; }

  // Forward and backward over `micro` micro-batches of [batch, seq] tokens; grads are overwritten
  // with the gradient of the mean loss over micro-batches. tokens/targets: [micro, batch, seq].
  StepStats loss_and_grad(const int32_t* tokens, const int32_t* targets, int64_t micro, int64_t batch,
                          int64_t seq);
  // Global-norm clipping and AdamW over the gradients, then zeroes them. Returns the norm before
  // clipping; when it or `loss` is not finite the parameters are left alone.
  double apply_optimizer(const OptimSettings& opt, double loss);
  // loss_and_grad then apply_optimizer.
  StepStats train_step(const int32_t* tokens, const int32_t* targets, int64_t micro, int64_t batch,
                       int64_t seq, const OptimSettings& opt);
  // Loss and router statistics, no gradients.
  StepStats evaluate(const int32_t* tokens, const int32_t* targets, int64_t micro, int64_t batch,
                     int64_t seq);
  // Logits [batch, seq, vocab] of the training forward.
  void forward_logits(const int32_t* tokens, int64_t batch, int64_t seq, float* logits);

 private:
  struct LayerCache;  // activations of one block kept for the backward
  struct Kind;        // attention or MLP MoE-layer description
  void ensure_workspace(int64_t batch, int64_t seq);
  void upload_batch(const int32_t* tokens, const int32_t* targets);  // host → tokens_/targets_ (targets may be null)
  StepStats finish_stats(StepStats st, int64_t micro) const;
  // One micro-batch: forward (filling caches) and the loss; if grad_scale > 0 also the backward.
  void run_micro(const int32_t* tokens, const int32_t* targets, float grad_scale, StepStats* stats,
                 bool backward);
  // A layer's router: the offsets of its weights (hidden_off < 0 for a linear router) and, for a
  // two-layer router, the cached hidden pre-activation z and activation gelu(z), [N, router_hidden].
  struct Router {
    int64_t off, hidden_off, E;
    float *z, *a;
  };
  void route_forward(const float* x, const Router& r, float* logits_buf, float* probs, float* weights, uint8_t* mask);
  void route_backward(const float* x, const Router& r, const float* probs, const uint8_t* mask,
                      float* dweights /* in: dL/dW, becomes dL/dlogits */, double alpha_scale, float* dx);

  Config cfg_;
  Layout layout_;
  Buffers buf_;
  backend::Backend& be_;
  int64_t batch_ = 0, seq_ = 0, n_ = 0;  // n_ = batch·seq tokens
  std::vector<LayerCache> caches_;
  template <typename T>
  using Array = backend::Array<T>;
  Array<float> h_, dh_, dx_, hf_, rstd_f_, logits_, scratch_, dq_, dk_, dv_, router_logits_;
  Array<int32_t> positions_, pair_token_, pair_expert_, tokens_, targets_;  // tokens_/targets_: one micro-batch
  Array<float> pair_weight_, dprobs_, router_da_;  // router_da_: [N, router_hidden] backward scratch
};

}  // namespace dsmoe::model

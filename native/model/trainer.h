// The training state owned by the engine (DESIGN.md §2 "the engine owns the state"): parameters,
// gradients and AdamW moments in one backend's memory, and the model over them. TypeScript holds a
// handle; tensors cross the boundary one at a time, by name (loading a checkpoint, saving one), so
// saving never needs a second copy of the whole model.
//
// A step is  loss_and_grad → reduce_gradients → apply_optimizer:
//   loss_and_grad     forward + backward of the micro-batches, gradients of the mean loss
//   reduce_gradients  the hook between backward and optimizer: a no-op in one process; a
//                     data-parallel run installs an all-reduce (average over ranks) here
//   apply_optimizer   global-norm clipping and AdamW; non-finite gradients leave the weights alone
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "../backend/backend.h"
#include "../infer/weights.h"
#include "config.h"
#include "layout.h"
#include "model.h"

namespace dsmoe::model {

// Which of the per-parameter arrays a named tensor refers to.
enum class Slot : int { Param = 0, Grad = 1, AdamM = 2, AdamV = 3 };

class Trainer {
 public:
  Trainer(const Config& config, backend::Backend& be);
  const Config& config() const { return cfg_; }
  const Layout& layout() const { return layout_; }
  backend::Backend& backend() const { return be_; }

  // Seeded initialisation (model/init.h) of the parameters; moments zeroed.
  void init(uint64_t seed);
  // The layout entry of `name`; throws std::out_of_range naming it when the model has no such tensor.
  const Tensor& tensor(const std::string& name) const;
  // Host fp32 data of one tensor in and out of a slot (size = tensor(name).size elements).
  void load(Slot slot, const std::string& name, const float* host);
  void store(Slot slot, const std::string& name, float* host) const;

  StepStats loss_and_grad(const int32_t* tokens, const int32_t* targets, int64_t micro, int64_t batch,
                          int64_t seq);
  // Called with the gradient array (backend memory, layout().total floats) after loss_and_grad.
  using GradientReduction = std::function<void(float* grads, int64_t n, backend::Backend& be)>;
  void set_gradient_reduction(GradientReduction fn) { reduce_ = std::move(fn); }
  void reduce_gradients();
  // Clips, updates and zeroes the gradients; returns the gradient norm before clipping (NaN/inf
  // when the gradients were not finite: then the weights are unchanged).
  double apply_optimizer(const OptimSettings& opt, double loss);
  // The three above in order, as one call.
  StepStats train_step(const int32_t* tokens, const int32_t* targets, int64_t micro, int64_t batch, int64_t seq,
                       const OptimSettings& opt);
  StepStats evaluate(const int32_t* tokens, const int32_t* targets, int64_t micro, int64_t batch, int64_t seq);

  // Inference weights over the live fp32 parameters (no copy): training's routed evaluation. The
  // Weights keep this trainer's state alive.
  std::shared_ptr<const infer::Weights> live_weights();

 private:
  float* slot_data(Slot s) const;

  Config cfg_;
  Layout layout_;
  backend::Backend& be_;
  // Shared so that live_weights() can keep the parameters alive after the Trainer goes.
  std::shared_ptr<backend::Array<float>> params_;
  backend::Array<float> grads_, adam_m_, adam_v_;
  std::unique_ptr<Model> model_;
  GradientReduction reduce_;
  bool moments_written_ = false;  // AdamW moments not all zero (a step or a load happened)
};

}  // namespace dsmoe::model

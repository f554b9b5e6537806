#include "trainer.h"

#include <stdexcept>
#include <vector>

#include "init.h"

namespace dsmoe::model {

Trainer::Trainer(const Config& config, backend::Backend& be)
    : cfg_(config), layout_(make_layout(config)), be_(be), params_(std::make_shared<backend::Array<float>>()) {
  const std::string err = validate(cfg_);
  if (!err.empty()) throw std::invalid_argument(err);
  params_->assign(be_, layout_.total);
  grads_.assign(be_, layout_.total);
  adam_m_.assign(be_, layout_.total);
  adam_v_.assign(be_, layout_.total);
  model_ = std::make_unique<Model>(cfg_, Buffers{params_->data(), grads_.data(), adam_m_.data(), adam_v_.data()},
                                   be_);
}

void Trainer::init(uint64_t seed) {
  // Initialised on the host (seeded, platform-independent): in place in host memory, else uploaded.
  if (be_.device().kind == backend::DeviceKind::Cpu) {
    init_params(cfg_, layout_, params_->data(), seed);
  } else {
    std::vector<float> host(static_cast<size_t>(layout_.total));
    init_params(cfg_, layout_, host.data(), seed);
    be_.upload(params_->data(), host.data(), layout_.total * int64_t(sizeof(float)));
  }
  // Fresh arrays are zero already; writing zeros would only make their pages resident early.
  if (moments_written_) {
    be_.fill(layout_.total, adam_m_.data(), 0.f);
    be_.fill(layout_.total, adam_v_.data(), 0.f);
    moments_written_ = false;
  }
}

const Tensor& Trainer::tensor(const std::string& name) const {
  for (const Tensor& t : layout_.tensors)
    if (t.name == name) return t;
  throw std::out_of_range("the model has no tensor \"" + name + "\"");
}

float* Trainer::slot_data(Slot s) const {
  switch (s) {
    case Slot::Param: return params_->data();
    case Slot::Grad: return grads_.data();
    case Slot::AdamM: return adam_m_.data();
    case Slot::AdamV: return adam_v_.data();
  }
  throw std::invalid_argument("unknown tensor slot");
}

void Trainer::load(Slot slot, const std::string& name, const float* host) {
  const Tensor& t = tensor(name);
  if (slot == Slot::AdamM || slot == Slot::AdamV) moments_written_ = true;
  be_.upload(slot_data(slot) + t.offset, host, t.size * int64_t(sizeof(float)));
}

void Trainer::store(Slot slot, const std::string& name, float* host) const {
  const Tensor& t = tensor(name);
  be_.download(host, slot_data(slot) + t.offset, t.size * int64_t(sizeof(float)));
}

StepStats Trainer::loss_and_grad(const int32_t* tokens, const int32_t* targets, int64_t micro, int64_t batch,
                                 int64_t seq) {
  return model_->loss_and_grad(tokens, targets, micro, batch, seq);
}

void Trainer::reduce_gradients() {
  if (reduce_) reduce_(grads_.data(), layout_.total, be_);
}

double Trainer::apply_optimizer(const OptimSettings& opt, double loss) {
  moments_written_ = true;
  return model_->apply_optimizer(opt, loss);
}

StepStats Trainer::train_step(const int32_t* tokens, const int32_t* targets, int64_t micro, int64_t batch,
                              int64_t seq, const OptimSettings& opt) {
  StepStats st = loss_and_grad(tokens, targets, micro, batch, seq);
  reduce_gradients();
  st.grad_norm = apply_optimizer(opt, st.loss);
  return st;
}

StepStats Trainer::evaluate(const int32_t* tokens, const int32_t* targets, int64_t micro, int64_t batch,
                            int64_t seq) {
  return model_->evaluate(tokens, targets, micro, batch, seq);
}

std::shared_ptr<const infer::Weights> Trainer::live_weights() {
  return infer::Weights::from_buffer(cfg_, params_->data(), backend::DType::F32, be_, params_);
}

}  // namespace dsmoe::model

// Bindings of the model (native/model): config parsing, layout, initialisation; createTrainer, the
// engine-owned training state (model/trainer.h) whose coarse calls (a step, an evaluation) run on a
// worker thread; and createModel, the same model over caller-owned Float32Arrays on the CPU backend
// (a test surface: gradients can be inspected in place).
#include <atomic>
#include <cmath>
#include <memory>
#include <vector>

#include "../model/init.h"
#include "../model/model.h"
#include "../model/trainer.h"
#include "config_reader.h"
#include "parallel_handle.h"
#include "register.h"
#include "session_object.h"

namespace dsmoe::bind {
namespace {

Napi::Value layout_to_js(Napi::Env env, const model::Layout& L) {
  Napi::Object o = Napi::Object::New(env);
  Napi::Array tensors = Napi::Array::New(env, L.tensors.size());
  for (size_t i = 0; i < L.tensors.size(); ++i) {
    const model::Tensor& t = L.tensors[i];
    Napi::Object jt = Napi::Object::New(env);
    jt.Set("name", t.name);
    Napi::Array shape = Napi::Array::New(env, t.shape.size());
    for (size_t d = 0; d < t.shape.size(); ++d)
      shape.Set(static_cast<uint32_t>(d), Napi::Number::New(env, double(t.shape[d])));
    jt.Set("shape", shape);
    jt.Set("offset", Napi::Number::New(env, double(t.offset)));
    jt.Set("size", Napi::Number::New(env, double(t.size)));
    jt.Set("decay", t.decay);
    tensors.Set(static_cast<uint32_t>(i), jt);
  }
  o.Set("tensors", tensors);
  o.Set("totalParams", Napi::Number::New(env, double(L.total)));
  o.Set("nonEmbeddingParams", Napi::Number::New(env, double(L.non_embedding)));
  return o;
}

Napi::Value model_layout(const Napi::CallbackInfo& info) {
  Args args(info, "modelLayout");
  // modelLayout takes the config itself, not {config}.
  Config c = ConfigReader(info[0].As<Napi::Object>(), "modelLayout").read();
  return layout_to_js(info.Env(), model::make_layout(c));
}

Work bind_init_params(Args& args) {
  Config c = read_config(args);
  auto layout = std::make_shared<model::Layout>(model::make_layout(c));
  auto params = args.f32("params", layout->total);
  const int64_t seed = args.integer("seed", 0, (int64_t(1) << 53));
  return [c, layout, params, seed] { model::init_params(c, *layout, params.data, static_cast<uint64_t>(seed)); };
}

Napi::Object stats_to_js(Napi::Env env, const model::StepStats& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("loss", s.loss);
  o.Set("lmLoss", s.lm_loss);
  o.Set("auxLoss", s.aux_loss);
  o.Set("gradNorm", s.grad_norm);
  o.Set("attEntropy", s.att_entropy);
  o.Set("attCondEntropy", s.att_cond_entropy);
  o.Set("mlpEntropy", s.mlp_entropy);
  o.Set("mlpCondEntropy", s.mlp_cond_entropy);
  o.Set("tokens", Napi::Number::New(env, double(s.tokens)));
  return o;
}

// The native side of one model: the C++ Model plus references that keep its buffers alive.
struct ModelHandle {
  std::unique_ptr<model::Model> model;
  std::vector<Napi::Reference<Napi::Value>> buffers;
  std::atomic<bool> busy{false};
};

// A checked batch, copied so JS cannot change it while a worker runs.
struct Batch {
  std::vector<int32_t> tokens, targets;
  int64_t micro = 1, batch = 1, seq = 1;
};

Batch read_batch(Args& args, const model::Config& c, bool need_targets) {
  Batch b;
  b.batch = args.integer("batch", 1, 1 << 20);
  b.seq = args.integer("seq", 1, c.max_seq_len);
  b.micro = args.integer_or("micro", 1, 1, 1 << 16);
  const int64_t n = checked_mul(checked_mul(b.micro, b.batch, args.fn() + ": batch"), b.seq, args.fn() + ": batch");
  auto tok = args.i32("tokens", n);
  b.tokens.assign(tok.data, tok.data + n);
  for (int64_t i = 0; i < n; ++i)
    if (b.tokens[static_cast<size_t>(i)] < 0 || b.tokens[static_cast<size_t>(i)] >= c.vocab_size)
      range_error(args.where("tokens") + "[" + std::to_string(i) + "] = " +
                  std::to_string(b.tokens[static_cast<size_t>(i)]) +
                  " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
  if (need_targets) {
    auto tgt = args.i32("targets", n);
    b.targets.assign(tgt.data, tgt.data + n);
    for (int64_t i = 0; i < n; ++i)
      if (b.targets[static_cast<size_t>(i)] >= c.vocab_size)
        range_error(args.where("targets") + "[" + std::to_string(i) + "] = " +
                    std::to_string(b.targets[static_cast<size_t>(i)]) +
                    " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ") (negative = ignored)");
  }
  return b;
}

// The handle comes from `this`, so a method called on anything but a model is a clean TypeError
// (and a detached method cannot outlive the model it belonged to).
ModelHandle* handle_of(const Napi::CallbackInfo& info) {
  Napi::Value self = info.This();
  if (self.IsObject()) {
    Napi::Value ext = self.As<Napi::Object>().Get("_native");
    if (ext.IsExternal()) return ext.As<Napi::External<ModelHandle>>().Data();
  }
  type_error("model methods must be called on a model made by createModel");
}

// Runs fn on a worker thread and resolves with the stats; the model is marked busy meanwhile.
class StatsWorker : public Napi::AsyncWorker {
 public:
  StatsWorker(Napi::Env env, std::atomic<bool>* busy, Napi::Object owner, std::function<model::StepStats()> fn)
      : Napi::AsyncWorker(env), busy_(busy), owner_(Napi::Persistent(owner)), fn_(std::move(fn)),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try { stats_ = fn_(); } catch (const std::exception& e) { SetError(e.what()); }
  }
  void OnOK() override { *busy_ = false; deferred_.Resolve(stats_to_js(Env(), stats_)); }
  void OnError(const Napi::Error& e) override { *busy_ = false; deferred_.Reject(e.Value()); }

 private:
  std::atomic<bool>* busy_;
  Napi::ObjectReference owner_;  // keeps the model (and its buffers) alive while running
  std::function<model::StepStats()> fn_;
  model::StepStats stats_;
  Napi::Promise::Deferred deferred_;
};

// One call at a time per model: a second call while one runs (e.g. an un-awaited trainStepAsync)
// would race on the same buffers.
void claim(std::atomic<bool>& busy) {
  bool expected = false;
  if (!busy.compare_exchange_strong(expected, true))
    throw std::runtime_error("the model is busy with another call (await it first)");
}
void claim(ModelHandle* h) { claim(h->busy); }

// Runs work (already checked) with `busy` claimed, on a worker thread (async: returns a Promise of
// the stats) or here; either way `busy` is released when the work ends.
Napi::Value run_claimed(const Napi::CallbackInfo& info, std::atomic<bool>& busy, bool async,
                        std::function<model::StepStats()> work) {
  claim(busy);
  if (async) {
    auto* worker = new StatsWorker(info.Env(), &busy, info.This().As<Napi::Object>(), std::move(work));
    Napi::Promise p = worker->promise();
    worker->Queue();
    return p;
  }
  model::StepStats s;
  try { s = work(); } catch (...) { busy = false; throw; }
  busy = false;
  return stats_to_js(info.Env(), s);
}

// Checks the arguments (make), then runs the work on the model (run_claimed).
template <typename Fn>
Napi::Value run_call(const Napi::CallbackInfo& info, const char* name, bool async, Fn make) {
  try {
    ModelHandle* h = handle_of(info);
    Args args(info, name);
    return run_claimed(info, h->busy, async, make(args, h));
  } catch (...) {
    throw_js(info.Env(), name);
    return info.Env().Undefined();
  }
}

model::OptimSettings read_optim(Args& args) {
  model::OptimSettings o;
  o.lr = static_cast<float>(args.number("lr"));
  o.beta1 = static_cast<float>(args.number_or("beta1", 0.9));
  o.beta2 = static_cast<float>(args.number_or("beta2", 0.95));
  o.eps = static_cast<float>(args.number_or("eps", 1e-8));
  o.weight_decay = static_cast<float>(args.number_or("weightDecay", 0.01));
  o.clip = static_cast<float>(args.number_or("clip", 1.0));
  o.step = args.integer("step", 1, int64_t(1) << 53);
  if (!(o.lr >= 0)) range_error(args.where("lr") + " must be >= 0");
  if (!(o.beta1 >= 0 && o.beta1 < 1)) range_error(args.where("beta1") + " must be in [0, 1)");
  if (!(o.beta2 >= 0 && o.beta2 < 1)) range_error(args.where("beta2") + " must be in [0, 1)");
  if (!(o.eps > 0)) range_error(args.where("eps") + " must be > 0");
  if (!(o.weight_decay >= 0)) range_error(args.where("weightDecay") + " must be >= 0");
  if (!(o.clip >= 0)) range_error(args.where("clip") + " must be >= 0 (0: no clipping)");
  return o;
}

std::function<model::StepStats()> make_train(Args& args, ModelHandle* h) {
  auto b = std::make_shared<Batch>(read_batch(args, h->model->config(), true));
  const model::OptimSettings o = read_optim(args);
  return [h, b, o] { return h->model->train_step(b->tokens.data(), b->targets.data(), b->micro, b->batch, b->seq, o); };
}

std::function<model::StepStats()> make_grad(Args& args, ModelHandle* h) {
  auto b = std::make_shared<Batch>(read_batch(args, h->model->config(), true));
  return [h, b] { return h->model->loss_and_grad(b->tokens.data(), b->targets.data(), b->micro, b->batch, b->seq); };
}

std::function<model::StepStats()> make_eval(Args& args, ModelHandle* h) {
  auto b = std::make_shared<Batch>(read_batch(args, h->model->config(), true));
  return [h, b] { return h->model->evaluate(b->tokens.data(), b->targets.data(), b->micro, b->batch, b->seq); };
}

Napi::Value forward(const Napi::CallbackInfo& info) {
  try {
    ModelHandle* h = handle_of(info);
    Args args(info, "forward");
    const model::Config& c = h->model->config();
    Batch b = read_batch(args, c, false);
    if (b.micro != 1) range_error("forward: micro must be 1");
    auto logits = args.f32("logits", checked_mul(b.batch * b.seq, c.vocab_size, "forward: logits"));
    claim(h);
    try {
      h->model->forward_logits(b.tokens.data(), b.batch, b.seq, logits.data);
    } catch (...) {
      h->busy = false;
      throw;
    }
    h->busy = false;
  } catch (...) {
    throw_js(info.Env(), "forward");
  }
  return info.Env().Undefined();
}

Napi::Value create_model(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args args(info, "createModel");
  Config c = read_config(args);
  const int64_t total = model::make_layout(c).total;
  auto params = args.f32("params", total);
  auto grads = args.f32("grads", total);
  auto m = args.f32("adamM", total);
  auto v = args.f32("adamV", total);
  if (params.data == grads.data || params.data == m.data || params.data == v.data || grads.data == m.data ||
      grads.data == v.data || m.data == v.data)
    range_error("createModel: params, grads, adamM and adamV must be four different buffers");
  auto* h = new ModelHandle();
  h->model = std::make_unique<model::Model>(c, model::Buffers{params.data, grads.data, m.data, v.data},
                                            backend::cpu());
  h->buffers = args.take_refs();
  Napi::Object o = Napi::Object::New(env);
  // The handle lives as long as the JS object; its methods receive it as their data pointer.
  o.Set("_native", Napi::External<ModelHandle>::New(env, h, [](Napi::Env, ModelHandle* p) { delete p; }));
  auto method = [&](const char* name, Napi::Function::Callback cb) { o.Set(name, Napi::Function::New(env, cb, name)); };
  method("trainStepAsync", [](const Napi::CallbackInfo& i) { return run_call(i, "trainStep", true, make_train); });
  method("lossAndGrad", [](const Napi::CallbackInfo& i) { return run_call(i, "lossAndGrad", false, make_grad); });
  method("evaluate", [](const Napi::CallbackInfo& i) { return run_call(i, "evaluate", false, make_eval); });
  method("evaluateAsync", [](const Napi::CallbackInfo& i) { return run_call(i, "evaluate", true, make_eval); });
  method("forward", forward);
  return o;
}

// ---- createTrainer: the engine-owned training state ------------------------------------------------

using StatsWork = std::function<model::StepStats()>;

struct TrainerHandle {
  std::unique_ptr<model::Trainer> trainer;
  std::atomic<bool> busy{false};
  int64_t external_bytes = 0;  // reported to the JS engine (AdjustExternalMemory)
};

TrainerHandle* trainer_of(const Napi::CallbackInfo& info) {
  Napi::Value self = info.This();
  if (self.IsObject()) {
    Napi::Value ext = self.As<Napi::Object>().Get("_native");
    if (ext.IsExternal()) return ext.As<Napi::External<TrainerHandle>>().Data();
  }
  type_error("trainer methods must be called on a trainer made by createTrainer");
}

// As run_call, for a trainer.
template <typename Fn>
Napi::Value run_trainer_call(const Napi::CallbackInfo& info, const char* name, bool async, Fn make) {
  try {
    TrainerHandle* h = trainer_of(info);
    Args args(info, name);
    return run_claimed(info, h->busy, async, make(args, *h->trainer));
  } catch (...) {
    throw_js(info.Env(), name);
    return info.Env().Undefined();
  }
}

// A synchronous call that must not overlap a running one.
template <typename Fn>
Napi::Value quick_trainer_call(const Napi::CallbackInfo& info, const char* name, Fn fn) {
  try {
    TrainerHandle* h = trainer_of(info);
    Args args(info, name);
    claim(h->busy);
    Napi::Value out;
    try { out = fn(args, *h->trainer); } catch (...) { h->busy = false; throw; }
    h->busy = false;
    return out;
  } catch (...) {
    throw_js(info.Env(), name);
    return info.Env().Undefined();
  }
}

model::Slot read_slot(Args& args) {
  if (!args.has("slot")) return model::Slot::Param;
  const std::string s = args.string("slot");
  if (s == "param") return model::Slot::Param;
  if (s == "grad") return model::Slot::Grad;
  if (s == "adamM") return model::Slot::AdamM;
  if (s == "adamV") return model::Slot::AdamV;
  range_error(args.where("slot") + " is \"" + s + "\"; expected param, grad, adamM or adamV");
}

const model::Tensor& named_tensor(Args& args, const model::Trainer& t) {
  const std::string name = args.string("name");
  try {
    return t.tensor(name);
  } catch (const std::out_of_range& e) {
    range_error(args.where("name") + ": " + e.what());
  }
}

Napi::Value create_trainer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args args(info, "createTrainer");
  Config c = read_config(args);
  const std::string device_text = args.has("device") ? args.string("device") : "cpu";
  backend::Device device;
  try {
    device = backend::parse_device(device_text);
  } catch (const std::invalid_argument& e) {
    range_error(args.where("device") + ": " + e.what());
  }
  backend::Backend& be = backend::get(device);  // throws naming why the device is not usable
  auto* h = new TrainerHandle();
  try {
    h->trainer = std::make_unique<model::Trainer>(c, be);
  } catch (...) {
    delete h;
    throw;
  }
  Napi::Object o = Napi::Object::New(env);
  // The state (four arrays) is memory the JS engine cannot see; telling it lets its garbage collector
  // weigh the handle (and collect other garbage sooner), as it would four Float32Arrays.
  h->external_bytes = 4 * h->trainer->layout().total * int64_t(sizeof(float));
  Napi::MemoryManagement::AdjustExternalMemory(env, h->external_bytes);
  o.Set("_native", Napi::External<TrainerHandle>::New(env, h, [](Napi::Env e, TrainerHandle* p) {
    Napi::MemoryManagement::AdjustExternalMemory(e, -p->external_bytes);
    delete p;
  }));
  o.Set("device", be.device().str());
  o.Set("totalParams", Napi::Number::New(env, double(h->trainer->layout().total)));
  o.Set("config", args.object("config"));
  auto method = [&](const char* name, Napi::Function::Callback cb) { o.Set(name, Napi::Function::New(env, cb, name)); };
  method("init", [](const Napi::CallbackInfo& i) {
    return quick_trainer_call(i, "init", [&](Args& a, model::Trainer& t) -> Napi::Value {
      t.init(static_cast<uint64_t>(a.integer("seed", 0, int64_t(1) << 53)));
      return i.Env().Undefined();
    });
  });
  method("loadTensor", [](const Napi::CallbackInfo& i) {
    return quick_trainer_call(i, "loadTensor", [&](Args& a, model::Trainer& t) -> Napi::Value {
      const model::Tensor& tensor = named_tensor(a, t);
      const model::Slot slot = read_slot(a);
      auto data = a.f32("data", 0);
      if (data.size != tensor.size)
        range_error(a.where("data") + " has " + std::to_string(data.size) + " elements but " + tensor.name + " has " +
                    std::to_string(tensor.size));
      t.load(slot, tensor.name, data.data);
      return i.Env().Undefined();
    });
  });
  method("readTensor", [](const Napi::CallbackInfo& i) {
    return quick_trainer_call(i, "readTensor", [&](Args& a, model::Trainer& t) -> Napi::Value {
      const model::Tensor& tensor = named_tensor(a, t);
      const model::Slot slot = read_slot(a);
      Napi::Float32Array out = Napi::Float32Array::New(i.Env(), static_cast<size_t>(tensor.size));
      t.store(slot, tensor.name, out.Data());
      return out;
    });
  });
  method("lossAndGradAsync", [](const Napi::CallbackInfo& i) {
    return run_trainer_call(i, "lossAndGrad", true, [](Args& a, model::Trainer& t) -> StatsWork {
      auto b = std::make_shared<Batch>(read_batch(a, t.config(), true));
      model::Trainer* tp = &t;
      return [tp, b] { return tp->loss_and_grad(b->tokens.data(), b->targets.data(), b->micro, b->batch, b->seq); };
    });
  });
  method("reduceGradients", [](const Napi::CallbackInfo& i) -> Napi::Value {  // no arguments
    try {
      TrainerHandle* h = trainer_of(i);
      claim(h->busy);
      try { h->trainer->reduce_gradients(); } catch (...) { h->busy = false; throw; }
      h->busy = false;
    } catch (...) {
      throw_js(i.Env(), "reduceGradients");
    }
    return i.Env().Undefined();
  });
  // Data-parallel runs: the gradient-reduction hook becomes the mean over ranks (an all-reduce sum,
  // then 1/size); host memory is reduced in place, device memory through a host copy.
  method("setCommunicator", [](const Napi::CallbackInfo& i) -> Napi::Value {
    return quick_trainer_call(i, "setCommunicator", [&](Args& a, model::Trainer& t) -> Napi::Value {
      std::shared_ptr<dist::Communicator> comm = communicator_of(a.object("communicator"));
      t.set_gradient_reduction([comm](float* g, int64_t n, backend::Backend& be) {
        if (comm->size() == 1) return;
        if (be.device().kind == backend::DeviceKind::Cpu) {
          comm->allreduce_sum(g, n);
        } else {
          std::vector<float> host(static_cast<size_t>(n));
          be.download(host.data(), g, n * int64_t(sizeof(float)));
          comm->allreduce_sum(host.data(), n);
          be.upload(g, host.data(), n * int64_t(sizeof(float)));
        }
        be.scale_inplace(n, g, 1.f / static_cast<float>(comm->size()));
      });
      return i.Env().Undefined();
    });
  });
  method("reduceGradientsAsync", [](const Napi::CallbackInfo& i) -> Napi::Value {  // no arguments
    try {
      TrainerHandle* h = trainer_of(i);
      model::Trainer* tp = h->trainer.get();
      return run_claimed(i, h->busy, true, [tp] {
        tp->reduce_gradients();
        return model::StepStats{};
      });
    } catch (...) {
      throw_js(i.Env(), "reduceGradientsAsync");
      return i.Env().Undefined();
    }
  });
  method("applyOptimizer", [](const Napi::CallbackInfo& i) {
    return quick_trainer_call(i, "applyOptimizer", [&](Args& a, model::Trainer& t) -> Napi::Value {
      const model::OptimSettings o = read_optim(a);
      const double loss = a.number("loss");
      Napi::Object r = Napi::Object::New(i.Env());
      r.Set("gradNorm", t.apply_optimizer(o, loss));
      return r;
    });
  });
  method("trainStepAsync", [](const Napi::CallbackInfo& i) {
    return run_trainer_call(i, "trainStep", true, [](Args& a, model::Trainer& t) -> StatsWork {
      auto b = std::make_shared<Batch>(read_batch(a, t.config(), true));
      const model::OptimSettings o = read_optim(a);
      model::Trainer* tp = &t;
      return [tp, b, o] { return tp->train_step(b->tokens.data(), b->targets.data(), b->micro, b->batch, b->seq, o); };
    });
  });
  method("evaluateAsync", [](const Napi::CallbackInfo& i) {
    return run_trainer_call(i, "evaluate", true, [](Args& a, model::Trainer& t) -> StatsWork {
      auto b = std::make_shared<Batch>(read_batch(a, t.config(), true));
      model::Trainer* tp = &t;
      return [tp, b] { return tp->evaluate(b->tokens.data(), b->targets.data(), b->micro, b->batch, b->seq); };
    });
  });
  method("createSession", [](const Napi::CallbackInfo& i) -> Napi::Value {
    try {
      TrainerHandle* h = trainer_of(i);
      Args a(i, "createSession");
      Napi::Object self = i.This().As<Napi::Object>();
      Napi::Value cfg = self.Get("config");
      Napi::Value fallback = cfg.IsObject() ? cfg.As<Napi::Object>().Get("routing") : Napi::Value();
      std::vector<Napi::Reference<Napi::Value>> keep;
      keep.push_back(Napi::Persistent(i.This()));
      return create_session_over(a, h->trainer->live_weights(), fallback, std::move(keep));
    } catch (...) {
      throw_js(i.Env(), "createSession");
      return i.Env().Undefined();
    }
  });
  return o;
}

}  // namespace

void register_model(Napi::Env env, Napi::Object exports) {
  export_function(env, exports, "modelLayout", model_layout);
  export_function(env, exports, "createModel", create_model);
  export_function(env, exports, "createTrainer", create_trainer);
  export_kernel(env, exports, "initParams", bind_init_params);
}

}  // namespace dsmoe::bind

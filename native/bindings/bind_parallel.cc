// Data-parallel collectives (parallel/comm.h): distInfo() says whether this build has them;
// createCommunicator() joins the ranks of a run and returns an object with
//   allreduceAsync(Float32Array | Float64Array)   sums over ranks in place
//   barrierAsync()
// The trainer's setCommunicator(comm) (bind_model.cc) installs the gradient all-reduce.
#include <napi.h>

#include <functional>

#include "args.h"
#include "parallel_handle.h"
#include "register.h"

namespace dsmoe::bind {
namespace {

struct CommHandle {
  std::shared_ptr<dist::Communicator> comm;
};

class CollectiveWorker : public Napi::AsyncWorker {
 public:
  CollectiveWorker(Napi::Env env, Napi::Object owner, Napi::Value keep, std::function<void()> fn)
      : Napi::AsyncWorker(env), fn_(std::move(fn)), deferred_(Napi::Promise::Deferred::New(env)) {
    owner_ = Napi::Persistent(owner);
    if (keep.IsObject()) keep_ = Napi::Persistent(keep.As<Napi::Object>());
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      fn_();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::function<void()> fn_;
  Napi::ObjectReference owner_, keep_;
  Napi::Promise::Deferred deferred_;
};

CommHandle* handle_of(const Napi::CallbackInfo& info) {
  Napi::Value n = info.This().IsObject() ? info.This().As<Napi::Object>().Get("_native") : Napi::Value();
  if (!n.IsExternal()) throw Napi::TypeError::New(info.Env(), "not a communicator made by createCommunicator");
  return n.As<Napi::External<CommHandle>>().Data();
}

Napi::Value dist_info(const Napi::CallbackInfo& info) {
  const dist::Info in = dist::info();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("available", in.available);
  o.Set("library", in.library.empty() ? info.Env().Null() : Napi::String::New(info.Env(), in.library));
  o.Set("reason", in.reason.empty() ? info.Env().Null() : Napi::String::New(info.Env(), in.reason));
  return o;
}

Napi::Value create_communicator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args args(info, "createCommunicator");
  dist::Options o;
  o.size = static_cast<int>(args.integer("size", 1, 1 << 20));
  o.rank = static_cast<int>(args.integer("rank", 0, o.size - 1));
  o.store_host = args.string("storeHost");
  o.store_port = static_cast<int>(args.integer("storePort", 1, 65535));
  o.prefix = args.has("prefix") ? args.string("prefix") : "";
  o.hostname = args.has("hostname") ? args.string("hostname") : "127.0.0.1";
  if (args.has("timeoutMs")) o.timeout_ms = args.integer("timeoutMs", 1, int64_t(1) << 40);
  auto* h = new CommHandle();
  try {
    h->comm = dist::connect(o);
  } catch (...) {
    delete h;
    throw;
  }
  Napi::Object obj = Napi::Object::New(env);
  obj.Set("_native", Napi::External<CommHandle>::New(env, h, [](Napi::Env, CommHandle* p) { delete p; }));
  obj.Set("rank", o.rank);
  obj.Set("size", o.size);
  obj.Set("allreduceAsync", Napi::Function::New(env, [](const Napi::CallbackInfo& i) -> Napi::Value {
    CommHandle* hh = handle_of(i);
    if (i.Length() < 1 || !i[0].IsTypedArray())
      throw Napi::TypeError::New(i.Env(), "allreduceAsync: expected a Float32Array or Float64Array");
    Napi::TypedArray t = i[0].As<Napi::TypedArray>();
    const auto type = t.TypedArrayType();
    if (type != napi_float32_array && type != napi_float64_array)
      throw Napi::TypeError::New(i.Env(), "allreduceAsync: expected a Float32Array or Float64Array");
    void* data = static_cast<char*>(t.ArrayBuffer().Data()) + t.ByteOffset();
    const int64_t n = static_cast<int64_t>(t.ElementLength());
    auto fn = [hh, data, n, type] {
      if (type == napi_float32_array) hh->comm->allreduce_sum(static_cast<float*>(data), n);
      else hh->comm->allreduce_sum(static_cast<double*>(data), n);
    };
    auto* w = new CollectiveWorker(i.Env(), i.This().As<Napi::Object>(), t, fn);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }, "allreduceAsync"));
  obj.Set("barrierAsync", Napi::Function::New(env, [](const Napi::CallbackInfo& i) -> Napi::Value {
    CommHandle* hh = handle_of(i);
    auto* w = new CollectiveWorker(i.Env(), i.This().As<Napi::Object>(), i.Env().Undefined(), [hh] {
      hh->comm->barrier();
    });
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }, "barrierAsync"));
  return obj;
}

}  // namespace

std::shared_ptr<dist::Communicator> communicator_of(Napi::Value v) {
  Napi::Value n = v.IsObject() ? v.As<Napi::Object>().Get("_native") : Napi::Value();
  if (!n.IsExternal()) throw Napi::TypeError::New(v.Env(), "expected a communicator made by createCommunicator");
  return n.As<Napi::External<CommHandle>>().Data()->comm;
}

void register_dist(Napi::Env env, Napi::Object exports) {
  export_function(env, exports, "distInfo", dist_info);
  export_function(env, exports, "createCommunicator", create_communicator);
}

}  // namespace dsmoe::bind

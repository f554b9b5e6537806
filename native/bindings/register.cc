#include "register.h"

#include <exception>
#include <new>

namespace dsmoe::bind {
namespace {

struct KernelData {
  std::string name;
  Binder binder;
};

class KernelWorker : public Napi::AsyncWorker {
 public:
  KernelWorker(Napi::Env env, std::string name, Work work, std::vector<Napi::Reference<Napi::Value>> refs)
      : Napi::AsyncWorker(env), name_(std::move(name)), work_(std::move(work)), refs_(std::move(refs)),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (const std::exception& e) {
      SetError(name_ + ": " + e.what());
    } catch (...) {
      SetError(name_ + ": unknown native error");
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::string name_;
  Work work_;
  std::vector<Napi::Reference<Napi::Value>> refs_;  // keep the typed arrays alive until done
  Napi::Promise::Deferred deferred_;
};

}  // namespace

void throw_js(Napi::Env env, const std::string& fn) {
  try {
    throw;
  } catch (const ArgError& e) {
    if (e.kind == ArgError::Type) Napi::TypeError::New(env, e.message).ThrowAsJavaScriptException();
    else Napi::RangeError::New(env, e.message).ThrowAsJavaScriptException();
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
  } catch (const std::bad_alloc&) {
    Napi::RangeError::New(env, fn + ": out of memory").ThrowAsJavaScriptException();
  } catch (const std::exception& e) {
    Napi::Error::New(env, fn + ": " + e.what()).ThrowAsJavaScriptException();
  } catch (...) {
    Napi::Error::New(env, fn + ": unknown native error").ThrowAsJavaScriptException();
  }
}

void export_kernel(Napi::Env env, Napi::Object exports, const char* name, Binder binder) {
  auto* data = new KernelData{name, binder};  // lives as long as the addon
  exports.Set(name, Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    auto* d = static_cast<KernelData*>(info.Data());
    try {
      Args args(info, d->name.c_str());
      Work work = d->binder(args);
      work();
    } catch (...) {
      throw_js(info.Env(), d->name);
    }
    return info.Env().Undefined();
  }, name, data));
  std::string async_name = std::string(name) + "Async";
  exports.Set(async_name, Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    auto* d = static_cast<KernelData*>(info.Data());
    try {
      Args args(info, d->name.c_str());
      Work work = d->binder(args);
      auto* worker = new KernelWorker(info.Env(), d->name, std::move(work), args.take_refs());
      Napi::Promise p = worker->promise();
      worker->Queue();
      return p;
    } catch (...) {
      throw_js(info.Env(), d->name);
      return info.Env().Undefined();
    }
  }, async_name, data));
}

namespace {
struct FunctionData {
  std::string name;
  ValueFn fn;
};
}  // namespace

void export_function(Napi::Env env, Napi::Object exports, const char* name, ValueFn fn) {
  auto* data = new FunctionData{name, fn};  // lives as long as the addon
  exports.Set(name, Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    auto* d = static_cast<FunctionData*>(info.Data());
    try {
      return d->fn(info);
    } catch (...) {
      throw_js(info.Env(), d->name);  // errors other than argument errors are prefixed with the function's name
      return info.Env().Undefined();
    }
  }, name, data));
}

}  // namespace dsmoe::bind

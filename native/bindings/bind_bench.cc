// Benchmark-only exports: yardsticks (FMA peak, naive GEMM, read bandwidth) and the peer library
// OpenBLAS, loaded with dlopen only when a benchmark asks, so it is never a runtime dependency.
#include <dlfcn.h>

#include "../kernels/cpu/bench_support.h"
#include "register.h"

namespace dsmoe::bind {
namespace {

Napi::Value fma_peak(const Napi::CallbackInfo& info) {
  Args args(info, "measureFmaPeak");
  int threads = static_cast<int>(args.integer("threads", 1, 256));
  double seconds = args.number_or("seconds", 0.3);
  if (seconds <= 0 || seconds > 60) range_error("measureFmaPeak: seconds must be in (0, 60]");
  return Napi::Number::New(info.Env(), cpu::measure_fma_peak(threads, seconds));
}

Napi::Value read_bandwidth(const Napi::CallbackInfo& info) {
  Args args(info, "measureReadBandwidth");
  int64_t bytes = args.integer("bytes", 1 << 20, int64_t(1) << 36);
  int threads = static_cast<int>(args.integer("threads", 1, 256));
  int reps = static_cast<int>(args.integer_or("reps", 5, 1, 1000));
  return Napi::Number::New(info.Env(), cpu::measure_read_bandwidth(bytes, threads, reps));
}

// naiveGemm({m, n, k, a [m,k], b [n,k], c [m,n]})
Work bind_naive(Args& args) {
  int64_t m = args.integer("m", 0), n = args.integer("n", 0), k = args.integer("k", 0);
  auto a = args.f32_in("a", checked_mul(m, k, args.where("a")));
  auto b = args.f32_in("b", checked_mul(n, k, args.where("b")));
  auto c = args.f32("c", checked_mul(m, n, args.where("c")));
  return [=] { cpu::naive_gemm_nt(m, n, k, a.data, b.data, c.data); };
}

using CblasSgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int,
                            float, float*, int);
using SetThreads = void (*)(int);
CblasSgemm g_sgemm = nullptr;
SetThreads g_set_threads = nullptr;

// openblasLoad() -> {loaded, library, config} : tries the usual sonames once.
Napi::Value openblas_load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  static void* handle = nullptr;
  static std::string lib;
  const char* names[] = {"libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0"};
  for (const char* name : names) {
    if (handle) break;
    handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (handle) lib = name;
  }
  o.Set("loaded", handle != nullptr);
  if (!handle) return o;
  g_sgemm = reinterpret_cast<CblasSgemm>(dlsym(handle, "cblas_sgemm"));
  g_set_threads = reinterpret_cast<SetThreads>(dlsym(handle, "openblas_set_num_threads"));
  auto get_config = reinterpret_cast<const char* (*)()>(dlsym(handle, "openblas_get_config"));
  auto get_core = reinterpret_cast<const char* (*)()>(dlsym(handle, "openblas_get_corename"));
  o.Set("loaded", g_sgemm != nullptr);
  o.Set("library", lib);
  o.Set("config", get_config ? get_config() : "");
  o.Set("core", get_core ? get_core() : "");
  return o;
}

// openblasSgemm({threads, transA, transB, m, n, k, a, b, c}) row-major, lda/ldb/ldc packed.
Work bind_openblas_sgemm(Args& args) {
  if (!g_sgemm) type_error("openblasSgemm: OpenBLAS is not loaded (call openblasLoad first)");
  int threads = static_cast<int>(args.integer("threads", 1, 256));
  bool ta = args.boolean_or("transA", false), tb = args.boolean_or("transB", false);
  int64_t m = args.integer("m", 0), n = args.integer("n", 0), k = args.integer("k", 0);
  auto a = args.f32_in("a", checked_mul(m, k, args.where("a")));
  auto b = args.f32_in("b", checked_mul(k, n, args.where("b")));
  auto c = args.f32("c", checked_mul(m, n, args.where("c")));
  return [=] {
    if (g_set_threads) g_set_threads(threads);
    const int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
    g_sgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, static_cast<int>(m),
            static_cast<int>(n), static_cast<int>(k), 1.f, a.data, static_cast<int>(ta ? m : k), b.data,
            static_cast<int>(tb ? k : n), 0.f, c.data, static_cast<int>(n));
  };
}

}  // namespace

void register_bench(Napi::Env env, Napi::Object exports) {
  export_function(env, exports, "measureFmaPeak", fma_peak);
  export_function(env, exports, "measureReadBandwidth", read_bandwidth);
  export_kernel(env, exports, "naiveGemm", bind_naive);
  export_function(env, exports, "openblasLoad", openblas_load);
  export_kernel(env, exports, "openblasSgemm", bind_openblas_sgemm);
}

}  // namespace dsmoe::bind

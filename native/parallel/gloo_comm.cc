// The Gloo implementation of dist::Communicator: TCP transport, rendezvous through TcpStore (under
// a per-run prefix), gloo::allreduce (ring) for sums, gloo::barrier.
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>

#include <mutex>
#include <stdexcept>

#include "comm.h"
#include "tcp_store.h"

namespace dsmoe::dist {
namespace {

using ReduceFn = void (*)(void*, const void*, const void*, size_t);

class GlooCommunicator : public Communicator {
 public:
  explicit GlooCommunicator(const Options& o) {
    const std::chrono::milliseconds timeout(o.timeout_ms);
    store_ = std::make_unique<TcpStore>(o.store_host, o.store_port, timeout);
    prefixed_ = std::make_unique<gloo::rendezvous::PrefixStore>(o.prefix, *store_);
    gloo::transport::tcp::attr attr;
    attr.hostname = o.hostname;
    device_ = gloo::transport::tcp::CreateDevice(attr);
    ctx_ = std::make_shared<gloo::rendezvous::Context>(o.rank, o.size);
    ctx_->setTimeout(timeout);
    try {
      ctx_->connectFullMesh(*prefixed_, device_);
    } catch (const std::exception& e) {
      throw std::runtime_error("rank " + std::to_string(o.rank) + " could not connect to the other " +
                               std::to_string(o.size - 1) + " rank(s): " + e.what());
    }
  }
  int rank() const override { return ctx_->rank; }
  int size() const override { return ctx_->size; }
  void allreduce_sum(float* data, int64_t n) override {
    reduce(data, n, static_cast<ReduceFn>(&gloo::sum<float>));
  }
  void allreduce_sum(double* data, int64_t n) override {
    reduce(data, n, static_cast<ReduceFn>(&gloo::sum<double>));
  }
  void barrier() override {
    guard("barrier", [&] {
      gloo::BarrierOptions opts(ctx_);
      opts.setTag(next_tag());
      gloo::barrier(opts);
    });
  }

 private:
  template <typename T>
  void reduce(T* data, int64_t n, ReduceFn fn) {
    if (n <= 0 || ctx_->size == 1) return;
    guard("all-reduce", [&] {
      gloo::AllreduceOptions opts(ctx_);
      opts.setOutput(data, static_cast<size_t>(n));
      opts.setReduceFunction(fn);
      opts.setTag(next_tag());
      gloo::allreduce(opts);
    });
  }
  template <typename F>
  void guard(const char* what, F&& f) {
    // One collective at a time: the trainer's gradient hook and JS calls may come from different threads.
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_) throw std::runtime_error(std::string(what) + ": the connection to the other ranks is already lost");
    try {
      f();
    } catch (const std::exception& e) {
      broken_ = true;
      throw std::runtime_error(std::string(what) + " on rank " + std::to_string(ctx_->rank) + " of " +
                               std::to_string(ctx_->size) + " failed (another rank stopped or is unreachable): " +
                               e.what());
    }
  }
  uint32_t next_tag() { return tag_++ & 0x7fffffff; }

  std::unique_ptr<TcpStore> store_;
  std::unique_ptr<gloo::rendezvous::PrefixStore> prefixed_;
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::rendezvous::Context> ctx_;
  uint32_t tag_ = 0;
  bool broken_ = false;
  std::mutex mu_;
};

}  // namespace

Info info() { return Info{true, "gloo", ""}; }

std::shared_ptr<Communicator> connect(const Options& o) {
  if (o.size < 1 || o.rank < 0 || o.rank >= o.size)
    throw std::invalid_argument("rank " + std::to_string(o.rank) + " is not in [0, " + std::to_string(o.size) + ")");
  return std::make_shared<GlooCommunicator>(o);
}

}  // namespace dsmoe::dist

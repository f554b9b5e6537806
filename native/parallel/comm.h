// Collective communication between the ranks of a data-parallel training run (docs/distributed.md).
// Each rank holds the whole model; after the backward, the trainer's gradient-reduction hook
// (model/trainer.h) averages the gradients over the ranks with allreduce_sum. The implementation
// is Gloo's (TCP transport, ring all-reduce) when the addon was built with it (DSMOE_DIST, like
// DSMOE_CUDA); without it connect() throws naming what to install (bindings/parallel_absent.cc).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace dsmoe::dist {

struct Options {
  int rank = 0;
  int size = 1;
  // The rendezvous key-value service (hosted by the rank-0 launcher, src/parallel/store.ts): ranks
  // publish their transport addresses under `prefix` and read each other's.
  std::string store_host = "127.0.0.1";
  int store_port = 0;
  std::string prefix;
  // The address this rank's transport listens on (reachable by every other rank).
  std::string hostname = "127.0.0.1";
  // Every collective (and the rendezvous) fails after this long without progress.
  int64_t timeout_ms = 120000;
};

struct Info {
  bool available = false;
  std::string library;  // "gloo" when available
  std::string reason;   // why not, when not available
};

Info info();

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Elementwise sum over ranks, in place; every rank ends with the same bits.
  virtual void allreduce_sum(float* data, int64_t n) = 0;
  virtual void allreduce_sum(double* data, int64_t n) = 0;
  virtual void barrier() = 0;
};

// Connects this rank to the others (blocks until all `size` ranks joined, or the timeout).
std::shared_ptr<Communicator> connect(const Options& options);

}  // namespace dsmoe::dist

#include "threadpool.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace dsmoe {
namespace {

thread_local bool tl_inside_task = false;

int default_threads() {
  if (const char* env = std::getenv("DSMOE_THREADS")) {
    char* end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && v >= 1 && v <= kMaxThreads) return static_cast<int>(v);
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

// Spin iterations (with a pause instruction, ~10–30 ns each) before a waiting thread sleeps on a
// condition variable. Kernels run back to back (a training step or a decode token issues dozens
// of parallel regions), so a worker that spins briefly picks up the next region without the
// ~5–10 µs of a futex wake-up (measured: a 64³ GEMM call 16–27 µs → 8–9 µs on 2 threads). The
// spin is short (tens of µs) because on an oversubscribed machine a spinning worker steals the core
// the caller needs: 40000 iterations made the same call 10× slower there.
constexpr int kSpinIterations = 4000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

class Pool {
 public:
  Pool() { resize(default_threads()); }
  ~Pool() { stop_workers(); }

  int size() const { return size_; }

  void resize(int n) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    stop_workers();
    size_ = n;
    stopping_.store(false);
    // A new worker must start at the current generation: otherwise it would mistake the last
    // parallel_for (already finished) for new work and run it again.
    const uint64_t g = generation_.load();
    for (int t = 1; t < n; ++t) workers_.emplace_back([this, t, g] { worker_loop(t, g); });
  }

  void run(int64_t n_tasks, const std::function<void(int64_t, int)>& body) {
    if (n_tasks <= 0) return;
    // Serial paths: one task, one thread, nested call, or the pool busy with another caller.
    std::unique_lock<std::mutex> run_lock(run_mutex_, std::defer_lock);
    if (n_tasks == 1 || size_ == 1 || tl_inside_task || !run_lock.try_lock()) {
      bool was_inside = tl_inside_task;
      tl_inside_task = true;
      for (int64_t i = 0; i < n_tasks; ++i) body(i, 0);
      tl_inside_task = was_inside;
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mutex_);
      body_ = &body;
      n_tasks_ = n_tasks;
      next_task_.store(0);
      active_.store(size_ - 1);
      generation_.fetch_add(1, std::memory_order_release);  // publishes body_ and n_tasks_
    }
    wake_.notify_all();
    work(0);
    for (int i = 0; i < kSpinIterations && active_.load(std::memory_order_acquire) != 0; ++i) cpu_relax();
    if (active_.load(std::memory_order_acquire) != 0) {
      std::unique_lock<std::mutex> lk(mutex_);
      done_.wait(lk, [this] { return active_.load() == 0; });
    }
    body_ = nullptr;
  }

 private:
  void work(int thread) {
    tl_inside_task = true;
    for (;;) {
      int64_t i = next_task_.fetch_add(1);
      if (i >= n_tasks_) break;
      (*body_)(i, thread);
    }
    tl_inside_task = false;
  }

  void worker_loop(int thread, uint64_t seen) {
    for (;;) {
      for (int i = 0; i < kSpinIterations && generation_.load(std::memory_order_acquire) == seen && !stopping_.load();
           ++i)
        cpu_relax();
      if (generation_.load(std::memory_order_acquire) == seen && !stopping_.load()) {
        std::unique_lock<std::mutex> lk(mutex_);
        wake_.wait(lk, [&] { return stopping_.load() || generation_.load() != seen; });
      }
      if (stopping_.load()) return;
      seen = generation_.load(std::memory_order_acquire);
      work(thread);
      if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(mutex_);  // the caller may be about to sleep on done_
        done_.notify_one();
      }
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(mutex_);
      stopping_.store(true);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::mutex run_mutex_;  // one parallel_for at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t, int)>* body_ = nullptr;
  std::atomic<int64_t> next_task_{0};
  int64_t n_tasks_ = 0;
  std::atomic<int> active_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
  int size_ = 1;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: workers must not be joined during static teardown
  return *p;
}

}  // namespace

void parallel_for(int64_t n_tasks, const std::function<void(int64_t, int)>& body) {
  pool().run(n_tasks, body);
}
int num_threads() { return pool().size(); }
void set_num_threads(int n) {
  if (n < 1) n = 1;
  if (n > kMaxThreads) n = kMaxThreads;
  if (n != pool().size()) pool().resize(n);
}

}  // namespace dsmoe

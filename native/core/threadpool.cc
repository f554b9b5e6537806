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

class Pool {
 public:
  Pool() { resize(default_threads()); }
  ~Pool() { stop_workers(); }

  int size() const { return size_; }

  void resize(int n) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    stop_workers();
    size_ = n;
    stopping_ = false;
    // A new worker must start at the current generation: otherwise it would mistake the last
    // parallel_for (already finished) for new work and run it again.
    for (int t = 1; t < n; ++t) workers_.emplace_back([this, t, g = generation_] { worker_loop(t, g); });
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
      active_ = size_ - 1;
      ++generation_;
    }
    wake_.notify_all();
    work(0);
    std::unique_lock<std::mutex> lk(mutex_);
    done_.wait(lk, [this] { return active_ == 0; });
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
      {
        std::unique_lock<std::mutex> lk(mutex_);
        wake_.wait(lk, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
      }
      work(thread);
      std::lock_guard<std::mutex> lk(mutex_);
      if (--active_ == 0) done_.notify_one();
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(mutex_);
      stopping_ = true;
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
  int active_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
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

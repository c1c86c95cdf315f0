// Steps N MuJoCo simulations in native threads with the GIL released.
//
// MuJoCo's Python bindings hold the GIL for the whole of mj_step, so a Python thread pool
// barely scales; mujoco.rollout scales but works on copies of the state and leaves no per-env
// MjData behind, which the observations (cinert, cfrc_ext, ...) need. This calls mj_step
// through function pointers taken from the libmujoco the Python package already loaded, so the
// build needs neither MuJoCo's headers nor its library, and the layout of mjData is never
// assumed: every field is addressed through pointers the Python side took from numpy views.
#include "embodied/mujoco_batch.h"

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/csrc/utils/pybind.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>

namespace embodied {
namespace {

using MjFunction = void (*)(const void* model, void* data);

// A persistent pool for jobs of a few hundred microseconds (one batched env step). Idle
// workers spin briefly, yielding the core, then sleep on a condition variable: waking a
// sleeping thread costs tens of microseconds, a tenth of a HalfCheetah batch step, while
// torch's OpenMP pool spin-waits without yielding, which on a small machine shared with
// other processes (renderers, env workers) made 2 threads slower than 1. Work is handed out
// one env at a time because envs in contact-rich states take several times longer.
class WorkerPool {
 public:
  explicit WorkerPool(int num_threads) {
    for (int t = 1; t < num_threads; ++t) workers_.emplace_back([this] { run(); });
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_.store(true);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls task(i) for every i in [0, n) across the pool and the calling thread.
  void parallel_for(int64_t n, const std::function<void(int64_t)>& task) {
    std::lock_guard<std::mutex> one_job_at_a_time(call_);
    task_ = &task;
    n_ = n;
    next_.store(0);
    pending_.store(static_cast<int>(workers_.size()));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    drain();
    while (pending_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
    task_ = nullptr;
  }

 private:
  static constexpr auto kSpin = std::chrono::microseconds(200);

  void drain() {
    for (int64_t i = next_.fetch_add(1); i < n_; i = next_.fetch_add(1)) (*task_)(i);
  }
  bool wait_for_job(uint64_t seen) {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    while (std::chrono::steady_clock::now() < until) {
      if (generation_.load(std::memory_order_acquire) != seen || stop_.load()) return !stop_.load();
      std::this_thread::yield();
    }
    std::unique_lock<std::mutex> lock(mutex_);
    wake_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
    return !stop_.load();
  }
  void run() {
    uint64_t seen = 0;  // the generation at construction: a worker that starts late still sees job 1
    while (wait_for_job(seen)) {
      seen = generation_.load(std::memory_order_acquire);
      drain();
      pending_.fetch_sub(1, std::memory_order_release);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex call_, mutex_;
  std::condition_variable wake_;
  const std::function<void(int64_t)>* task_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
};

WorkerPool& pool(int num_threads) {
  // One pool per size and process, never destroyed: envs asking for different sizes (even
  // from different Python threads) each keep theirs, so no pool can vanish under a running
  // job, and exit never joins threads. After fork() the child has none of the parent's worker
  // threads, so it starts its own pools and leaves the parent's copies untouched.
  static std::mutex lookup;
  static std::map<int, WorkerPool*> pools;
  static pid_t owner = getpid();
  std::lock_guard<std::mutex> lock(lookup);
  if (getpid() != owner) {
    pools.clear();
    owner = getpid();
  }
  WorkerPool*& p = pools[num_threads];
  if (p == nullptr) p = new WorkerPool(num_threads);
  return *p;
}

void check_int64_table(const at::Tensor& t, const char* name, int64_t rows, int64_t cols) {
  TORCH_CHECK_VALUE(t.device().is_cpu() && t.scalar_type() == at::kLong && t.is_contiguous(), name,
                    " must be a contiguous CPU int64 tensor");
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == rows && t.size(1) == cols, name, " must have shape [",
                    rows, ", ", cols, "], got ", t.sizes());
}

void check_float64_rows(const at::Tensor& t, const char* name, int64_t rows) {
  TORCH_CHECK_VALUE(t.device().is_cpu() && t.scalar_type() == at::kDouble && t.is_contiguous() && t.dim() == 2 &&
                        t.size(0) == rows,
                    name, " must be a contiguous CPU float64 tensor with ", rows, " rows, got ", t.sizes(), " ",
                    t.scalar_type());
}

// One env: write its controls, take `substeps` steps, run the post-step pass, gather fields.
void step_one(MjFunction step, MjFunction post, const void* model, void* data, double* ctrl_dst,
              const double* ctrl_src, int64_t nu, int64_t substeps, const int64_t* gather_ptrs,
              const int64_t* gather_lens, int64_t num_fields, double* out) {
  // a gather-only pass (substeps = 0, after a reset) leaves the controls alone
  if (substeps > 0 && nu > 0) std::memcpy(ctrl_dst, ctrl_src, sizeof(double) * nu);
  for (int64_t k = 0; k < substeps; ++k) step(model, data);
  if (substeps > 0 && post != nullptr) post(model, data);
  for (int64_t f = 0; f < num_fields; ++f) {
    std::memcpy(out, reinterpret_cast<const double*>(gather_ptrs[f]), sizeof(double) * gather_lens[f]);
    out += gather_lens[f];
  }
}

void mujoco_step_batch(int64_t step_fn, int64_t post_fn, const at::Tensor& envs, const at::Tensor& ctrl,
                       int64_t substeps, const at::Tensor& gather_ptrs, const at::Tensor& gather_lens,
                       at::Tensor& out, int64_t num_threads) {
  TORCH_CHECK_VALUE(step_fn != 0, "step_fn must be the address of mj_step");
  TORCH_CHECK_VALUE(num_threads >= 1 && num_threads <= 1024, "num_threads must be in [1, 1024], got ", num_threads);
  TORCH_CHECK_VALUE(substeps >= 0, "substeps must be >= 0, got ", substeps);
  const int64_t n = envs.size(0);
  check_int64_table(envs, "envs (model, data, ctrl pointers)", n, 3);
  check_float64_rows(ctrl, "ctrl", n);
  check_float64_rows(out, "out", n);
  const int64_t num_fields = gather_lens.numel();
  TORCH_CHECK_VALUE(gather_lens.device().is_cpu() && gather_lens.scalar_type() == at::kLong &&
                        gather_lens.is_contiguous() && gather_lens.dim() == 1,
                    "gather_lens must be a contiguous CPU int64 vector");
  check_int64_table(gather_ptrs, "gather_ptrs", n, num_fields);
  const int64_t* lens = gather_lens.data_ptr<int64_t>();
  int64_t width = 0;
  for (int64_t f = 0; f < num_fields; ++f) {
    TORCH_CHECK_VALUE(lens[f] >= 0, "gather_lens[", f, "] is negative");
    width += lens[f];
  }
  TORCH_CHECK_VALUE(out.size(1) == width, "out must have sum(gather_lens) = ", width, " columns, got ", out.size(1));

  const auto step = reinterpret_cast<MjFunction>(step_fn);
  const auto post = reinterpret_cast<MjFunction>(post_fn);
  const int64_t* env = envs.data_ptr<int64_t>();
  const int64_t* gptrs = gather_ptrs.data_ptr<int64_t>();
  const double* ctrl_src = ctrl.data_ptr<double>();
  const int64_t nu = ctrl.size(1);
  double* dst = out.data_ptr<double>();

  pybind11::gil_scoped_release no_gil;
  const std::function<void(int64_t)> one = [&](int64_t i) {
    const int64_t* e = env + 3 * i;
    step_one(step, post, reinterpret_cast<const void*>(e[0]), reinterpret_cast<void*>(e[1]),
             reinterpret_cast<double*>(e[2]), ctrl_src + i * nu, nu, substeps, gptrs + i * num_fields, lens,
             num_fields, dst + i * width);
  };
  if (n <= 1 || num_threads <= 1) {
    for (int64_t i = 0; i < n; ++i) one(i);
  } else {
    pool(static_cast<int>(num_threads)).parallel_for(n, one);
  }
}

}  // namespace

void bind_mujoco_batch(pybind11::module_& m) {
  m.def("mujoco_step_batch", &mujoco_step_batch, pybind11::arg("step_fn"), pybind11::arg("post_fn"),
        pybind11::arg("envs"), pybind11::arg("ctrl"), pybind11::arg("substeps"), pybind11::arg("gather_ptrs"),
        pybind11::arg("gather_lens"), pybind11::arg("out"), pybind11::arg("num_threads"),
        "Step N MuJoCo envs in native threads (GIL released): per env i, copy ctrl[i] to the address "
        "envs[i, 2], call step_fn(model=envs[i, 0], data=envs[i, 1]) `substeps` times, then post_fn "
        "(0 = none), then copy gather_lens[f] doubles from each gather_ptrs[i, f] into out[i]; envs are "
        "spread over `num_threads` threads.");
}

}  // namespace embodied

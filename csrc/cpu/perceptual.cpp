// Perceptual reward on the CPU: the parameters ([K, n], small) are validated up front, then
// rows of frames run in parallel, each scoring every step (embodied/perceptual.h) and
// combining the weighted scores into its reward.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <tuple>

#include "embodied/checks.h"
#include "embodied/perceptual.h"

namespace embodied {
namespace {

constexpr int64_t kGrain = 32768;  // gathered features per thread worth a parallel region

std::tuple<at::Tensor, at::Tensor> perceptual_reward_cpu(const at::Tensor& features_in,
                                                         const at::Tensor& index_in,
                                                         const at::Tensor& mean_in,
                                                         const at::Tensor& inv_std_in,
                                                         const at::Tensor& step_weights_in,
                                                         bool log_space) {
  check_perceptual_inputs(features_in, index_in, mean_in, inv_std_in, step_weights_in);
  const at::Tensor x = features_in.contiguous();
  const at::Tensor index = index_in.contiguous();
  const at::Tensor mean = mean_in.contiguous();
  const at::Tensor inv_std = inv_std_in.contiguous();
  const at::Tensor step_weights = step_weights_in.contiguous();
  const int64_t B = x.size(0), D = x.size(1), K = index.size(0), n = index.size(1);
  check_perceptual_parameters(D, index, mean, inv_std, step_weights, log_space);
  at::Tensor reward = at::empty({B}, x.options());
  at::Tensor step_scores = at::empty({B, K}, x.options());

  std::atomic<bool> nonfinite_distance{false};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "embodied_perceptual_reward_cpu", [&] {
    using S = scalar_t;
    using A = at::opmath_type<S>;
    const S* xs = x.const_data_ptr<S>();
    const int64_t* idx = index.const_data_ptr<int64_t>();
    const S* m = mean.const_data_ptr<S>();
    const S* s = inv_std.const_data_ptr<S>();
    const S* w = step_weights.const_data_ptr<S>();
    S* scores = step_scores.mutable_data_ptr<S>();
    S* out = reward.mutable_data_ptr<S>();
    at::parallel_for(0, B, std::max<int64_t>(1, kGrain / (K * n)), [&](int64_t b0, int64_t b1) {
      bool finite = true;
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t g = 0; g < K; ++g) {
          const A q = perceptual_sq_distance<A>(xs + b * D, idx + g * n, m + g * n, s + g * n, n);
          finite &= std::isfinite(q);
          scores[b * K + g] = static_cast<S>(perceptual_step_score(q, log_space));
        }
        out[b] = static_cast<S>(perceptual_combine<A>(scores + b * K, w, K, log_space));
      }
      if (!finite) nonfinite_distance.store(true, std::memory_order_relaxed);
    });
  });
  if (nonfinite_distance.load()) check_perceptual_features(features_in, index_in);
  return {reward, step_scores};
}

}  // namespace

TORCH_LIBRARY_IMPL(embodied, CPU, m) { m.impl("perceptual_reward", &perceptual_reward_cpu); }

}  // namespace embodied

// Perceptual reward on NVIDIA GPUs, in three launches on the current stream:
//   1. the [K, n] parameters are validated (index in [0, D), mean and step_weights finite,
//      inv_std finite and > 0); a failure flags the workspace and the next two launches
//      return at once, so a bad index is never read through;
//   2. one thread per (frame, step) pair computes the step score (embodied/perceptual.h);
//   3. one thread per frame combines its weighted step scores into the reward.
// The host reads the flags back once, at the end, and only then finds the culprit.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "embodied/checks.h"
#include "embodied/perceptual.h"

namespace embodied {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

// Slots of the small int workspace read back by the host.
enum Flag { kBadParameters = 0, kNonfiniteDistance, kFlags };

unsigned blocks_for(int64_t work) {
  return static_cast<unsigned>(std::min<int64_t>((work + kThreads - 1) / kThreads, kMaxBlocks));
}

template <typename S>
__global__ void check_parameters_kernel(const int64_t* __restrict__ index,
                                        const S* __restrict__ mean, const S* __restrict__ inv_std,
                                        const S* __restrict__ step_weights, int* __restrict__ flags,
                                        int64_t K, int64_t n, int64_t D, bool log_space) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < K * n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = index[i];
    const S s = inv_std[i];
    bool ok = c >= 0 && c < D && isfinite(mean[i]) && isfinite(s) && s > S(0);
    if (i < K) ok = ok && isfinite(step_weights[i]) && (!log_space || step_weights[i] > S(0));
    if (!ok) flags[kBadParameters] = 1;
  }
}

// scores[b * K + g] for each (frame b, step g).
template <typename S>
__global__ void step_scores_kernel(const S* __restrict__ features,
                                   const int64_t* __restrict__ index, const S* __restrict__ mean,
                                   const S* __restrict__ inv_std, S* __restrict__ scores,
                                   int* __restrict__ flags, int64_t B, int64_t D, int64_t K,
                                   int64_t n, bool log_space) {
  using A = at::opmath_type<S>;
  if (flags[kBadParameters] != 0) return;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < B * K;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / K, g = i % K;
    const A q = perceptual_sq_distance<A>(features + b * D, index + g * n, mean + g * n,
                                          inv_std + g * n, n);
    if (!isfinite(q)) flags[kNonfiniteDistance] = 1;
    scores[i] = static_cast<S>(perceptual_step_score(q, log_space));
  }
}

template <typename S>
__global__ void reward_kernel(const S* __restrict__ scores, const S* __restrict__ step_weights,
                              S* __restrict__ reward, const int* __restrict__ flags, int64_t B,
                              int64_t K, bool log_space) {
  using A = at::opmath_type<S>;
  if (flags[kBadParameters] != 0) return;
  for (int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; b < B;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    reward[b] = static_cast<S>(perceptual_combine<A>(scores + b * K, step_weights, K, log_space));
  }
}

std::tuple<at::Tensor, at::Tensor> perceptual_reward_cuda(const at::Tensor& features_in,
                                                          const at::Tensor& index_in,
                                                          const at::Tensor& mean_in,
                                                          const at::Tensor& inv_std_in,
                                                          const at::Tensor& step_weights_in,
                                                          bool log_space) {
  check_perceptual_inputs(features_in, index_in, mean_in, inv_std_in, step_weights_in);
  const c10::cuda::CUDAGuard guard(features_in.device());
  const at::Tensor x = features_in.contiguous();
  const at::Tensor index = index_in.contiguous();
  const at::Tensor mean = mean_in.contiguous();
  const at::Tensor inv_std = inv_std_in.contiguous();
  const at::Tensor step_weights = step_weights_in.contiguous();
  const int64_t B = x.size(0), D = x.size(1), K = index.size(0), n = index.size(1);
  at::Tensor reward = at::empty({B}, x.options());
  at::Tensor step_scores = at::empty({B, K}, x.options());
  at::Tensor flags = at::zeros({kFlags}, x.options().dtype(at::kInt));
  int* f = flags.mutable_data_ptr<int>();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "embodied_perceptual_reward_cuda", [&] {
    using S = scalar_t;
    check_parameters_kernel<S><<<blocks_for(K * n), kThreads, 0, stream>>>(
        index.const_data_ptr<int64_t>(), mean.const_data_ptr<S>(), inv_std.const_data_ptr<S>(),
        step_weights.const_data_ptr<S>(), f, K, n, D, log_space);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (B == 0) return;  // still validated the parameters above
    step_scores_kernel<S><<<blocks_for(B * K), kThreads, 0, stream>>>(
        x.const_data_ptr<S>(), index.const_data_ptr<int64_t>(), mean.const_data_ptr<S>(),
        inv_std.const_data_ptr<S>(), step_scores.mutable_data_ptr<S>(), f, B, D, K, n, log_space);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    reward_kernel<S><<<blocks_for(B), kThreads, 0, stream>>>(
        step_scores.const_data_ptr<S>(), step_weights.const_data_ptr<S>(),
        reward.mutable_data_ptr<S>(), f, B, K, log_space);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });

  // One small device-to-host copy validates the parameters and every distance.
  const at::Tensor host = flags.cpu();
  const int* bad = host.const_data_ptr<int>();
  if (bad[kBadParameters] != 0) {
    check_perceptual_parameters(D, index.cpu(), mean.cpu(), inv_std.cpu(), step_weights.cpu(),
                                log_space);
    TORCH_INTERNAL_ASSERT(false, "perceptual_reward: the device flagged a parameter that the "
                          "host check passed");
  }
  if (bad[kNonfiniteDistance] != 0) check_perceptual_features(features_in, index_in);
  return {reward, step_scores};
}

}  // namespace

TORCH_LIBRARY_IMPL(embodied, CUDA, m) { m.impl("perceptual_reward", &perceptual_reward_cuda); }

}  // namespace embodied

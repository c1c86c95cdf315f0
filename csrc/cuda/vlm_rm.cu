// VLM-RM reward on NVIDIA GPUs: a tiny kernel reduces the goal/baseline dot
// products once, then one warp per image embedding computes its three dot
// products with coalesced loads and applies the closed form (embodied/vlm_rm.h).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "embodied/checks.h"
#include "embodied/vlm_rm.h"

namespace embodied {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;
constexpr int kPrepThreads = 256;

// Slots of the small double workspace shared by both kernels and read back by the host.
enum Slot { kGG = 0, kGD, kDD, kBad, kSlots };

template <typename A>
__device__ A warp_sum(A v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// direction = goal - baseline; work[kGG, kGD, kDD] = g.g, g.d, d.d. One block.
template <typename S>
__global__ void goal_dots_kernel(const S* __restrict__ goal, const S* __restrict__ baseline,
                                 S* __restrict__ direction, double* __restrict__ work, int64_t D) {
  __shared__ double partial[3][kPrepThreads / kWarp];
  double gg = 0, gd = 0, dd = 0;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const double g = goal[i];
    const S rounded = goal[i] - baseline[i];  // as the CPU path rounds it
    direction[i] = rounded;
    const double d = rounded;
    gg += g * g;
    gd += g * d;
    dd += d * d;
  }
  gg = warp_sum(gg);
  gd = warp_sum(gd);
  dd = warp_sum(dd);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (lane == 0) {
    partial[0][warp] = gg;
    partial[1][warp] = gd;
    partial[2][warp] = dd;
  }
  __syncthreads();
  if (threadIdx.x < 3) {
    double s = 0;
    for (int w = 0; w < kPrepThreads / kWarp; ++w) s += partial[threadIdx.x][w];
    work[threadIdx.x] = s;  // kGG, kGD, kDD in order
  }
}

template <typename S>
__global__ void vlm_rm_kernel(const S* __restrict__ x, const S* __restrict__ goal,
                              const S* __restrict__ direction, double* __restrict__ work,
                              S* __restrict__ out, int64_t B, int64_t D, double alpha) {
  using A = double;  // as the CPU path: no overflow of |x|^2 for large float embeddings
  const int64_t row = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= B) return;
  const S* xr = x + row * D;
  A xx = 0, xg = 0, xd = 0;
  for (int64_t i = lane; i < D; i += kWarp) {
    const A v = xr[i];
    xx += v * v;
    xg += v * static_cast<A>(goal[i]);
    xd += v * static_cast<A>(direction[i]);
  }
  xx = warp_sum(xx);
  xg = warp_sum(xg);
  xd = warp_sum(xd);
  if (lane == 0) {
    const S r = static_cast<S>(
        vlm_rm_from_dots<A>(xx, xg, xd, work[kGG], work[kGD], work[kDD], alpha, A(1e-12)));
    out[row] = r;
    if (!isfinite(r)) work[kBad] = 1.0;
  }
}

at::Tensor vlm_rm_reward_cuda(const at::Tensor& image_embeds_in, const at::Tensor& goal_in,
                              const at::Tensor& baseline_in, double alpha) {
  check_vlm_rm_inputs(image_embeds_in, goal_in, baseline_in, alpha);
  const c10::cuda::CUDAGuard guard(image_embeds_in.device());
  const at::Tensor x = image_embeds_in.contiguous();
  const at::Tensor goal = goal_in.contiguous();
  const at::Tensor baseline = baseline_in.contiguous();
  const int64_t B = x.size(0), D = x.size(1);
  at::Tensor rewards = at::empty({B}, x.options());
  at::Tensor direction = at::empty({D}, x.options());
  at::Tensor work = at::zeros({kSlots}, x.options().dtype(at::kDouble));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "embodied_vlm_rm_reward_cuda", [&] {
    goal_dots_kernel<scalar_t><<<1, kPrepThreads, 0, stream>>>(
        goal.const_data_ptr<scalar_t>(), baseline.const_data_ptr<scalar_t>(),
        direction.mutable_data_ptr<scalar_t>(), work.mutable_data_ptr<double>(), D);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (B == 0) return;  // still validated goal and baseline above
    const auto blocks = static_cast<unsigned>((B + kRowsPerBlock - 1) / kRowsPerBlock);
    vlm_rm_kernel<scalar_t><<<blocks, kRowsPerBlock * kWarp, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), goal.const_data_ptr<scalar_t>(),
        direction.const_data_ptr<scalar_t>(), work.mutable_data_ptr<double>(),
        rewards.mutable_data_ptr<scalar_t>(), B, D, alpha);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });

  // One small device-to-host copy validates the goal direction and every reward.
  const at::Tensor host = work.cpu();
  const double* w = host.const_data_ptr<double>();
  check_vlm_rm_goal(w[kGG], w[kDD], alpha, goal_in, baseline_in);
  if (w[kBad] != 0.0) throw_vlm_rm_nonfinite(image_embeds_in, goal_in, baseline_in);
  return rewards;
}

}  // namespace

TORCH_LIBRARY_IMPL(embodied, CUDA, m) { m.impl("vlm_rm_reward", &vlm_rm_reward_cuda); }

}  // namespace embodied

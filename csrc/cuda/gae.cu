// GAE on NVIDIA GPUs. Wide batches: one thread per env walks back in time, and
// each step's loads are coalesced across the warp. Few, long envs: one block per
// env splits time into per-thread segments, composes each segment's affine map,
// scans the maps across the block, and replays each segment from its carry-in.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>


#include "embodied/checks.h"
#include "embodied/gae.h"

namespace embodied {
namespace {

constexpr int kEnvThreads = 256;
constexpr int kScanThreads = 256;
// Heuristic, tuned to keep the GPU busy: below this many envs there are too few
// threads to hide memory latency one-step-at-a-time, so time is split instead.
constexpr int64_t kScanMaxEnvs = 1024;
constexpr int64_t kScanMinSteps = 64;

template <typename S, typename D>
struct GaeArgs {
  const S* __restrict__ rewards;
  const S* __restrict__ values;
  const D* __restrict__ dones;
  const S* __restrict__ next_value;
  S* __restrict__ advantages;
  S* __restrict__ returns;
  int* __restrict__ nonfinite;  // set when an env's first advantage is not finite
  int64_t T, N;
  S gamma, lam;
};

// Steps t1-1 down to t0 of env n, from the advantage A_{t1}; returns A_{t0}.
template <typename S, typename D>
__device__ S replay(const GaeArgs<S, D>& a, int64_t n, int64_t t0, int64_t t1, S adv) {
  S next_v = t1 == a.T ? a.next_value[n] : a.values[t1 * a.N + n];
#pragma unroll 4
  for (int64_t t = t1 - 1; t >= t0; --t) {
    const int64_t i = t * a.N + n;
    const S v = a.values[i];
    adv = apply(gae_step<S>(a.rewards[i], v, next_v, not_done<S>(a.dones[i]), a.gamma, a.lam), adv);
    a.advantages[i] = adv;
    a.returns[i] = adv + v;
    next_v = v;
  }
  return adv;
}

template <typename S, typename D>
__global__ void gae_per_env_kernel(GaeArgs<S, D> a) {
  const int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (n >= a.N) return;
  const S first = replay(a, n, 0, a.T, S(0));
  if (!isfinite(first)) *a.nonfinite = 1;
}

template <typename S, typename D>
__global__ void gae_time_scan_kernel(GaeArgs<S, D> a) {
  __shared__ S bias[2][kScanThreads];
  __shared__ S coef[2][kScanThreads];
  const int64_t n = blockIdx.x;
  const int tid = threadIdx.x;
  const int64_t seg = (a.T + kScanThreads - 1) / kScanThreads;
  const int64_t t0 = tid * seg < a.T ? tid * seg : a.T;
  const int64_t t1 = t0 + seg < a.T ? t0 + seg : a.T;

  Affine<S> map = affine_identity<S>();
  S next_v = t1 == a.T ? a.next_value[n] : a.values[t1 * a.N + n];
  for (int64_t t = t1 - 1; t >= t0; --t) {
    const int64_t i = t * a.N + n;
    const S v = a.values[i];
    map = compose(gae_step<S>(a.rewards[i], v, next_v, not_done<S>(a.dones[i]), a.gamma, a.lam), map);
    next_v = v;
  }

  // Inclusive suffix scan (Hillis-Steele, double-buffered): after it, slot k holds
  // the composition of segments k, k+1, ..., last.
  int cur = 0;
  bias[cur][tid] = map.bias;
  coef[cur][tid] = map.coef;
  __syncthreads();
  for (int offset = 1; offset < kScanThreads; offset <<= 1) {
    Affine<S> acc{bias[cur][tid], coef[cur][tid]};
    if (tid + offset < kScanThreads) {
      acc = compose(acc, Affine<S>{bias[cur][tid + offset], coef[cur][tid + offset]});
    }
    bias[cur ^ 1][tid] = acc.bias;
    coef[cur ^ 1][tid] = acc.coef;
    cur ^= 1;
    __syncthreads();
  }
  // A_{t1} is the later segments' composition applied to A_T = 0, i.e. its bias.
  const S carry = tid + 1 < kScanThreads ? bias[cur][tid + 1] : S(0);
  const S first = replay(a, n, t0, t1, carry);
  if (tid == 0 && !isfinite(first)) *a.nonfinite = 1;
}

void gae_into_cuda(const at::Tensor& rewards_in, const at::Tensor& values_in,
                   const at::Tensor& dones_in, const at::Tensor& next_value_in, double gamma,
                   double lam, at::Tensor& advantages, at::Tensor& returns) {
  check_gae_inputs(rewards_in, values_in, dones_in, next_value_in, gamma, lam);
  check_gae_outputs(rewards_in, values_in, dones_in, next_value_in, advantages, returns);
  const c10::cuda::CUDAGuard guard(rewards_in.device());
  const at::Tensor rewards = rewards_in.contiguous();
  const at::Tensor values = values_in.contiguous();
  const at::Tensor dones = dones_in.contiguous();
  const at::Tensor next_value = next_value_in.contiguous();
  at::Tensor nonfinite = at::zeros({1}, rewards.options().dtype(at::kInt));
  const int64_t T = rewards.size(0), N = rewards.size(1);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const bool scan = N <= kScanMaxEnvs && T >= kScanMinSteps;

  AT_DISPATCH_FLOATING_TYPES(rewards.scalar_type(), "embodied_gae_cuda", [&] {
    using S = scalar_t;
    auto launch = [&](auto done_tag) {
      using D = decltype(done_tag);
      GaeArgs<S, D> a{rewards.const_data_ptr<S>(),
                      values.const_data_ptr<S>(),
                      static_cast<const D*>(dones.const_data_ptr()),
                      next_value.const_data_ptr<S>(),
                      advantages.mutable_data_ptr<S>(),
                      returns.mutable_data_ptr<S>(),
                      nonfinite.mutable_data_ptr<int>(),
                      T, N, static_cast<S>(gamma), static_cast<S>(lam)};
      if (scan) {
        gae_time_scan_kernel<S, D><<<static_cast<unsigned>(N), kScanThreads, 0, stream>>>(a);
      } else {
        const auto blocks = static_cast<unsigned>((N + kEnvThreads - 1) / kEnvThreads);
        gae_per_env_kernel<S, D><<<blocks, kEnvThreads, 0, stream>>>(a);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    switch (dones.scalar_type()) {
      case at::kBool:  // stored as 0/1 bytes
      case at::kByte: launch(uint8_t{}); break;
      case at::kFloat: launch(float{}); break;
      default: launch(double{}); break;
    }
  });
  // One small device-to-host copy: the price of rejecting NaN/Inf inputs.
  if (nonfinite.cpu().const_data_ptr<int>()[0] != 0) {
    throw_gae_nonfinite(rewards_in, values_in, dones_in, next_value_in);
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(embodied, CUDA, m) { m.impl("gae_into", &gae_into_cuda); }

}  // namespace embodied

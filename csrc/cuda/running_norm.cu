// Running normalisation on NVIDIA GPUs, in three launches:
//   1. partial per-feature moments over row chunks (Welford per thread, Chan merge per block);
//   2. one thread per feature merges the chunks and the running statistics;
//   3. elementwise normalisation, which also commits the merged statistics.
// A non-finite batch, flagged by 2, stops 3 from committing, so it never reaches the
// statistics; the host reads both flags once, at the end.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "embodied/checks.h"
#include "embodied/running_norm.h"

namespace embodied {
namespace {

constexpr int kFeatureLanes = 32;
constexpr int kRowLanes = 8;
constexpr int64_t kMaxChunks = 64;
constexpr int kThreads = 256;

// partial[(chunk * F + f) * 3 + {0,1,2}] = count, mean, M2 of rows in the chunk.
template <typename S>
__global__ void chunk_moments_kernel(const S* __restrict__ x, double* __restrict__ partial,
                                     int64_t B, int64_t F, int64_t rows_per_chunk) {
  __shared__ double sm[3][kRowLanes][kFeatureLanes];
  const int64_t f = blockIdx.x * static_cast<int64_t>(kFeatureLanes) + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  const int64_t b0 = chunk * rows_per_chunk;
  const int64_t b1 = b0 + rows_per_chunk < B ? b0 + rows_per_chunk : B;
  Moments<double> m{0.0, 0.0, 0.0};
  if (f < F) {
    for (int64_t b = b0 + threadIdx.y; b < b1; b += kRowLanes) {
      m = welford_add<double>(m, static_cast<double>(x[b * F + f]));
    }
  }
  sm[0][threadIdx.y][threadIdx.x] = m.count;
  sm[1][threadIdx.y][threadIdx.x] = m.mean;
  sm[2][threadIdx.y][threadIdx.x] = m.m2;
  __syncthreads();
  if (threadIdx.y == 0 && f < F) {
    for (int r = 1; r < kRowLanes; ++r) {
      m = chan_merge(m, Moments<double>{sm[0][r][threadIdx.x], sm[1][r][threadIdx.x],
                                        sm[2][r][threadIdx.x]});
    }
    double* out = partial + (chunk * F + f) * 3;
    out[0] = m.count;
    out[1] = m.mean;
    out[2] = m.m2;
  }
}

// merged[f * 2 + {0,1}] = mean, var after merging the batch into the running statistics.
template <typename M>
__global__ void merge_kernel(const double* __restrict__ partial, const M* __restrict__ mean,
                             const M* __restrict__ var, const double* __restrict__ count,
                             double* __restrict__ merged, int* __restrict__ batch_bad, int64_t F,
                             int64_t chunks) {
  const int64_t f = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (f >= F) return;
  Moments<double> batch{0.0, 0.0, 0.0};
  for (int64_t c = 0; c < chunks; ++c) {
    const double* p = partial + (c * F + f) * 3;
    batch = chan_merge(batch, Moments<double>{p[0], p[1], p[2]});
  }
  if (!isfinite(batch.mean) || !isfinite(batch.m2)) *batch_bad = 1;
  const double n = *count;
  const Moments<double> all = chan_merge(
      Moments<double>{n, static_cast<double>(mean[f]), static_cast<double>(var[f]) * n}, batch);
  merged[f * 2] = all.mean;
  merged[f * 2 + 1] = all.m2 / all.count;
}

// y = normalize(x) with the merged statistics (stride 2: mean, var as double; rounded
// to M as the CPU path stores them) or the running ones. When committing, and the batch
// was finite, row 0's threads write the merged statistics back.
template <typename S, typename M>
__global__ void normalize_kernel(const S* __restrict__ x, S* __restrict__ y, const M* mean,
                                 const M* var, const double* __restrict__ merged, M* commit_mean,
                                 M* commit_var, double* commit_count, double batch_rows,
                                 const int* batch_bad, int* output_bad, int64_t total, int64_t F,
                                 bool center, double eps, double clip) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t f = i % F;
    const double m = static_cast<M>(merged ? merged[f * 2] : mean[f]);
    const double v = static_cast<M>(merged ? merged[f * 2 + 1] : var[f]);
    const double xi = x[i];
    const double yi = normalize_value<double>(xi, m, inverse_std<double>(v, eps), center, clip);
    y[i] = static_cast<S>(yi);
    if (!isfinite(xi) || isnan(yi)) *output_bad = 1;
    if (commit_mean && i < F && *batch_bad == 0) {
      commit_mean[f] = static_cast<M>(m);
      commit_var[f] = static_cast<M>(v);
      if (i == 0) *commit_count += batch_rows;
    }
  }
}

at::Tensor running_normalize_cuda(const at::Tensor& x_in, const at::Tensor& mean_t,
                                  const at::Tensor& var_t, const at::Tensor& count_t, bool update,
                                  bool center, double eps, double clip) {
  check_running_norm_inputs(x_in, mean_t, var_t, count_t, eps, clip);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = at::empty_like(x);
  const int64_t B = x.size(0);
  const int64_t F = x.numel() / B;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const auto dbl = x.options().dtype(at::kDouble);
  if (x.numel() == 0) {  // zero features: nothing to launch
    if (update) count_t.add_(static_cast<double>(B));
    return y;
  }
  at::Tensor flags = at::zeros({2}, x.options().dtype(at::kInt));  // batch_bad, output_bad
  int* batch_bad = flags.mutable_data_ptr<int>();
  at::Tensor merged;

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "embodied_running_normalize_cuda", [&] {
    using S = scalar_t;
    AT_DISPATCH_FLOATING_TYPES(mean_t.scalar_type(), "embodied_running_normalize_cuda_stats", [&] {
      using M = scalar_t;
      if (update) {
        const int64_t chunks = std::min<int64_t>(kMaxChunks, (B + 255) / 256);
        const int64_t rows = (B + chunks - 1) / chunks;
        at::Tensor partial = at::empty({chunks, F, 3}, dbl);
        merged = at::empty({F, 2}, dbl);
        const dim3 grid(static_cast<unsigned>((F + kFeatureLanes - 1) / kFeatureLanes),
                        static_cast<unsigned>(chunks));
        chunk_moments_kernel<S><<<grid, dim3(kFeatureLanes, kRowLanes), 0, stream>>>(
            x.const_data_ptr<S>(), partial.mutable_data_ptr<double>(), B, F, rows);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        merge_kernel<M><<<static_cast<unsigned>((F + kThreads - 1) / kThreads), kThreads, 0,
                          stream>>>(partial.const_data_ptr<double>(), mean_t.const_data_ptr<M>(),
                                    var_t.const_data_ptr<M>(), count_t.const_data_ptr<double>(),
                                    merged.mutable_data_ptr<double>(), batch_bad, F, chunks);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      const int64_t total = B * F;
      const auto blocks =
          static_cast<unsigned>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65535));
      normalize_kernel<S, M><<<blocks, kThreads, 0, stream>>>(
          x.const_data_ptr<S>(), y.mutable_data_ptr<S>(), mean_t.const_data_ptr<M>(),
          var_t.const_data_ptr<M>(), update ? merged.const_data_ptr<double>() : nullptr,
          update ? mean_t.mutable_data_ptr<M>() : nullptr,
          update ? var_t.mutable_data_ptr<M>() : nullptr,
          update ? count_t.mutable_data_ptr<double>() : nullptr, static_cast<double>(B),
          batch_bad, batch_bad + 1, total, F, center, eps, clip);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  // One small device-to-host copy: the price of rejecting NaN/Inf inputs.
  const at::Tensor host = flags.cpu();
  const int* bad = host.const_data_ptr<int>();
  if (bad[0] != 0 || bad[1] != 0) {
    throw_running_norm_nonfinite(x_in, mean_t, var_t, /*batch_overflow=*/bad[0] != 0);
  }
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(embodied, CUDA, m) { m.impl("running_normalize", &running_normalize_cuda); }

}  // namespace embodied

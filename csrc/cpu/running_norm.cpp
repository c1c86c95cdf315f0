// Running normalisation on the CPU: per-feature batch moments by Welford over row
// chunks in parallel, chunks merged with Chan's update, the batch merged into the
// running statistics, then the batch normalised with the updated statistics.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "embodied/checks.h"
#include "embodied/running_norm.h"

namespace embodied {
namespace {

constexpr int64_t kGrain = 16384;  // elements per thread worth a parallel region

// Per-feature moments of rows [b0, b1) of a row-major [B, F] array.
template <typename S>
void chunk_moments(const S* x, int64_t b0, int64_t b1, int64_t F, double* mean, double* m2) {
  std::fill(mean, mean + F, 0.0);
  std::fill(m2, m2 + F, 0.0);
  for (int64_t b = b0; b < b1; ++b) {
    const double seen = static_cast<double>(b - b0);
    const double inv_count = 1.0 / (seen + 1.0);
    const S* row = x + b * F;
    for (int64_t f = 0; f < F; ++f) {
      const Moments<double> m = welford_add<double>({seen, mean[f], m2[f]}, row[f], inv_count);
      mean[f] = m.mean;
      m2[f] = m.m2;
    }
  }
}

template <typename S, typename M>
void update_statistics(const S* x, int64_t B, int64_t F, M* mean, M* var, double* count,
                       const at::Tensor& x_in, const at::Tensor& mean_in, const at::Tensor& var_in) {
  // Threads only pay for themselves on batches of tens of thousands of elements.
  const int64_t wanted =
      std::clamp<int64_t>(B * F / kGrain, 1, std::min<int64_t>(at::get_num_threads(), B));
  const int64_t rows = (B + wanted - 1) / wanted;
  const int64_t chunks = (B + rows - 1) / rows;  // rounding up rows can leave fewer chunks
  std::vector<double> means(chunks * F), m2s(chunks * F);
  auto moments_of = [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      chunk_moments(x, c * rows, std::min(B, (c + 1) * rows), F, &means[c * F], &m2s[c * F]);
    }
  };
  if (chunks == 1) {
    moments_of(0, 1);
  } else {
    at::parallel_for(0, chunks, 1, moments_of);
  }
  bool finite = true;
  std::vector<Moments<double>> merged(F);
  for (int64_t f = 0; f < F; ++f) {
    Moments<double> batch{0.0, 0.0, 0.0};
    for (int64_t c = 0; c < chunks; ++c) {
      const double n = static_cast<double>(std::min(B, (c + 1) * rows) - c * rows);
      batch = chan_merge(batch, Moments<double>{n, means[c * F + f], m2s[c * F + f]});
    }
    finite &= std::isfinite(batch.mean) && std::isfinite(batch.m2);
    const Moments<double> running{*count, static_cast<double>(mean[f]),
                                  static_cast<double>(var[f]) * *count};
    merged[f] = chan_merge(running, batch);
  }
  if (!finite) {
    throw_running_norm_nonfinite(x_in, mean_in, var_in, /*batch_overflow=*/true);
  }
  // Only a finite batch reaches the running statistics: a bad batch must not poison them.
  for (int64_t f = 0; f < F; ++f) {
    mean[f] = static_cast<M>(merged[f].mean);
    var[f] = static_cast<M>(merged[f].m2 / merged[f].count);
  }
  *count += static_cast<double>(B);
}

at::Tensor running_normalize_cpu(const at::Tensor& x_in, const at::Tensor& mean_t,
                                 const at::Tensor& var_t, const at::Tensor& count_t, bool update,
                                 bool center, double eps, double clip) {
  check_running_norm_inputs(x_in, mean_t, var_t, count_t, eps, clip);
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = at::empty_like(x);
  const int64_t B = x.size(0);
  const int64_t F = x.numel() / B;

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "embodied_running_normalize_cpu", [&] {
    using S = scalar_t;
    const S* xs = x.const_data_ptr<S>();
    S* ys = y.mutable_data_ptr<S>();
    AT_DISPATCH_FLOATING_TYPES(mean_t.scalar_type(), "embodied_running_normalize_cpu_stats", [&] {
      using M = scalar_t;
      M* mean = mean_t.mutable_data_ptr<M>();
      M* var = var_t.mutable_data_ptr<M>();
      if (update) {
        update_statistics(xs, B, F, mean, var, count_t.mutable_data_ptr<double>(), x_in, mean_t,
                          var_t);
      }
      std::vector<double> inv_std(F);
      for (int64_t f = 0; f < F; ++f) inv_std[f] = inverse_std<double>(var[f], eps);
      at::parallel_for(0, B, std::max<int64_t>(1, kGrain / std::max<int64_t>(F, 1)),
                       [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          for (int64_t f = 0; f < F; ++f) {
            const int64_t i = b * F + f;
            ys[i] = static_cast<S>(normalize_value<double>(xs[i], mean[f], inv_std[f], center, clip));
          }
        }
      });
    });
    // Clipping would hide an infinite input, so the input is checked, not just the output.
    bool finite = true;
    for (int64_t i = 0; i < B * F; ++i) finite &= std::isfinite(xs[i]) & !std::isnan(ys[i]);
    if (!finite) {
      throw_running_norm_nonfinite(x_in, mean_t, var_t, /*batch_overflow=*/false);
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(embodied, CPU, m) { m.impl("running_normalize", &running_normalize_cpu); }

}  // namespace embodied

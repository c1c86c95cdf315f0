// VLM-RM reward on the CPU: one pass over each image embedding computes the three
// dot products the closed form needs (see embodied/vlm_rm.h); rows run in parallel.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sub.h>
#include <torch/library.h>

#include <cmath>

#include "embodied/checks.h"
#include "embodied/vlm_rm.h"
#include "multiversion.h"

namespace embodied {
namespace {

constexpr double kNormEps = 1e-12;  // torch.nn.functional.normalize's default

// Three dot products of a with itself, b and c, accumulated in double. The simd
// pragma licenses reordering the sums, which lets them vectorise.
template <typename S>
EMBODIED_ALWAYS_INLINE void dots_body(const S* __restrict__ a, const S* __restrict__ b,
                                      const S* __restrict__ c, int64_t n, double& aa, double& ab,
                                      double& ac) {
  double saa = 0, sab = 0, sac = 0;
#pragma omp simd reduction(+ : saa, sab, sac)
  for (int64_t i = 0; i < n; ++i) {
    const double x = a[i];
    saa += x * x;
    sab += x * static_cast<double>(b[i]);
    sac += x * static_cast<double>(c[i]);
  }
  aa = saa;
  ab = sab;
  ac = sac;
}

#if EMBODIED_X86_MULTIVERSION
template <typename S>
EMBODIED_TARGET_AVX2 void dots_avx2(const S* a, const S* b, const S* c, int64_t n, double& aa,
                                    double& ab, double& ac) {
  dots_body(a, b, c, n, aa, ab, ac);
}
#endif

template <typename S>
void dots(const S* a, const S* b, const S* c, int64_t n, double& aa, double& ab, double& ac) {
#if EMBODIED_X86_MULTIVERSION
  if (cpu_has_avx2()) return dots_avx2(a, b, c, n, aa, ab, ac);
#endif
  dots_body(a, b, c, n, aa, ab, ac);
}

at::Tensor vlm_rm_reward_cpu(const at::Tensor& image_embeds_in, const at::Tensor& goal_in,
                             const at::Tensor& baseline_in, double alpha) {
  check_vlm_rm_inputs(image_embeds_in, goal_in, baseline_in, alpha);
  const at::Tensor x = image_embeds_in.contiguous();
  const at::Tensor goal = goal_in.contiguous();
  const int64_t B = x.size(0), D = x.size(1);
  const at::Tensor direction = at::sub(goal, baseline_in).contiguous();
  at::Tensor rewards = at::empty({B}, x.options());

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "embodied_vlm_rm_reward_cpu", [&] {
    const scalar_t* g = goal.const_data_ptr<scalar_t>();
    const scalar_t* d = direction.const_data_ptr<scalar_t>();
    double dd, gd, gg, unused;
    dots(d, g, d, D, dd, gd, unused);
    dots(g, g, g, D, gg, unused, unused);
    check_vlm_rm_goal(gg, dd, alpha, goal_in, baseline_in);
    const scalar_t* xs = x.const_data_ptr<scalar_t>();
    scalar_t* out = rewards.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B, std::max<int64_t>(1, 32768 / D), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        double xx, xg, xd;
        dots(xs + b * D, g, d, D, xx, xg, xd);
        out[b] = static_cast<scalar_t>(vlm_rm_from_dots(xx, xg, xd, gg, gd, dd, alpha, kNormEps));
      }
    });
    bool finite = true;
    for (int64_t b = 0; b < B; ++b) finite &= std::isfinite(out[b]);
    if (!finite) throw_vlm_rm_nonfinite(image_embeds_in, goal_in, baseline_in);
  });
  return rewards;
}

}  // namespace

TORCH_LIBRARY_IMPL(embodied, CPU, m) { m.impl("vlm_rm_reward", &vlm_rm_reward_cpu); }

}  // namespace embodied

// GAE on the CPU. Columns (envs) are independent: they are split across threads,
// each thread walks back in time over its envs in blocks whose carries stay in
// cache, and the inner loop runs over contiguous envs so it vectorises. A few long envs are instead split in time:
// each chunk's steps compose into one affine map, the maps are chained across
// chunks, then each chunk replays its steps from the right starting advantage.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "embodied/checks.h"
#include "embodied/gae.h"
#include "multiversion.h"

namespace embodied {
namespace {

constexpr int64_t kColumnBlock = 32768;  // envs stepped together; measured best on 2 cores
constexpr int64_t kMinEnvsPerThread = 256;
constexpr int64_t kMinTimeChunk = 2048;   // steps per chunk before splitting time pays

template <typename S, typename D>
struct GaeArgs {
  const S* rewards;
  const S* values;
  const D* dones;
  const S* next_value;
  S* advantages;
  S* returns;
  int64_t T, N;
  S gamma, lam;
};

// One time step for a run of contiguous envs. Its pointers are restrict-qualified
// parameters, which is what lets the compiler vectorise the loop.
template <typename S, typename D>
EMBODIED_ALWAYS_INLINE void step_row_body(const S* __restrict__ r, const S* __restrict__ v,
                                          const D* __restrict__ d, S* __restrict__ adv,
                                          S* __restrict__ next_v, S* __restrict__ out_adv,
                                          S* __restrict__ out_ret, int64_t width, S gamma, S lam) {
#pragma omp simd
  for (int64_t j = 0; j < width; ++j) {
    const S a = apply(gae_step<S>(r[j], v[j], next_v[j], not_done<S>(d[j]), gamma, lam), adv[j]);
    adv[j] = a;
    out_adv[j] = a;
    out_ret[j] = a + v[j];
    next_v[j] = v[j];
  }
}

#if EMBODIED_X86_MULTIVERSION
template <typename S, typename D>
EMBODIED_TARGET_AVX2 void step_row_avx2(const S* r, const S* v, const D* d, S* adv, S* next_v,
                                        S* out_adv, S* out_ret, int64_t width, S gamma, S lam) {
  step_row_body(r, v, d, adv, next_v, out_adv, out_ret, width, gamma, lam);
}
#endif

template <typename S, typename D>
void step_row(const S* r, const S* v, const D* d, S* adv, S* next_v, S* out_adv, S* out_ret,
              int64_t width, S gamma, S lam) {
#if EMBODIED_X86_MULTIVERSION
  if (cpu_has_avx2()) {
    return step_row_avx2(r, v, d, adv, next_v, out_adv, out_ret, width, gamma, lam);
  }
#endif
  step_row_body(r, v, d, adv, next_v, out_adv, out_ret, width, gamma, lam);
}

// Steps t1-1 down to t0 for envs [n0, n1), starting from the advantage A_{t1} in
// `adv` and the value V_{t1} in `next_v` (both indexed by env - n0), which are updated.
template <typename S, typename D>
void replay(const GaeArgs<S, D>& a, int64_t t0, int64_t t1, int64_t n0, int64_t n1, S* adv,
            S* next_v) {
  for (int64_t t = t1 - 1; t >= t0; --t) {
    const int64_t row = t * a.N + n0;
    step_row(a.rewards + row, a.values + row, a.dones + row, adv, next_v, a.advantages + row,
             a.returns + row, n1 - n0, a.gamma, a.lam);
  }
}

template <typename S, typename D>
void gae_by_env_blocks(const GaeArgs<S, D>& a) {
  at::parallel_for(0, a.N, kMinEnvsPerThread, [&](int64_t begin, int64_t end) {
    const auto width = std::min(kColumnBlock, end - begin);
    std::vector<S> adv_buf(width), next_v_buf(width);
    S* adv = adv_buf.data();
    S* next_v = next_v_buf.data();
    for (int64_t n0 = begin; n0 < end; n0 += kColumnBlock) {
      const int64_t n1 = std::min(end, n0 + kColumnBlock);
      std::fill(adv, adv + (n1 - n0), S(0));
      std::copy(a.next_value + n0, a.next_value + n1, next_v);
      replay(a, 0, a.T, n0, n1, adv, next_v);
    }
  });
}

template <typename S, typename D>
void gae_by_time_chunks(const GaeArgs<S, D>& a, int64_t chunks) {
  const int64_t N = a.N;
  const int64_t chunk_len = (a.T + chunks - 1) / chunks;
  // maps[c * N + n]: the composition of chunk c's steps for env n.
  std::vector<Affine<S>> maps(chunks * N, affine_identity<S>());
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t t0 = c * chunk_len, t1 = std::min(a.T, t0 + chunk_len);
      for (int64_t n = 0; n < N; ++n) {
        Affine<S> m = affine_identity<S>();
        S next_v = t1 == a.T ? a.next_value[n] : a.values[t1 * N + n];
        for (int64_t t = t1 - 1; t >= t0; --t) {
          const int64_t i = t * N + n;
          m = compose(gae_step<S>(a.rewards[i], a.values[i], next_v, not_done<S>(a.dones[i]),
                                  a.gamma, a.lam),
                      m);
          next_v = a.values[i];
        }
        maps[c * N + n] = m;
      }
    }
  });
  // carry[c * N + n]: the advantage just after chunk c, A_{t1(c)}.
  std::vector<S> carry(chunks * N, S(0));
  for (int64_t c = chunks - 1; c > 0; --c) {
    for (int64_t n = 0; n < N; ++n) {
      carry[(c - 1) * N + n] = apply(maps[c * N + n], carry[c * N + n]);
    }
  }
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    std::vector<S> next_v(N);
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t t0 = c * chunk_len, t1 = std::min(a.T, t0 + chunk_len);
      for (int64_t n = 0; n < N; ++n) {
        next_v[n] = t1 == a.T ? a.next_value[n] : a.values[t1 * N + n];
      }
      replay(a, t0, t1, 0, N, carry.data() + c * N, next_v.data());
    }
  });
}

template <typename S, typename D>
void gae_kernel(const GaeArgs<S, D>& a) {
  const int64_t threads = at::get_num_threads();
  const int64_t chunks = std::min<int64_t>(threads, a.T / kMinTimeChunk);
  if (a.N < threads && chunks > 1) {
    gae_by_time_chunks(a, chunks);
  } else {
    gae_by_env_blocks(a);
  }
}

template <typename S>
bool all_finite(const S* p, int64_t n) {
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) ok &= std::isfinite(p[i]);
  return ok;
}

void gae_into_cpu(const at::Tensor& rewards_in, const at::Tensor& values_in,
                  const at::Tensor& dones_in, const at::Tensor& next_value_in, double gamma,
                  double lam, at::Tensor& advantages, at::Tensor& returns) {
  check_gae_inputs(rewards_in, values_in, dones_in, next_value_in, gamma, lam);
  check_gae_outputs(rewards_in, values_in, dones_in, next_value_in, advantages, returns);
  const at::Tensor rewards = rewards_in.contiguous();
  const at::Tensor values = values_in.contiguous();
  const at::Tensor dones = dones_in.contiguous();
  const at::Tensor next_value = next_value_in.contiguous();
  const int64_t T = rewards.size(0), N = rewards.size(1);

  AT_DISPATCH_FLOATING_TYPES(rewards.scalar_type(), "embodied_gae_cpu", [&] {
    using S = scalar_t;
    auto run = [&](auto done_tag) {
      using D = decltype(done_tag);
      GaeArgs<S, D> a{rewards.const_data_ptr<S>(),
                      values.const_data_ptr<S>(),
                      static_cast<const D*>(dones.const_data_ptr()),
                      next_value.const_data_ptr<S>(),
                      advantages.mutable_data_ptr<S>(),
                      returns.mutable_data_ptr<S>(),
                      T, N, static_cast<S>(gamma), static_cast<S>(lam)};
      gae_kernel(a);
    };
    switch (dones.scalar_type()) {
      case at::kBool:  // stored as 0/1 bytes
      case at::kByte: run(uint8_t{}); break;
      case at::kFloat: run(float{}); break;
      default: run(double{}); break;
    }
    // A non-finite input anywhere in an env's column reaches that env's first
    // advantage (the recurrence multiplies rather than branches), so one row checks all.
    if (!all_finite(advantages.const_data_ptr<S>(), N)) {
      throw_gae_nonfinite(rewards_in, values_in, dones_in, next_value_in);
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(embodied, CPU, m) { m.impl("gae_into", &gae_into_cpu); }

}  // namespace embodied

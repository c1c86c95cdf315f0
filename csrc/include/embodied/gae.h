#pragma once

#include <algorithm>
#include <cstdint>

#include "embodied/macros.h"

namespace embodied {

// One backward step of generalised advantage estimation is an affine map of the
// next advantage: A_t = bias_t + coef_t * A_{t+1}, with
//   bias_t = delta_t = r_t + gamma * V_{t+1} * (1 - done_t) - V_t
//   coef_t = gamma * lam * (1 - done_t).
// Writing it this way lets the sequential loop (apply) and the parallel scans over
// time (compose) share exactly the same arithmetic.
template <typename T>
struct Affine {
  T bias;
  T coef;
};

template <typename T>
EMBODIED_HD Affine<T> affine_identity() {
  return {T(0), T(1)};
}

// 1 - done, in the input's own convention: uint8 flags (bool tensors are read
// as uint8) mean nonzero = done; floating-point dones are used arithmetically as
// CleanRL does, so a NaN done propagates into the result instead of reading as "done".
// std::min rather than `d != 0` or a branch: only this form lets GCC vectorise the
// CPU loop.
EMBODIED_HD float not_done_as_float(uint8_t d) {
#ifdef __CUDA_ARCH__
  return d != 0 ? 0.f : 1.f;  // std::min in device code would need --expt-relaxed-constexpr
#else
  return 1.f - static_cast<float>(std::min<uint8_t>(d, 1));
#endif
}
EMBODIED_HD float not_done_as_float(float d) { return 1.f - d; }
EMBODIED_HD double not_done_as_float(double d) { return 1.0 - d; }

template <typename T, typename D>
EMBODIED_HD T not_done(D d) {
  return static_cast<T>(not_done_as_float(d));
}

template <typename T>
EMBODIED_HD Affine<T> gae_step(T reward, T value, T next_value, T not_done_t, T gamma, T lam) {
  const T bias = reward + gamma * next_value * not_done_t - value;
  return {bias, gamma * lam * not_done_t};
}

template <typename T>
EMBODIED_HD T apply(Affine<T> f, T next_advantage) {
  return f.bias + f.coef * next_advantage;
}

// The map for two consecutive steps: `earlier` covers the steps before `later`.
// A_earlier_start = earlier(later(A_after)).  Associative, identity affine_identity().
template <typename T>
EMBODIED_HD Affine<T> compose(Affine<T> earlier, Affine<T> later) {
  return {earlier.bias + earlier.coef * later.bias, earlier.coef * later.coef};
}

}  // namespace embodied

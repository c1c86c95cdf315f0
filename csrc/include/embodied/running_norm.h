#pragma once

#include <cmath>

#include "embodied/macros.h"

namespace embodied {

// Count, mean and sum of squared deviations (M2) of a set of samples. Sets merge
// with Chan et al.'s parallel update, which stays accurate when one side is much
// larger than the other (the running statistics versus one batch).
template <typename A>
struct Moments {
  A count;
  A mean;
  A m2;
};

// Welford's update with one more sample; inv_count = 1 / (m.count + 1), passed in so
// a row of features can share one division.
template <typename A>
EMBODIED_HD Moments<A> welford_add(Moments<A> m, A x, A inv_count) {
  const A delta = x - m.mean;
  const A mean = m.mean + delta * inv_count;
  return {m.count + A(1), mean, m.m2 + delta * (x - mean)};
}

template <typename A>
EMBODIED_HD Moments<A> welford_add(Moments<A> m, A x) {
  return welford_add(m, x, A(1) / (m.count + A(1)));
}

template <typename A>
EMBODIED_HD Moments<A> chan_merge(Moments<A> a, Moments<A> b) {
  const A count = a.count + b.count;
  if (count == A(0)) return a;
  const A delta = b.mean - a.mean;
  const A wb = b.count / count;
  return {count, a.mean + delta * wb, a.m2 + b.m2 + delta * delta * a.count * wb};
}

// 1 / sqrt(var + eps): computed once per feature, not per element.
template <typename A>
EMBODIED_HD A inverse_std(A var, A eps) {
  return A(1) / std::sqrt(var + eps);
}

// (x - mean) * inv_std, or x * inv_std when not centring (reward scaling by the
// return's spread), clamped to [-clip, clip]. NaN passes through.
template <typename A>
EMBODIED_HD A normalize_value(A x, A mean, A inv_std, bool center, A clip) {
  const A y = (center ? x - mean : x) * inv_std;
  return y < -clip ? -clip : (y > clip ? clip : y);
}

}  // namespace embodied

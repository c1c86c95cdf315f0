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

template <typename A>
EMBODIED_HD Moments<A> welford_add(Moments<A> m, A x) {
  const A count = m.count + A(1);
  const A delta = x - m.mean;
  const A mean = m.mean + delta / count;
  return {count, mean, m.m2 + delta * (x - mean)};
}

template <typename A>
EMBODIED_HD Moments<A> chan_merge(Moments<A> a, Moments<A> b) {
  const A count = a.count + b.count;
  if (count == A(0)) return a;
  const A delta = b.mean - a.mean;
  const A wb = b.count / count;
  return {count, a.mean + delta * wb, a.m2 + b.m2 + delta * delta * a.count * wb};
}

// (x - mean) / sqrt(var + eps), or x / sqrt(var + eps) when not centring (reward
// scaling by the return's spread), clamped to [-clip, clip]. NaN passes through.
template <typename A>
EMBODIED_HD A normalize_value(A x, A mean, A var, bool center, A eps, A clip) {
  const A centred = center ? x - mean : x;
  const A y = centred / std::sqrt(var + eps);
  return y < -clip ? -clip : (y > clip ? clip : y);
}

}  // namespace embodied

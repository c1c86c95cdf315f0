#pragma once

#include <cmath>
#include <cstdint>

#include "embodied/macros.h"

namespace embodied {

// Sermanet et al.'s perceptual reward models each task step's positives as independent
// Gaussians over n selected features (naive Bayes). A frame's score for the step is the
// geometric mean of those likelihoods relative to their peak:
//   score = exp(-1/2 * q),  q = 1/n * sum_j ((row[idx[j]] - mean[j]) * inv_std[j])^2.
// The two halves are separate so a kernel can check q: with finite parameters it is not
// finite only when a selected feature is not, or when it overflowed (score 0, the limit).

// q, the mean squared standardised deviation of the step's selected features, in A.
template <typename A, typename S>
EMBODIED_HD A perceptual_sq_distance(const S* row, const int64_t* idx, const S* mean,
                                     const S* inv_std, int64_t n) {
  A sum = A(0);
  for (int64_t j = 0; j < n; ++j) {
    const A z =
        (static_cast<A>(row[idx[j]]) - static_cast<A>(mean[j])) * static_cast<A>(inv_std[j]);
    sum += z * z;
  }
  return sum / static_cast<A>(n);
}

// The step score in (0, 1] from q.
template <typename A>
EMBODIED_HD A perceptual_step_score(A sq_distance) {
  return std::exp(A(-0.5) * sq_distance);
}

}  // namespace embodied

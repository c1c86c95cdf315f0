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
// In log space the score is the log-likelihood ratio itself, -1/2 q.

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

// The step score from q: in (0, 1], or its log (-1/2 q <= 0) in log space.
template <typename A>
EMBODIED_HD A perceptual_step_score(A sq_distance, bool log_space) {
  return log_space ? A(-0.5) * sq_distance : std::exp(A(-0.5) * sq_distance);
}

// A frame's reward from its K step scores: sum_g w_g score_g, or in log space
// log(sum_g w_g exp(log_score_g)) (weights > 0). The log form is shifted by its largest term:
// far from every step all the likelihoods underflow to 0 and the linear sum is flat, while the
// log keeps falling with the distance to the nearest step.
template <typename A, typename S>
EMBODIED_HD A perceptual_combine(const S* scores, const S* weights, int64_t K, bool log_space) {
  if (!log_space) {
    A r = A(0);
    for (int64_t g = 0; g < K; ++g) r += static_cast<A>(weights[g]) * static_cast<A>(scores[g]);
    return r;
  }
  A top = static_cast<A>(scores[0]) + std::log(static_cast<A>(weights[0]));
  for (int64_t g = 1; g < K; ++g) {
    const A t = static_cast<A>(scores[g]) + std::log(static_cast<A>(weights[g]));
    top = t > top ? t : top;
  }
  if (std::isinf(top)) return top;  // every distance overflowed: the limit, -inf
  A sum = A(0);
  for (int64_t g = 0; g < K; ++g) {
    sum += std::exp(static_cast<A>(scores[g]) + std::log(static_cast<A>(weights[g])) - top);
  }
  return top + std::log(sum);
}

}  // namespace embodied

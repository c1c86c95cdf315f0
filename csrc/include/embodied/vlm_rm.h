#pragma once

#include <cmath>

#include "embodied/macros.h"

namespace embodied {

// VLM-RM's goal-baseline regularised CLIP reward for one image embedding x,
// computed from dot products so the D x D projection is never formed.
// With x^ = x / max(|x|, eps), y = x^ - g, d = g - b, p = (y.d) d / |d|^2 and
// P = alpha * d d^T / |d|^2 + (1 - alpha) I:
//   |y P|^2 = (1 - alpha)^2 |y|^2 + alpha (2 - alpha) (y.d)^2 / |d|^2
//   reward  = 1 - |y P|^2 / 2
// Inputs: xx = x.x, xg = x.g, xd = x.d (per image); gg = g.g, gd = g.d, dd = d.d.
// When alpha == 0 the projection term is skipped, so goal == baseline is allowed.
template <typename A>
EMBODIED_HD A vlm_rm_from_dots(A xx, A xg, A xd, A gg, A gd, A dd, A alpha, A eps) {
  A norm = xx > A(0) ? std::sqrt(xx) : A(0);
  norm = norm > eps ? norm : eps;
  const A inv = A(1) / norm;
  const A x_hat_sq = xx * inv * inv;
  const A yy = x_hat_sq - A(2) * xg * inv + gg;  // |x^ - g|^2
  A reward_sq = (A(1) - alpha) * (A(1) - alpha) * yy;
  if (alpha != A(0)) {
    const A yd = xd * inv - gd;  // (x^ - g).d
    reward_sq += alpha * (A(2) - alpha) * yd * yd / dd;
  }
  return A(1) - A(0.5) * reward_sq;
}

}  // namespace embodied

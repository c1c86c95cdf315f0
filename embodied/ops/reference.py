"""Pure-PyTorch versions of the compiled ops: the specification the tests check the
kernels against, and the fallback when embodied._C is not built. Readable first."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _not_done(dones: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # Flags (bool/uint8) mean "nonzero = done"; float dones are used arithmetically, like CleanRL.
    if dones.is_floating_point():
        return 1.0 - dones.to(dtype)
    return (dones == 0).to(dtype)


def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor,
        next_value: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE by a backward loop over time, vectorised over envs (CleanRL's loop)."""
    not_done = _not_done(dones, rewards.dtype)
    advantages = torch.empty_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(rewards.shape[0])):
        v_next = next_value if t == rewards.shape[0] - 1 else values[t + 1]
        delta = rewards[t] + gamma * v_next * not_done[t] - values[t]
        last = delta + gamma * lam * not_done[t] * last
        advantages[t] = last
    return advantages, advantages + values


def gae_scan(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor,
             next_value: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE with no Python loop over time: A_t = bias_t + coef_t * A_{t+1} is an affine
    recurrence, solved by a log2(T)-step suffix scan (Hillis-Steele) of composed maps."""
    not_done = _not_done(dones, rewards.dtype)
    v_next = torch.cat([values[1:], next_value[None]])
    bias = rewards + gamma * v_next * not_done - values
    coef = gamma * lam * not_done
    T, shift = rewards.shape[0], 1
    while shift < T:
        # Compose each step's map with the one `shift` steps later (identity past the end).
        later_bias = F.pad(bias[shift:], (0, 0, 0, shift))
        later_coef = F.pad(coef[shift:], (0, 0, 0, shift), value=1.0)
        bias = bias + coef * later_bias
        coef = coef * later_coef
        shift *= 2
    return bias, bias + values


def vlm_rm_reward(image_embeds: torch.Tensor, goal: torch.Tensor, baseline: torch.Tensor,
                  alpha: float) -> torch.Tensor:
    """VLM-RM's reward as the paper writes it, with the D x D projection."""
    x = F.normalize(image_embeds, dim=-1)
    d = goal - baseline
    projection = (1 - alpha) * torch.eye(goal.shape[0], dtype=goal.dtype, device=goal.device)
    if alpha != 0:
        projection = projection + alpha * torch.outer(d, d) / (d @ d)
    y = (x - goal) @ projection
    return 1 - 0.5 * (y * y).sum(-1)


def running_normalize(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor,
                      update: bool, center: bool, eps: float, clip: float) -> torch.Tensor:
    """Merge x's batch moments into (mean, var, count) in place (Chan et al.), as
    gymnasium's RunningMeanStd does, then normalise x with the updated statistics."""
    if update:
        batch = x.double()
        n = batch.shape[0]
        batch_mean, batch_var = batch.mean(0), batch.var(0, unbiased=False)
        total = count + n
        delta = batch_mean - mean.double()
        m2 = var.double() * count + batch_var * n + delta**2 * count * n / total
        mean.copy_(mean.double() + delta * n / total)
        var.copy_(m2 / total)
        count.add_(n)
    centred = x.double() - mean.double() if center else x.double()
    y = centred / torch.sqrt(var.double() + eps)
    return y.clamp(-clip, clip).to(x.dtype)


def perceptual_reward(features: torch.Tensor, index: torch.Tensor, mean: torch.Tensor,
                      inv_std: torch.Tensor, step_weights: torch.Tensor,
                      log_space: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Sermanet et al.'s perceptual reward: gather each step's selected features, take the mean
    squared standardised deviation, and weight the steps' exp(-1/2 of it) (or, in log space,
    take the log of that weighted sum)."""
    selected = features[:, index]  # [B, K, n]
    z = (selected - mean) * inv_std
    log_scores = -0.5 * (z * z).mean(-1)  # [B, K]
    if log_space:
        return torch.logsumexp(log_scores + step_weights.log(), -1), log_scores
    step_scores = torch.exp(log_scores)
    return step_scores @ step_weights, step_scores

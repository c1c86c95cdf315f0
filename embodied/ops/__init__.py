"""Compiled hot loops of every learner and reward model.

The kernels live in embodied._C (C++ for the CPU, CUDA for NVIDIA GPUs) and are
registered as torch.ops.embodied.*, so they work under torch.compile. When the
extension is not built, the functions here fall back, with one warning, to the
pure-PyTorch versions in embodied.ops.reference.
"""

from __future__ import annotations

import warnings
from types import ModuleType

import torch

from embodied.ops import reference, validate

_C: ModuleType | None
_IMPORT_ERROR: ImportError | None = None
try:
    from embodied import _C  # registers torch.ops.embodied.*
except ImportError as exc:  # a source checkout that was never built
    _C, _IMPORT_ERROR = None, exc
else:
    from embodied.ops import _fake  # noqa: F401  (registers the fake kernels)

__all__ = [
    "backends", "gae", "bootstrap_truncated", "vlm_rm_reward", "perceptual_reward",
    "running_normalize", "RunningNormalizer", "reference",
]

_warned = False


def _compiled() -> bool:
    global _warned
    if _C is None and not _warned:
        _warned = True
        warnings.warn(
            f"embodied._C is not built ({_IMPORT_ERROR}); embodied.ops uses the slower pure-PyTorch "
            "reference kernels. Build it with `pip install -e .` from the source checkout.",
            RuntimeWarning, stacklevel=3)
    return _C is not None


def backends() -> list[str]:
    """The backends embodied._C was compiled with (["cpu"] or ["cpu", "cuda"]),
    or ["reference"] when it is not built and the pure-PyTorch fallback runs."""
    return list(_C.compiled_backends) if _C is not None else ["reference"]


def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, next_value: torch.Tensor,
        gamma: float = 0.99, lam: float = 0.95,
        out: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a time-major rollout.

    Args:
        rewards, values: [T, N] float32 or float64; values[t] = V(obs_t).
        dones: [T, N] bool, uint8 or float; dones[t, n] means env n's episode ended
            at step t, so nothing bootstraps or accumulates across it.
        next_value: [N], the value of the observation after step T-1.
        gamma, lam: discount and GAE lambda, each in [0, 1].
        out: optional preallocated contiguous (advantages, returns) buffers to write
            into, e.g. a rollout storage's; they may not share memory with the inputs.

    Returns:
        (advantages, returns), each [T, N] with returns = advantages + values
        (the `out` buffers when given).

    Time-limit truncation: mark a truncated step done, and add gamma * V(final_obs)
    to its reward with `bootstrap_truncated` first (the SB3 / Isaac Lab convention,
    exactly equivalent to bootstrapping from the final observation).

    Raises ValueError naming the first non-finite input element if any is NaN/Inf.
    """
    if out is not None and (not isinstance(out, (tuple, list)) or len(out) != 2):
        raise ValueError("embodied.ops.gae: out must be a pair (advantages, returns) of [T, N] tensors")
    if _compiled():
        if out is None:
            return torch.ops.embodied.gae(rewards, values, dones, next_value, gamma, lam)
        torch.ops.embodied.gae_into(rewards, values, dones, next_value, gamma, lam, *out)
        return out
    validate.gae_inputs(rewards, values, dones, next_value, gamma, lam)
    if out is not None:
        validate.gae_outputs(rewards, values, dones, next_value, *out)
    advantages, returns = reference.gae(rewards, values, dones, next_value, gamma, lam)
    if not torch.isfinite(advantages[0]).all():
        validate.raise_nonfinite(
            "embodied.ops.gae",
            {"rewards": rewards, "values": values, "dones": dones, "next_value": next_value},
            "the discounted sum overflowed; scale the rewards down")
    if out is not None:
        out[0].copy_(advantages)
        out[1].copy_(returns)
        return out
    return advantages, returns


def bootstrap_truncated(rewards: torch.Tensor, truncated: torch.Tensor, final_values: torch.Tensor,
                        gamma: float = 0.99) -> torch.Tensor:
    """rewards + gamma * V(final_obs) at time-limit truncations, for use with `gae`.

    Args:
        rewards: [T, N] float.
        truncated: [T, N] bool; True where the episode was cut by a time limit
            (not a terminal state). Pass `dones = terminated | truncated` to `gae`.
        final_values: [T, N] values of the final observations (read only where truncated;
            other entries may hold anything finite, e.g. zeros).
        gamma: the discount used in `gae`.
    """
    op = "embodied.ops.bootstrap_truncated"
    if truncated.shape != rewards.shape or final_values.shape != rewards.shape:
        raise ValueError(f"{op}: truncated and final_values must have the shape of rewards "
                         f"{list(rewards.shape)}, got {list(truncated.shape)} and "
                         f"{list(final_values.shape)}")
    if truncated.dtype != torch.bool:
        raise TypeError(f"{op}: truncated must be bool, got {truncated.dtype}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"{op}: gamma must be in [0, 1], got {gamma}")
    bootstrap = torch.where(truncated, final_values.to(rewards.dtype), 0.0)
    if not torch.isfinite(bootstrap).all():
        raise ValueError(f"{op}: final_values is not finite at a truncated step")
    return rewards + gamma * bootstrap


def vlm_rm_reward(image_embeds: torch.Tensor, goal: torch.Tensor, baseline: torch.Tensor,
                  alpha: float) -> torch.Tensor:
    """VLM-RM's goal-baseline regularised CLIP reward (Rocamonde et al., 2024).

    r = 1 - 1/2 |(x - g) P|^2 with x the L2-normalised image embedding,
    P = alpha d d^T / |d|^2 + (1 - alpha) I and d = goal - baseline. goal and baseline
    are used as given (VLM-RM averages normalised prompt embeddings and does not
    renormalise). The D x D matrix P is never formed.

    Args:
        image_embeds: [B, D] float32 or float64 (unnormalised is fine).
        goal, baseline: [D], same dtype and device.
        alpha: in [0, 1]; 0 is cosine similarity to the goal up to a constant.

    Returns: [B] rewards.
    """
    if _compiled():
        return torch.ops.embodied.vlm_rm_reward(image_embeds, goal, baseline, alpha)
    validate.vlm_rm_inputs(image_embeds, goal, baseline, alpha)
    if alpha != 0 and not bool(((goal - baseline) != 0).any()):
        raise ValueError("embodied.ops.vlm_rm_reward: goal and baseline are identical, so the "
                         "goal-baseline direction is undefined; use different baseline prompts "
                         "or alpha=0")
    rewards = reference.vlm_rm_reward(image_embeds, goal, baseline, alpha)
    if not torch.isfinite(rewards).all():
        validate.raise_nonfinite(
            "embodied.ops.vlm_rm_reward",
            {"image_embeds": image_embeds, "goal": goal, "baseline": baseline},
            "an embedding's squared norm overflowed; the embeddings are far too large")
    return rewards


def perceptual_reward(features: torch.Tensor, index: torch.Tensor, mean: torch.Tensor,
                      inv_std: torch.Tensor, step_weights: torch.Tensor,
                      log_space: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Perceptual reward of frames against a task's steps (Sermanet, Xu, Levine, 2016,
    "Unsupervised perceptual rewards for imitation learning").

    Each of K task steps models its positive frames' n selected features as independent
    Gaussians (naive Bayes). A frame's score for step g is the geometric mean over those
    features of the likelihood relative to its peak, in (0, 1]:
        step_scores[b, g] = exp(-1/2 * 1/n * sum_j ((features[b, index[g, j]] - mean[g, j]) * inv_std[g, j])^2)
        reward[b] = sum_g step_weights[g] * step_scores[b, g]
    With ``log_space=True`` the step scores are their logs, ``-1/2 * q[b, g]``, and
        reward[b] = log(sum_g step_weights[g] * exp(step_scores[b, g]))
    computed without underflow: the same order of frames, but dense far from every step, where
    the likelihoods all round to 0 (a reward for RL; step_weights must then be > 0).

    Args:
        features: [B, D] float32 or float64 frame features, already z-normalised; B may be 0.
        index: [K, n] int64, the n selected feature indices of each step, each in [0, D).
        mean, inv_std: [K, n], the positives' mean and 1 / standard deviation of each selected
            feature (inv_std finite and > 0); features' dtype and device.
        step_weights: [K], features' dtype and device (> 0 with log_space).
        log_space: combine the steps' log-likelihoods (see above) instead of the likelihoods.

    Returns: (reward [B], step_scores [B, K]), in features' dtype and on its device.

    Raises ValueError naming the element for an index out of range, a non-finite mean or step
    weight, an inv_std that is not finite and > 0, or a non-finite selected feature (features
    not selected by index are never read). A finite frame so far from a step that the squared
    distance overflows scores 0 there (-inf in log space).
    """
    if not isinstance(log_space, bool):
        raise TypeError(f"embodied.ops.perceptual_reward: log_space must be a bool, got {log_space!r}")
    if _compiled():
        return torch.ops.embodied.perceptual_reward(features, index, mean, inv_std, step_weights, log_space)
    validate.perceptual_inputs(features, index, mean, inv_std, step_weights)
    validate.perceptual_parameters(features.shape[1], index, mean, inv_std, step_weights, log_space)
    validate.perceptual_features(features, index)
    return reference.perceptual_reward(features, index, mean, inv_std, step_weights, log_space)


def running_normalize(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor,
                      update: bool = True, center: bool = True, eps: float = 1e-8,
                      clip: float = 10.0) -> torch.Tensor:
    """Merge x's batch statistics into running (mean, var, count), then normalise x.

    Args:
        x: [B, *F] float32 or float64 batch.
        mean, var: [*F] float32 or float64 running statistics, updated in place.
        count: 0-dim float64 number of samples seen (e.g. 1e-4 initially, as gymnasium).
        update: merge x into the statistics first (Chan et al.'s parallel update).
        center: subtract the mean; False only scales (reward scaling by return spread).
        eps: added to the variance; clip: bound on |output| (inf to disable).

    Returns: [B, *F], clamp((x - mean) / sqrt(var + eps), -clip, clip), x's dtype.
    A batch with a non-finite element raises and leaves the statistics untouched.
    """
    if _compiled():
        return torch.ops.embodied.running_normalize(x, mean, var, count, update, center, eps, clip)
    validate.running_norm_inputs(x, mean, var, count, eps, clip)
    if not torch.isfinite(x).all():
        validate.raise_nonfinite("embodied.ops.running_normalize", {"x": x}, "")
    y = reference.running_normalize(x, mean, var, count, update, center, eps, clip)
    if torch.isnan(y).any():
        validate.raise_nonfinite("embodied.ops.running_normalize", {"x": x, "mean": mean, "var": var},
                                 "the variance is negative; the running statistics were corrupted")
    return y


class RunningNormalizer(torch.nn.Module):
    """Running mean/variance normalisation whose statistics are module buffers, so they
    are saved, loaded and exported with the policy that owns them.

    In training mode each call merges the batch into the statistics before normalising;
    in eval mode the statistics are frozen.
    """

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, shape: tuple[int, ...] | int = (), *, center: bool = True,
                 eps: float = 1e-8, clip: float = 10.0, initial_count: float = 1e-4,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if any(s <= 0 for s in shape):
            raise ValueError(f"RunningNormalizer: shape must be positive, got {shape}")
        if not initial_count > 0:
            raise ValueError(f"RunningNormalizer: initial_count must be > 0, got {initial_count}")
        validate.running_norm_inputs(torch.zeros(1, *shape, dtype=dtype), torch.zeros(shape, dtype=dtype),
                                     torch.ones(shape, dtype=dtype), torch.tensor(1.0, dtype=torch.float64),
                                     eps, clip)
        self.center, self.eps, self.clip = center, eps, clip
        self.register_buffer("mean", torch.zeros(shape, dtype=dtype))
        self.register_buffer("var", torch.ones(shape, dtype=dtype))
        self.register_buffer("count", torch.tensor(initial_count, dtype=torch.float64))

    def forward(self, x: torch.Tensor, update: bool | None = None) -> torch.Tensor:
        """x: [B, *shape] -> normalised [B, *shape]; `update` defaults to self.training."""
        return running_normalize(x, self.mean, self.var, self.count,
                                 self.training if update is None else update,
                                 self.center, self.eps, self.clip)

    def shift_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(m, s)``, new float64 tensors, such that ``forward`` returns ``clip((x - m) / s)``
        with the current statistics."""
        # copies: the statistics are float64 already, and an update changes them in place
        shift = self.mean.to(torch.float64, copy=True) if self.center else torch.zeros_like(self.mean, dtype=torch.float64)
        return shift, torch.sqrt(self.var.double() + self.eps)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.mean.shape)}, center={self.center}, eps={self.eps}, clip={self.clip}"

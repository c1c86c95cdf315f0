"""Unsupervised step discovery and per-step feature selection (Sermanet, Xu, Levine 2016).

A demonstration's features ``[L, D]`` are split into K contiguous steps minimising the
within-step spread, each step a Gaussian. The paper averages the steps' standard deviations;
unweighted, that objective is smallest for steps of a frame or two (a single frame has no
spread), so here each step's variance is weighted by its length: the total squared deviation
from the step means, summed over features (the classic optimal 1-D segmentation). The paper
searches recursively; exact dynamic programming over prefix sums of ``x`` and ``x^2`` finds the
optimum in O(K L^2 D) time and O(L D) memory.
"""

from __future__ import annotations

from typing import Sequence

import torch


def segment_costs(features: torch.Tensor) -> torch.Tensor:
    """``cost[i, j]`` = squared deviation of frames ``i..j-1`` from their mean, summed over features
    (``[L + 1, L + 1]``, float64).

    Entries with ``j <= i`` are ``inf``.
    """
    x = features.double()
    length = x.shape[0]
    zero = x.new_zeros(1, x.shape[1])
    s1 = torch.cat([zero, x.cumsum(0)])
    s2 = torch.cat([zero, (x * x).cumsum(0)])
    cost = torch.full((length + 1, length + 1), float("inf"), dtype=torch.float64)
    ends = torch.arange(length + 1, dtype=torch.float64)
    for i in range(length):
        n = (ends[i + 1:] - i).unsqueeze(1)
        total = s1[i + 1:] - s1[i]
        # sum (x - mean)^2 = sum x^2 - (sum x)^2 / n; clamp the rounding error of the difference
        cost[i, i + 1:] = ((s2[i + 1:] - s2[i]) - total * total / n).clamp_min(0.0).sum(1)
    return cost


def segment(features: torch.Tensor, num_steps: int, min_length: int = 1) -> list[int]:
    """Split one demonstration into ``num_steps`` contiguous steps; returns their start frames.

    Args:
        features: ``[L, D]`` per-frame features of one demo, in time order (z-normalised).
        num_steps: K >= 1; needs ``L >= K * min_length``.
        min_length: the fewest frames a step may have.

    Returns: K increasing start indices, the first 0; step g spans ``[starts[g], starts[g+1])``.
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or not features.is_floating_point():
        raise ValueError(f"segment: features must be a float tensor [L, D], got "
                         f"{getattr(features, 'shape', type(features).__name__)}")
    if not torch.isfinite(features).all():
        raise ValueError("segment: features contain NaN or inf; check the feature backbone's output")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"segment: num_steps must be a positive int, got {num_steps!r}")
    if isinstance(min_length, bool) or not isinstance(min_length, int) or min_length < 1:
        raise ValueError(f"segment: min_length must be a positive int, got {min_length!r}")
    length = features.shape[0]
    if length < num_steps * min_length:
        raise ValueError(f"segment: a demo of {length} frames cannot split into {num_steps} steps of at least "
                         f"{min_length} frames; use fewer steps or longer demonstrations")
    cost = segment_costs(features.detach().cpu())
    lengths = torch.arange(length + 1).unsqueeze(0) - torch.arange(length + 1).unsqueeze(1)
    cost[lengths < min_length] = float("inf")
    # best[k, j]: least cost of splitting frames 0..j-1 into k steps; arg[k, j]: start of the last
    best = torch.full((num_steps + 1, length + 1), float("inf"), dtype=torch.float64)
    arg = torch.zeros((num_steps + 1, length + 1), dtype=torch.long)
    best[0, 0] = 0.0
    for k in range(1, num_steps + 1):
        total = best[k - 1].unsqueeze(1) + cost  # [start, end]
        best[k], arg[k] = total.min(0)
    starts = [0] * num_steps
    end = length
    for k in range(num_steps, 0, -1):
        start = int(arg[k, end])
        starts[k - 1] = start
        end = start
    return starts


def step_labels(starts: Sequence[int], length: int) -> torch.Tensor:
    """Step index of every frame ``[L]`` (int64) from the start frames ``segment`` returns."""
    labels = torch.zeros(length, dtype=torch.long)
    for g, start in enumerate(starts[1:], 1):
        labels[start:] = g
    return labels


#: the default floor of a step's std, in z units: bounds each feature's 1/std at 1000
MIN_STD = 1e-3


def select_features(features: torch.Tensor, labels: torch.Tensor, num_steps: int, alpha: float = 5.0,
                    top_n: int = 32, min_std: float | torch.Tensor = MIN_STD
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per step g, the ``top_n`` features that best tell its frames from the others.

    Score ``z = alpha * |mu+ - mu-| - (sigma+ + sigma-)`` with positives the frames labelled g
    and negatives all other frames (of every demo), as in the paper.

    Args:
        features: ``[M, D]`` z-normalised features of all demo frames.
        labels: ``[M]`` int64 step of each frame, in ``[0, num_steps)``; every step needs a frame.
        min_std: floor of the positives' std, so a feature constant within a step cannot give an
            infinitely sharp Gaussian: a number, or one per feature ``[D]`` (the recording noise
            of each feature in z units).

    Returns: ``index [K, n]`` int64, ``mean [K, n]`` and ``inv_std [K, n]`` (the positives' mean and
    1 / std of each selected feature), float32; ``n = min(top_n, D)``.
    """
    if features.dim() != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"select_features: features must be [M, D] and labels [M], got "
                         f"{list(features.shape)} and {list(labels.shape)}")
    counts = torch.bincount(labels, minlength=num_steps)
    if counts.numel() != num_steps or bool((counts == 0).any()):
        raise ValueError(f"select_features: every step in [0, {num_steps}) needs frames; frames per step: "
                         f"{counts.tolist()}")
    x = features.double()
    floor = torch.as_tensor(min_std, dtype=torch.float64)
    if floor.shape not in ((), (x.shape[1],)) or not bool((floor > 0).all()):
        raise ValueError(f"select_features: min_std must be positive, one number or one per feature "
                         f"[{x.shape[1]}], got shape {list(floor.shape)}")
    floor = floor.expand(x.shape[1])
    n = min(int(top_n), x.shape[1])
    index, mean, inv_std = [], [], []
    for g in range(num_steps):
        pos, neg = x[labels == g], x[labels != g]
        mu_p, sd_p = pos.mean(0), pos.std(0, unbiased=False)
        mu_n, sd_n = (neg.mean(0), neg.std(0, unbiased=False)) if len(neg) else (mu_p, sd_p)
        score = alpha * (mu_p - mu_n).abs() - (sd_p + sd_n)
        top = score.topk(n).indices
        index.append(top)
        mean.append(mu_p[top])
        inv_std.append(1.0 / torch.maximum(sd_p[top], floor[top]))
    return torch.stack(index), torch.stack(mean).float(), torch.stack(inv_std).float()

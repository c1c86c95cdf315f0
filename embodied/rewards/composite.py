"""Reward terms computed from a step's batch, and their weighted sum."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import torch


class RewardTerm(abc.ABC):
    """One reward term: ``__call__(batch) -> Tensor[N]``.

    ``needs`` names the batch fields it reads, out of ``obs`` (observation before the step),
    ``next_obs`` (the step's final observation), ``actions``, ``env_reward``, ``success``,
    ``frames`` (uint8 ``[N, H, W, 3]`` rendered after the step; an env that just finished has
    already reset, so its frame shows the next episode's start) and ``instructions``; the trainer
    fills only what some term needs (rendering frames costs time).
    """

    needs: ClassVar[frozenset[str]]

    @abc.abstractmethod
    def __call__(self, batch: Mapping[str, Any]) -> torch.Tensor: ...


class FrameRewardTerm(RewardTerm):
    """A reward computed from rendered frames alone (CLIP, perceptual rewards).

    Callable on a step batch (reads ``batch["frames"]``) or directly on uint8 frames
    ``[B, H, W, 3]``; returns float32 ``[B]`` on the frames' device.
    """

    needs = frozenset({"frames"})

    def __call__(self, batch: Mapping[str, Any] | torch.Tensor) -> torch.Tensor:
        frames = batch if isinstance(batch, torch.Tensor) else batch["frames"]
        return self.score(check_frames(frames, type(self).__name__))

    @abc.abstractmethod
    def score(self, frames: torch.Tensor) -> torch.Tensor:
        """Rewards ``[B]`` float32 for validated uint8 frames ``[B, H, W, 3]``."""


def check_frames(frames: object, who: str) -> torch.Tensor:
    """Raise a clear error unless ``frames`` is a uint8 ``[B, H, W, 3]`` tensor (B may be 0)."""
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"{who}: frames must be a torch.Tensor uint8 [B, H, W, 3], got {type(frames).__name__}")
    if frames.dim() != 4:
        raise ValueError(f"{who}: frames must be [B, H, W, 3] (batch, height, width, RGB), got shape "
                         f"{list(frames.shape)}; add a batch dimension with frames[None] for one frame")
    if frames.shape[-1] != 3:
        raise ValueError(f"{who}: frames must have 3 channels last (RGB, [B, H, W, 3]), got shape "
                         f"{list(frames.shape)}; convert [B, 3, H, W] with frames.permute(0, 2, 3, 1) "
                         "and drop alpha with frames[..., :3]")
    if frames.dtype != torch.uint8:
        raise TypeError(f"{who}: frames must be uint8 in [0, 255], got {frames.dtype}; convert float images "
                        "in [0, 1] with (x * 255).round().to(torch.uint8)")
    if frames.shape[1] < 1 or frames.shape[2] < 1:
        raise ValueError(f"{who}: frames have an empty spatial size {list(frames.shape)}")
    return frames


class EnvReward(RewardTerm):
    """The task's own reward (dense, hand-written by the task's authors)."""

    needs = frozenset({"env_reward"})

    def __call__(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return batch["env_reward"].float()


class SuccessReward(RewardTerm):
    """1 at steps where the task's success predicate holds, else 0: a sparse reward."""

    needs = frozenset({"success"})

    def __call__(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return batch["success"].float()


#: term name (the key of ``reward.weights``) -> term class
REWARD_TERMS: dict[str, type[RewardTerm]] = {"env": EnvReward, "success": SuccessReward}


class CompositeReward:
    """``sum(weight * term(batch))`` over the configured terms.

    Returns ``(reward [N], {name: term [N]})``; the per-term values are unweighted, so logs show
    each term on its own scale.
    """

    def __init__(self, weights: Mapping[str, float], terms: Mapping[str, RewardTerm] | None = None) -> None:
        if not weights:
            raise ValueError("CompositeReward: weights must name at least one term, e.g. {'env': 1.0}")
        self.weights = dict(weights)
        built: dict[str, RewardTerm] = dict(terms or {})
        for name in self.weights:
            if name not in built:
                if name not in REWARD_TERMS:
                    raise ValueError(f"unknown reward term {name!r}; known terms: {', '.join(sorted(REWARD_TERMS))}")
                built[name] = REWARD_TERMS[name]()
        self.terms = {name: built[name] for name in self.weights}

    @property
    def needs(self) -> frozenset[str]:
        return frozenset().union(*(term.needs for term in self.terms.values()))

    def __call__(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        missing = self.needs - set(batch)
        if missing:
            raise KeyError(f"reward batch lacks {sorted(missing)}")
        values = {name: term(batch) for name, term in self.terms.items()}
        total = sum(self.weights[name] * value for name, value in values.items())
        assert isinstance(total, torch.Tensor)
        if not torch.isfinite(total).all():
            bad = [name for name, v in values.items() if not torch.isfinite(v).all()]
            raise ValueError(f"reward terms {bad} returned non-finite values")
        return total, values

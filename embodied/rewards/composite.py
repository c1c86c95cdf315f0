"""Reward terms computed from a step's batch, and their weighted sum."""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar

import torch


class RewardModelUnavailable(RuntimeError):
    """A reward model's weights cannot be had (no network, unknown tag, missing file); the message
    says which and how to supply them."""


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


#: terms built without arguments: name (the key of ``reward.weights``) -> class
REWARD_TERMS: dict[str, type[RewardTerm]] = {"env": EnvReward, "success": SuccessReward}
#: terms built from their config section by ``embodied.rewards.build_reward`` (reward models)
MODEL_TERMS: tuple[str, ...] = ("clip", "perceptual")


class CompositeReward:
    """``sum(weight * term(batch))`` over the configured terms.

    ``normalize`` names terms passed through a running mean/std normaliser (the compiled
    ``running_normalize`` op) before weighting, so terms on different scales (a CLIP similarity
    near 0.2, a task reward in the hundreds) can be mixed with interpretable weights;
    ``gather`` (e.g. ``Distributed.all_gather``) merges every rank's values into the statistics.

    ``__call__(batch)`` returns ``(reward [N], {name: term [N]})``; the per-term values are
    unweighted and unnormalised, so logs show each term on its own scale. ``values(batch)`` and
    ``combine(values)`` split the two stages, for callers that compute some terms later (pixel
    terms scored once per rollout).
    """

    def __init__(self, weights: Mapping[str, float], terms: Mapping[str, RewardTerm] | None = None,
                 normalize: Sequence[str] = (), gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 clip: float = 10.0) -> None:
        if not weights:
            raise ValueError("CompositeReward: weights must name at least one term, e.g. {'env': 1.0}")
        self.weights = dict(weights)
        built: dict[str, RewardTerm] = dict(terms or {})
        for name in self.weights:
            if name not in built:
                if name in MODEL_TERMS:
                    raise ValueError(f"reward term {name!r} is a reward model: build it with "
                                     "embodied.rewards.build_reward or pass it in terms=")
                if name not in REWARD_TERMS:
                    raise ValueError(f"unknown reward term {name!r}; known terms: "
                                     f"{', '.join(sorted([*REWARD_TERMS, *MODEL_TERMS]))}")
                built[name] = REWARD_TERMS[name]()
        self.terms = {name: built[name] for name in self.weights}
        unknown = sorted(set(normalize) - set(self.weights))
        if unknown:
            raise ValueError(f"CompositeReward: normalize names {unknown}, which are not weighted terms "
                             f"{sorted(self.weights)}")
        from embodied.ops import RunningNormalizer

        self.normalizers = {name: RunningNormalizer((), clip=clip) for name in normalize}
        self.gather = gather

    @property
    def needs(self) -> frozenset[str]:
        return frozenset().union(*(term.needs for term in self.terms.values()))

    def names_needing(self, field: str) -> list[str]:
        """The terms that read batch field ``field`` (e.g. ``"frames"``)."""
        return [name for name, term in self.terms.items() if field in term.needs]

    def values(self, batch: Mapping[str, Any], skip: Collection[str] = ()) -> dict[str, torch.Tensor]:
        """Unweighted ``{name: term [N]}`` of every term not in ``skip``."""
        out = {}
        for name, term in self.terms.items():
            if name in skip:
                continue
            missing = term.needs - set(batch)
            if missing:
                raise KeyError(f"reward term {name!r} needs batch fields {sorted(missing)}")
            value = term(batch)
            if not torch.isfinite(value).all():
                raise ValueError(f"reward term {name!r} returned non-finite values")
            out[name] = value
        return out

    def combine(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``sum(weight * normalised term)``; updates the running statistics of normalised terms."""
        missing = set(self.weights) - set(values)
        if missing:
            raise KeyError(f"CompositeReward.combine: no values for terms {sorted(missing)}")
        total: torch.Tensor | None = None
        for name, weight in self.weights.items():
            value = values[name].float()
            norm = self.normalizers.get(name)
            if norm is not None:
                norm.to(value.device)  # in place: a module's .to moves its buffers
                if self.gather is None:
                    value = norm(value, update=True).float()
                else:  # every rank merges the same gathered batch, so the statistics stay equal
                    norm(self.gather(value), update=True)
                    value = norm(value, update=False).float()
            part = weight * value
            total = part if total is None else total + part.to(total.device)
        assert total is not None
        return total

    def __call__(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        values = self.values(batch)
        return self.combine(values), values

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The normalisers' statistics (``<term>.<buffer>``), for checkpoints."""
        return {f"{name}.{k}": v for name, norm in self.normalizers.items() for k, v in norm.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        for name, norm in self.normalizers.items():
            norm.load_state_dict({k[len(name) + 1:]: v for k, v in state.items() if k.startswith(f"{name}.")})

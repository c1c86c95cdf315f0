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

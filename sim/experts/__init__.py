"""Scripted experts: ``make_expert(env)`` gives a policy ``obs [N, D] -> actions [N, A]`` for a ``VecEnv``.

Experts are chosen per env from ``env.task_names`` (so multi-task sets work) and are
stateless functions of the observation, so they need no reset and survive automatic resets.
The demonstration recorder (``sim.record``) adds its own action noise on top.
"""

from __future__ import annotations

import abc
import importlib
from typing import Sequence

import torch

from sim.vec_env import VecEnv

#: task-name prefix (the family, before "/") -> module defining ``make_family_expert`` and ``has_family_expert``
_FAMILIES = {"metaworld": "sim.experts.metaworld"}


class Expert(abc.ABC):
    """A scripted policy for ``num_envs`` envs: ``expert(obs [N, D] float) -> actions [N, A] float32``."""

    num_envs: int
    #: per-env task names the expert was built for
    task_names: list[str]

    @abc.abstractmethod
    def __call__(self, obs: torch.Tensor) -> torch.Tensor: ...


def _family(task_name: str) -> str | None:
    family = task_name.split("/", 1)[0] if "/" in task_name else None
    return family if family in _FAMILIES else None


def has_expert(task_name: str) -> bool:
    """Whether ``task_name`` (a registry name such as ``"metaworld/push"`` or a set such as
    ``"metaworld/mt10"``) has a scripted expert for every env it can hold."""
    if not isinstance(task_name, str):
        raise TypeError(f"task_name must be a str, got {type(task_name).__name__}")
    family = _family(task_name)
    if family is None:
        return False
    module = importlib.import_module(_FAMILIES[family])
    return bool(module.has_family_expert(task_name))


def make_expert(env: VecEnv) -> Expert:
    """The scripted expert of every env of ``env`` (by ``env.task_names``).

    Raises ``ValueError`` naming the tasks without an expert (``has_expert`` tells beforehand).
    """
    if not isinstance(env, VecEnv):
        raise TypeError(f"env must be a sim.VecEnv (from sim.make_env), got {type(env).__name__}")
    names: Sequence[str] = env.task_names
    missing = sorted({n for n in names if not has_expert(n)})
    if missing:
        raise ValueError(
            f"no scripted expert for task(s) {missing}; experts exist for the families {sorted(_FAMILIES)} "
            "(check with sim.experts.has_expert(name)); record demonstrations of other tasks with a trained policy"
        )
    families = {_family(n) for n in names}
    if len(families) != 1:
        raise ValueError(f"env mixes task families {sorted(map(str, families))}; one expert serves one family")
    family = families.pop()
    assert family is not None
    module = importlib.import_module(_FAMILIES[family])
    expert = module.make_family_expert(env)
    assert isinstance(expert, Expert)
    return expert


__all__ = ["Expert", "has_expert", "make_expert"]

"""Meta-World's scripted policies (``metaworld.policies``) as an ``Expert``, one per env by task.

The policies read hand, object and goal positions out of the 39-number observation (the goal
must be visible, as ``sim.tasks.metaworld`` makes it) and hold no state between steps.
Their actions are clipped to [-1, 1], which changes nothing the env does (it clips the hand
delta and MuJoCo clamps the gripper to its ``ctrlrange`` of [-1, 1]) but keeps recorded
demonstrations inside the action space.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch

from sim.experts import Expert
from sim.vec_env import VecEnv

#: observation / action sizes of Meta-World v3 envs
OBS_DIM = 39
ACTION_DIM = 4


def _policy_classes() -> dict[str, Any]:
    from metaworld.policies import ENV_POLICY_MAP

    return dict(ENV_POLICY_MAP)


def has_family_expert(task_name: str) -> bool:
    """Whether every task of ``task_name`` (``metaworld/<task>`` or ``metaworld/mt10|mt50``) has a policy."""
    from sim.tasks.metaworld import tasks_of

    try:
        tasks = tasks_of(task_name)
    except ValueError:
        return False
    classes = _policy_classes()
    return all(f"{t}-v3" in classes for t in tasks)


class MetaWorldExpert(Expert):
    """Meta-World's scripted policy of each env's task; ``task_names`` like ``"metaworld/push"``."""

    def __init__(self, task_names: Sequence[str]) -> None:
        from sim.tasks.metaworld import tasks_of

        if isinstance(task_names, str) or not task_names:
            raise ValueError(f"task_names must be a non-empty list of per-env task names, got {task_names!r}")
        classes = _policy_classes()
        policies: dict[str, Any] = {}
        self._policies = []
        for name in task_names:
            try:
                tasks = tasks_of(name)
            except ValueError:
                tasks = ()
            if len(tasks) != 1 or f"{tasks[0]}-v3" not in classes:
                raise ValueError(f"no Meta-World scripted policy for env task {name!r}; per-env names look like "
                                 "'metaworld/push' (sets such as metaworld/mt10 list one task per env)")
            # the policies are stateless, so one instance serves every env of a task
            task = tasks[0]
            self._policies.append(policies.setdefault(task, classes[f"{task}-v3"]()))
        self.task_names = list(task_names)
        self.num_envs = len(self.task_names)

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions float32 ``[N, 4]`` in [-1, 1] for observations ``[N, 39]`` (any float dtype/device, returned on CPU)."""
        if not isinstance(obs, torch.Tensor):
            raise TypeError(f"obs must be a torch.Tensor [num_envs, {OBS_DIM}], got {type(obs).__name__}")
        if not obs.is_floating_point():
            raise TypeError(f"obs must be a float tensor, got {obs.dtype}")
        if tuple(obs.shape) != (self.num_envs, OBS_DIM):
            raise ValueError(f"obs must have shape [num_envs, {OBS_DIM}] = [{self.num_envs}, {OBS_DIM}], "
                             f"got {list(obs.shape)} (pass the env's observations unchanged)")
        arr = obs.detach().to("cpu", torch.float64).numpy()
        if not np.isfinite(arr).all():
            raise ValueError("obs contains NaN or inf; the expert needs the env's raw observations")
        with warnings.catch_warnings():
            # metaworld.policies.move warns whenever its gain saturates an action, i.e. most steps
            warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
            actions = np.stack([policy.get_action(o) for policy, o in zip(self._policies, arr)])
        return torch.from_numpy(np.clip(actions, -1.0, 1.0).astype(np.float32))


def make_family_expert(env: VecEnv) -> MetaWorldExpert:
    """``MetaWorldExpert`` for ``env`` (a Meta-World ``VecEnv``: 39-number observations, 4 actions)."""
    if env.observation_spec.shape != (OBS_DIM,) or env.action_spec.shape != (ACTION_DIM,):
        raise ValueError(
            f"Meta-World experts need {OBS_DIM}-number observations and {ACTION_DIM} actions, the env has "
            f"{env.observation_spec.shape} and {env.action_spec.shape}"
        )
    return MetaWorldExpert(env.task_names)

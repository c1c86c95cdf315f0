"""Tiny pure-numpy tasks for testing learners quickly (no physics engine, no renderer).

``toy/point``: ``num_envs`` independent 1-D point masses, each to be moved onto a target.
Observation ``[position, target]``; action ``[velocity]`` in [-1, 1], moving the point by
``0.1 * action`` per step (the position stays in [-1, 1]). Targets are drawn uniformly from
[-0.8, 0.8] and start positions from [-1, 1] at every episode start, from per-env random streams.
Reward ``-|target - position|`` after the move; success ``|target - position| < 0.05``.
Episodes are truncated after ``max_episode_steps`` (50) steps and, with
``terminate_on_success=True``, terminated at the first success.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sim.registry import register_task
from sim.vec_env import BoxSpec, EpisodeStats, StepResult, VecEnv, check_env_args, split_seed

POINT_TASK = "toy/point"
POINT_INSTRUCTION = "move the point to the target"
#: position change per step at action 1
STEP_SIZE = 0.1
#: targets are drawn from [-TARGET_RANGE, TARGET_RANGE]
TARGET_RANGE = 0.8
#: success: |target - position| below this
SUCCESS_DISTANCE = 0.05

_BACKGROUND = np.array([24, 24, 32], np.uint8)
_LINE = np.array([160, 160, 160], np.uint8)
_TARGET = np.array([40, 200, 60], np.uint8)
_POINT = np.array([220, 40, 40], np.uint8)


class PointVecEnv(VecEnv):
    """``toy/point``: N independent 1-D point masses reaching per-episode targets (see the module doc)."""

    def __init__(
        self,
        num_envs: int,
        seed: int = 0,
        render_size: tuple[int, int] = (224, 224),
        max_episode_steps: int = 50,
        terminate_on_success: bool = False,
    ) -> None:
        num_envs, seed, render_size = check_env_args(num_envs, seed, render_size)
        steps_ok = isinstance(max_episode_steps, (int, np.integer)) and not isinstance(max_episode_steps, bool)
        if not steps_ok or max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be a positive int, got {max_episode_steps!r}")
        if not isinstance(terminate_on_success, (bool, np.bool_)):
            raise ValueError(f"terminate_on_success must be a bool, got {terminate_on_success!r}")
        self.num_envs = num_envs
        self.render_size = render_size
        self.max_episode_steps = int(max_episode_steps)
        self.terminate_on_success = bool(terminate_on_success)
        self.dt = 0.05
        self.instructions = [POINT_INSTRUCTION] * num_envs
        self.task_names = [POINT_TASK] * num_envs
        self.observation_spec = BoxSpec((2,), np.array([-1.0, -TARGET_RANGE]), np.array([1.0, TARGET_RANGE]))
        self.action_spec = BoxSpec((1,), np.array([-1.0]), np.array([1.0]))
        #: current point positions and targets, ``[N]`` float64
        self.position = np.zeros(num_envs, np.float64)
        self.target = np.zeros(num_envs, np.float64)
        self._rngs = split_seed(seed, num_envs)
        self._steps = np.zeros(num_envs, np.int64)
        self._stats = EpisodeStats(num_envs)
        self._closed = False
        self._reset_envs(np.arange(num_envs))

    # ---- stepping ------------------------------------------------------------------------
    def _reset_envs(self, env_ids: np.ndarray) -> None:
        for i in env_ids:
            rng = self._rngs[i]
            self.target[i] = rng.uniform(-TARGET_RANGE, TARGET_RANGE)
            self.position[i] = rng.uniform(-1.0, 1.0)
        self._steps[env_ids] = 0

    def _observation(self) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.position, self.target], axis=1).astype(np.float32))

    def _reset(self, seed: int | None) -> torch.Tensor:
        self._check_open()
        if seed is not None:
            self._rngs = split_seed(seed, self.num_envs)
        self._reset_envs(np.arange(self.num_envs))
        self._stats.clear()
        return self._observation()

    def _step(self, actions: np.ndarray) -> StepResult:
        self._check_open()
        action = np.clip(actions[:, 0], self.action_spec.low[0], self.action_spec.high[0])
        self.position = np.clip(self.position + STEP_SIZE * action, -1.0, 1.0)
        distance = np.abs(self.target - self.position)
        reward = -distance
        success = distance < SUCCESS_DISTANCE
        self._steps += 1
        terminated = success.copy() if self.terminate_on_success else np.zeros(self.num_envs, bool)
        truncated = (self._steps >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        final_obs = self._observation()
        ep_return, ep_length = self._stats.add(reward, done)
        self._capture_final_frames()
        if done.any():
            self._reset_envs(np.flatnonzero(done))
            obs = self._observation()
        else:
            obs = final_obs.clone()  # two tensors the caller may change independently
        reward_t = torch.from_numpy(reward.astype(np.float32))
        info: dict[str, Any] = {
            "success": torch.from_numpy(success),
            "final_observation": final_obs,
            "episode_return": ep_return,
            "episode_length": ep_length,
            "reward_terms": {"distance": reward_t.clone()},
        }
        return StepResult(obs, reward_t, torch.from_numpy(terminated), torch.from_numpy(truncated), info)

    # ---- rendering -------------------------------------------------------------------------
    def _render(self, env_ids: list[int]) -> torch.Tensor:
        """A dark frame with a grey track, the target as a green bar and the point as a red square."""
        self._check_open()
        h, w = self.render_size
        frames = np.empty((len(env_ids), h, w, 3), np.uint8)
        frames[:] = _BACKGROUND
        mid = h // 2
        frames[:, mid, :] = _LINE
        half = max(1, min(h, w) // 16)  # half-size of the square and half-height of the bar
        for row, i in enumerate(env_ids):
            tx = self._column(self.target[i])
            bar = half // 2
            frames[row, max(0, mid - 3 * half) : mid + 3 * half + 1, max(0, tx - bar) : tx + bar + 1] = _TARGET
            px = self._column(self.position[i])
            frames[row, max(0, mid - half) : mid + half + 1, max(0, px - half) : px + half + 1] = _POINT
        return torch.from_numpy(frames)

    def _column(self, x: float) -> int:
        """The pixel column of position ``x`` in [-1, 1], with a small margin at both ends."""
        w = self.render_size[1]
        margin = w // 16
        return int(round(margin + (x + 1.0) / 2.0 * (w - 1 - 2 * margin)))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this env is closed; build a new one with sim.make_env(...)")

    def close(self) -> None:
        self._closed = True


_OPTIONS = ("max_episode_steps", "terminate_on_success")


def make_point(
    name: str, num_envs: int, seed: int, render_size: tuple[int, int], backend: str = "native", **kwargs: Any
) -> PointVecEnv:
    """Registry factory of ``toy/point`` (options: ``max_episode_steps``, ``terminate_on_success``)."""
    if backend != "native":
        raise ValueError(f"task {name!r}: backend {backend!r} is not available here; use backend='native'")
    unknown = sorted(set(kwargs) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for task {name!r}; allowed: {list(_OPTIONS)}")
    return PointVecEnv(num_envs, seed, render_size, **kwargs)


register_task(POINT_TASK, make_point, instruction=POINT_INSTRUCTION, family="toy")

__all__ = ["POINT_INSTRUCTION", "POINT_TASK", "PointVecEnv", "make_point"]

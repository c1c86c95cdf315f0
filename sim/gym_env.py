"""Our own tasks as plain gymnasium environments (``gymnasium.make("embodied/humanoid-kneeling-v0")``).

For users of gymnasium tooling (wrappers, vector envs, ``check_env``): a single env over a
one-env ``VecEnv``, with float32 numpy observations and gymnasium's reset/step contract (the
VecEnv's automatic reset is hidden: a finished episode returns its final observation and the
caller resets).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch

from sim.registry import make_env



class SimGymEnv(gymnasium.Env[np.ndarray, np.ndarray]):
    """One env of task ``task`` behind gymnasium's ``Env`` API; ``render()`` returns ``[H, W, 3]`` uint8."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, task: str, render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self._env = make_env(task, num_envs=1, **kwargs)
        #: seconds per step, as gymnasium's MuJoCo envs report it
        self.dt = self._env.dt
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.dt)}
        self.observation_space = self._env.observation_spec.to_gym()
        self.action_space = self._env.action_spec.to_gym()
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs = self._env.reset(seed=seed)
        self._needs_reset = False
        return obs[0].numpy(), {"instruction": self._env.instructions[0]}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError("call reset() before step(), and again after an episode ends")
        result = self._env.step(torch.as_tensor(np.asarray(action, np.float32)[None]))
        terminated, truncated = bool(result.terminated[0]), bool(result.truncated[0])
        self._needs_reset = terminated or truncated
        obs = result.info["final_observation"][0] if self._needs_reset else result.observation[0]
        info = {"success": bool(result.info["success"][0])}
        return obs.numpy(), float(result.reward[0]), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._env.render([0])[0].numpy()

    def close(self) -> None:
        self._env.close()


def register_gymnasium_env(task: str, max_episode_steps: int) -> str:
    """Register task ``task`` with gymnasium as ``embodied/<task>-v0``; returns the id.

    The env truncates its episodes itself; the registered limit is the same, so that gymnasium
    tools that read it (``TimeLimit``, vector envs, ``sim.gym_vec``) see the real horizon.
    """
    env_id = f"embodied/{task}-v0"
    if env_id not in gymnasium.registry:
        gymnasium.register(
            env_id, entry_point="sim.gym_env:SimGymEnv", kwargs={"task": task}, max_episode_steps=max_episode_steps
        )
    return env_id

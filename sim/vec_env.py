"""The batched environment interface every learner and reward model consumes.

All tensors are batched over envs (dimension 0, size ``num_envs``) and live on the CPU.
Episodes reset automatically inside ``step``: the observation returned for a finished env is
the first observation of its next episode, and the last observation of the finished episode
is in ``info["final_observation"]`` (the SB3 / Isaac Lab convention, which time-limit
bootstrapping needs).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class BoxSpec:
    """A per-env box: shape (without the env dimension), dtype and elementwise bounds."""

    shape: tuple[int, ...]
    low: np.ndarray
    high: np.ndarray
    dtype: torch.dtype = torch.float32

    @classmethod
    def unbounded(cls, shape: tuple[int, ...]) -> "BoxSpec":
        return cls(shape, np.full(shape, -np.inf), np.full(shape, np.inf))

    def to_gym(self) -> Any:
        import gymnasium

        return gymnasium.spaces.Box(self.low.astype(np.float32), self.high.astype(np.float32), self.shape, np.float32)


class StepResult(NamedTuple):
    """What ``VecEnv.step`` returns; unpacks like gymnasium's 5-tuple.

    observation ``[N, *obs_shape]`` float32 (reset observation where an episode ended),
    reward ``[N]`` float32, terminated / truncated ``[N]`` bool, info: see ``VecEnv.step``.
    """

    observation: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    info: dict[str, Any]


@dataclass
class EpisodeStats:
    """Running per-env return / length, reported for the envs whose episode just ended."""

    num_envs: int
    returns: np.ndarray = field(init=False)
    lengths: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.returns = np.zeros(self.num_envs, np.float64)
        self.lengths = np.zeros(self.num_envs, np.int64)

    def add(self, reward: np.ndarray, done: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        self.returns += reward
        self.lengths += 1
        ep_return = torch.from_numpy(np.where(done, self.returns, 0.0).astype(np.float32))
        ep_length = torch.from_numpy(np.where(done, self.lengths, 0))
        self.returns[done] = 0.0
        self.lengths[done] = 0
        return ep_return, ep_length

    def clear(self) -> None:
        self.returns[:] = 0.0
        self.lengths[:] = 0


class VecEnv(abc.ABC):
    """``num_envs`` copies of one task (or of several tasks, for multi-task sets), stepped together.

    Subclasses set ``num_envs``, ``observation_spec``, ``action_spec``, ``instructions``,
    ``max_episode_steps`` and ``render_size`` and implement ``_reset`` / ``_step`` /
    ``_render``; this class validates the inputs and the shapes of what they return.
    """

    num_envs: int
    observation_spec: BoxSpec
    action_spec: BoxSpec
    #: the language instruction of each env's task ("open the door", ...), ``num_envs`` long
    instructions: list[str]
    #: per-env task names (equal for single-task envs)
    task_names: list[str]
    max_episode_steps: int
    #: seconds of simulated time per ``step`` (1 / dt is the control rate, the fps of recorded demos)
    dt: float
    #: (height, width) of ``render()`` frames
    render_size: tuple[int, int]

    # ---- public API -------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start a new episode in every env; returns observations ``[N, *obs_shape]``.

        ``seed`` derives one independent seed per env, so the same seed replays the same
        episodes; ``None`` continues the current random streams.
        """
        if seed is not None and (not _is_int(seed) or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        obs = self._reset(None if seed is None else int(seed))
        self._check_obs(obs, "reset")
        return obs

    def step(self, actions: torch.Tensor | np.ndarray, render: bool = False) -> StepResult:
        """Apply ``actions [N, *action_shape]`` (float) to every env and advance one step.

        Returns ``StepResult(observation, reward, terminated, truncated, info)`` where ``info`` has
        ``success`` (bool ``[N]``, the task's success predicate at this step),
        ``final_observation`` (``[N, *obs_shape]``; rows of envs that just finished hold their
        last observation, other rows equal ``observation``), ``episode_return`` /
        ``episode_length`` (``[N]``; non-zero only where an episode just finished).

        ``render=True`` adds ``info["frames"]``: uint8 ``[N, H, W, 3]`` of the state this step
        reached, rendered before automatic resets (a finished env's frame shows its final state,
        which pixel rewards must score, not the next episode's start).
        """
        if not isinstance(render, (bool, np.bool_)):
            raise TypeError(f"render must be a bool, got {type(render).__name__}")
        act = self._check_actions(actions)
        self._want_frames, self._final_frames = bool(render), None
        try:
            result = self._step(act)
        finally:
            self._want_frames = False
        self._check_obs(result.observation, "step")
        if render:
            frames, self._final_frames = self._final_frames, None
            if frames is None:
                raise RuntimeError(f"{type(self).__name__}._step did not capture frames before its automatic "
                                   "reset; it must call self._capture_final_frames() when step(render=True)")
            result.info["frames"] = frames
        return result

    def render(self, env_ids: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Frames of the current state: uint8 ``[B, H, W, 3]`` for ``env_ids`` (default: all)."""
        ids = self._check_env_ids(env_ids)
        frames = self._render(ids)
        h, w = self.render_size
        if frames.dtype != torch.uint8 or tuple(frames.shape) != (len(ids), h, w, 3):
            raise RuntimeError(f"{type(self).__name__}._render returned {tuple(frames.shape)} {frames.dtype}")
        return frames

    def close(self) -> None:
        """Release worker threads, processes and GL contexts."""

    def __enter__(self) -> "VecEnv":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- for subclasses ---------------------------------------------------------------
    _want_frames: bool = False
    _final_frames: torch.Tensor | None = None

    def _capture_final_frames(self, frames: torch.Tensor | None = None) -> None:
        """Call from ``_step`` after the physics step and before automatic resets.

        Renders every env (or takes ``frames`` a backend rendered itself, e.g. in its workers) when
        the caller asked ``step(render=True)``; a no-op otherwise.
        """
        if self._want_frames:
            self._final_frames = self.render() if frames is None else frames

    @abc.abstractmethod
    def _reset(self, seed: int | None) -> torch.Tensor: ...

    @abc.abstractmethod
    def _step(self, actions: np.ndarray) -> StepResult: ...

    @abc.abstractmethod
    def _render(self, env_ids: list[int]) -> torch.Tensor: ...

    # ---- validation -------------------------------------------------------------------
    def _check_actions(self, actions: torch.Tensor | np.ndarray) -> np.ndarray:
        expected = (self.num_envs, *self.action_spec.shape)
        if isinstance(actions, torch.Tensor):
            if not actions.is_floating_point():
                raise TypeError(f"actions must be a float tensor, got {actions.dtype}")
            arr = actions.detach().to("cpu", torch.float64).numpy()
        elif isinstance(actions, np.ndarray):
            if actions.dtype.kind != "f":
                raise TypeError(f"actions must be a float array, got {actions.dtype}")
            arr = actions.astype(np.float64, copy=False)
        else:
            raise TypeError(f"actions must be a torch.Tensor or numpy array, got {type(actions).__name__}")
        if arr.shape != expected:
            raise ValueError(
                f"actions must have shape [num_envs, *action_shape] = {list(expected)}, got {list(arr.shape)}"
            )
        if not np.isfinite(arr).all():
            env, *idx = np.argwhere(~np.isfinite(arr))[0]
            raise ValueError(
                f"actions[{env}, {', '.join(map(str, idx))}] is not finite ({arr[(env, *idx)]}); "
                "check the policy output (NaN usually means a diverged update)"
            )
        return arr

    def _check_env_ids(self, env_ids: Sequence[int] | torch.Tensor | None) -> list[int]:
        if env_ids is None:
            return list(range(self.num_envs))
        if isinstance(env_ids, torch.Tensor) and env_ids.dtype == torch.bool:
            raise TypeError("env_ids must be env indices, not a bool mask; pass mask.nonzero().flatten()")
        ids = env_ids.tolist() if isinstance(env_ids, torch.Tensor) else list(env_ids)
        bad = [i for i in ids if not _is_int(i) or not 0 <= i < self.num_envs]
        if bad:
            raise ValueError(f"env_ids must be ints in [0, {self.num_envs}), got {bad[:5]}")
        return [int(i) for i in ids]

    def _check_obs(self, obs: torch.Tensor, where: str) -> None:
        expected = (self.num_envs, *self.observation_spec.shape)
        if tuple(obs.shape) != expected or obs.dtype != torch.float32:
            raise RuntimeError(f"{type(self).__name__}.{where} returned {tuple(obs.shape)} {obs.dtype}, expected {expected}")


def split_seed(seed: int, n: int) -> list[np.random.Generator]:
    """One independent generator per env from one seed (``SeedSequence.spawn``)."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def env_seeds(seed: int, n: int) -> list[int]:
    """One independent integer seed per env for envs that take ``reset(seed=int)``.

    Unlike ``seed + i``, runs with nearby seeds share no env streams (with ``seed + i``, env 1
    of seed 7 would replay env 0 of seed 8).
    """
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def check_env_args(num_envs: object, seed: object, render_size: object) -> tuple[int, int, tuple[int, int]]:
    """Validate the arguments every VecEnv constructor takes; returns them as plain ints."""
    if not _is_int(num_envs) or int(num_envs) < 1:  # type: ignore[call-overload]
        raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
    if not _is_int(seed) or int(seed) < 0:  # type: ignore[call-overload]
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if (
        not isinstance(render_size, (tuple, list))
        or len(render_size) != 2
        or not all(_is_int(v) and v > 0 for v in render_size)
    ):
        raise ValueError(f"render_size must be (height, width) positive ints, got {render_size!r}")
    return int(num_envs), int(seed), (int(render_size[0]), int(render_size[1]))  # type: ignore[call-overload]

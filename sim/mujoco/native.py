"""The native MuJoCo backend: N copies of one MJCF task stepped in native threads.

One ``step`` is one call into ``embodied._C.mujoco_step_batch``, which (with the GIL released,
on a pool of C++ worker threads) writes each env's controls, takes ``frame_skip`` physics steps,
runs ``mj_rnePostConstraint`` (so ``cfrc_ext`` is current, as gymnasium's envs do) and gathers
the ``MjData`` fields the task declared into one ``[N, G]`` float64 buffer. Observations,
rewards and success predicates are then computed for all envs at once in numpy, from views
of that buffer. Without the compiled extension the same loop runs in Python (slower, same
numbers), which the tests use to check the native path.
"""

from __future__ import annotations

import abc
import copy
import ctypes
import glob
import os
from dataclasses import dataclass
from typing import Any, Callable

import mujoco
import numpy as np
import torch

from sim.mujoco.render import Camera, RendererPool, SceneFlags
from sim.vec_env import BoxSpec, EpisodeStats, StepResult, VecEnv, check_env_args, split_seed

#: ``randomize(model, data, rng)``: called on every env reset after the task set the initial
#: state; may change ``data`` (initial state, external forces) and, with ``per_env_models``,
#: the env's own ``model`` (masses, friction, gains).
Randomizer = Callable[[mujoco.MjModel, mujoco.MjData, np.random.Generator], None]


@dataclass(frozen=True)
class Field:
    """Rows ``first_row:`` of an ``MjData`` array, gathered after every step."""

    name: str
    attr: str
    first_row: int = 0

    def view(self, data: mujoco.MjData) -> np.ndarray:
        return getattr(data, self.attr)[self.first_row :]


class Gathered:
    """Named views ``[N, *field_shape]`` into the gathered ``[N, G]`` float64 buffer."""

    def __init__(self, buffer: np.ndarray, layout: dict[str, tuple[int, int, tuple[int, ...]]]) -> None:
        self.buffer = buffer
        self._layout = layout

    def __getitem__(self, name: str) -> np.ndarray:
        start, stop, shape = self._layout[name]
        return self.buffer[:, start:stop].reshape(len(self.buffer), *shape)

    def copy(self) -> "Gathered":
        return Gathered(self.buffer.copy(), self._layout)


@dataclass
class Outcome:
    """Per-env results of one step, each ``[N]``: reward, termination, success, reward terms."""

    reward: np.ndarray
    terminated: np.ndarray
    success: np.ndarray
    terms: dict[str, np.ndarray]


class MujocoTask(abc.ABC):
    """What a native task defines. Everything is vectorised over envs ``[N, ...]``."""

    name: str
    instruction: str
    frame_skip: int
    max_episode_steps: int
    camera: Camera = Camera()
    scene_flags: SceneFlags = SceneFlags()
    #: uniform noise added to the initial qpos/qvel (gymnasium's ``reset_noise_scale``)
    reset_noise_scale: float = 0.0
    #: qvel noise is Gaussian (HalfCheetah) instead of uniform
    gaussian_qvel_noise: bool = False

    @abc.abstractmethod
    def build_model(self) -> mujoco.MjModel:
        """The compiled model (shared by all envs unless they randomise it)."""

    @abc.abstractmethod
    def fields(self, model: mujoco.MjModel) -> list[Field]:
        """The ``MjData`` slices that ``observe`` and ``outcome`` read."""

    @abc.abstractmethod
    def observe(self, state: Gathered) -> np.ndarray:
        """Observations ``[N, obs_dim]`` from the gathered state."""

    @abc.abstractmethod
    def outcome(self, before: Gathered, after: Gathered, action: np.ndarray, dt: float) -> Outcome:
        """Reward, termination and success of the step ``before -> after`` under ``action [N, A]``."""

    def reset_env(self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator) -> None:
        """Set the initial state of one env: the keyframe-free default plus reset noise."""
        mujoco.mj_resetData(model, data)
        s = self.reset_noise_scale
        data.qpos[:] = model.qpos0 + rng.uniform(-s, s, model.nq)
        if self.gaussian_qvel_noise:
            data.qvel[:] = s * rng.standard_normal(model.nv)
        else:
            data.qvel[:] = rng.uniform(-s, s, model.nv)


def _libmujoco_functions() -> tuple[int, int] | None:
    """Addresses of ``mj_step`` and ``mj_rnePostConstraint`` in the libmujoco already loaded."""
    candidates = sorted(glob.glob(os.path.join(os.path.dirname(mujoco.__file__), "libmujoco.so*")))
    if not candidates:
        return None
    lib = ctypes.CDLL(candidates[0])
    return (
        ctypes.cast(lib.mj_step, ctypes.c_void_p).value or 0,
        ctypes.cast(lib.mj_rnePostConstraint, ctypes.c_void_p).value or 0,
    )


def _native_stepper() -> Callable[..., None] | None:
    try:
        import embodied._C as _C  # noqa: F401  (registers nothing we need; just the binding)
    except ImportError:
        return None
    return getattr(_C, "mujoco_step_batch", None)


class MujocoVecEnv(VecEnv):
    """``num_envs`` copies of a ``MujocoTask`` with per-env seeding and a randomisation hook.

    ``threads="native"`` (default) steps in ``num_threads`` C++ threads (default: every core this
    process may use); ``"python"`` runs the reference loop in the calling thread.
    """

    def __init__(
        self,
        task: MujocoTask,
        num_envs: int,
        seed: int = 0,
        render_size: tuple[int, int] = (224, 224),
        randomize: Randomizer | None = None,
        per_env_models: bool = False,
        threads: str = "native",
        num_threads: int | None = None,
        max_episode_steps: int | None = None,
    ) -> None:
        num_envs, seed, render_size = check_env_args(num_envs, seed, render_size)
        if threads not in ("native", "python"):
            raise ValueError(f"threads must be 'native' or 'python', got {threads!r}")
        if num_threads is not None and (not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 1):
            raise ValueError(f"num_threads must be a positive int or None (all cores), got {num_threads!r}")
        #: native stepping threads (default: the cores this process may run on)
        self.num_threads = num_threads or len(os.sched_getaffinity(0))
        if randomize is not None and not callable(randomize):
            raise TypeError(f"randomize must be a callable (model, data, rng) -> None, got {type(randomize).__name__}")
        if max_episode_steps is not None and (
            not isinstance(max_episode_steps, int) or isinstance(max_episode_steps, bool) or max_episode_steps < 1
        ):
            raise ValueError(f"max_episode_steps must be a positive int, got {max_episode_steps!r}")
        self.task = task
        self.num_envs = num_envs
        self.render_size = render_size
        self.max_episode_steps = max_episode_steps or task.max_episode_steps
        self.instructions = [task.instruction] * num_envs
        self.task_names = [task.name] * num_envs
        self._randomize = randomize

        base = task.build_model()
        self.model = base
        self.models = [copy.deepcopy(base) for _ in range(num_envs)] if per_env_models else [base] * num_envs
        self.datas = [mujoco.MjData(m) for m in self.models]
        self.dt = base.opt.timestep * task.frame_skip

        self._fields = task.fields(base)
        layout: dict[str, tuple[int, int, tuple[int, ...]]] = {}
        ptrs, lens, col = [], [], 0
        for f in self._fields:
            ref = f.view(self.datas[0])
            if not ref.flags.c_contiguous or ref.dtype != np.float64:
                raise ValueError(f"field {f.name}: data.{f.attr}[{f.first_row}:] is not a contiguous float64 array")
            layout[f.name] = (col, col + ref.size, ref.shape)
            lens.append(ref.size)
            col += ref.size
        for d in self.datas:
            ptrs.append([f.view(d).ctypes.data for f in self._fields])
        self._gather_ptrs = torch.tensor(ptrs, dtype=torch.int64)
        self._gather_lens = torch.tensor(lens, dtype=torch.int64)
        self._env_ptrs = torch.tensor(
            [[m._address, d._address, d.ctrl.ctypes.data] for m, d in zip(self.models, self.datas)], dtype=torch.int64
        )
        self._buffer = torch.zeros(num_envs, col, dtype=torch.float64)
        self._state = Gathered(self._buffer.numpy(), layout)
        self._ctrl = torch.zeros(num_envs, base.nu, dtype=torch.float64)

        functions = _libmujoco_functions() if threads == "native" else None
        self._stepper = _native_stepper() if functions else None
        self._functions = functions or (0, 0)
        if threads == "native" and self._stepper is None:
            raise RuntimeError(
                "threads='native' needs embodied._C (built with `pip install -e .`) and MuJoCo's shared library; "
                "pass threads='python' to use the pure-Python loop"
            )

        ctrlrange = base.actuator_ctrlrange.astype(np.float64)
        self.action_spec = BoxSpec((base.nu,), ctrlrange[:, 0], ctrlrange[:, 1])
        self._rngs = split_seed(seed, num_envs)
        self._steps = np.zeros(num_envs, np.int64)
        self._stats = EpisodeStats(num_envs)
        self._renderer: RendererPool | None = None
        self._closed = False
        self._reset_all()
        obs_dim = task.observe(self._state).shape[1]
        self.observation_spec = BoxSpec.unbounded((obs_dim,))

    # ---- stepping ------------------------------------------------------------------------
    def _advance(self, env_ids: np.ndarray | None, substeps: int) -> None:
        """Step (or, with ``substeps=0``, only gather) the given envs, all of them by default."""
        if env_ids is None:
            envs, ctrl, ptrs, out = self._env_ptrs, self._ctrl, self._gather_ptrs, self._buffer
        else:
            idx = torch.from_numpy(env_ids)
            envs, ctrl, ptrs = self._env_ptrs[idx], self._ctrl[idx], self._gather_ptrs[idx]
            out = torch.empty(len(idx), self._buffer.shape[1], dtype=torch.float64)
        if self._stepper is not None:
            self._stepper(
                self._functions[0], self._functions[1], envs, ctrl, substeps, ptrs, self._gather_lens, out,
                self.num_threads,
            )
        else:
            self._python_advance(env_ids, ctrl.numpy(), substeps, out.numpy())
        if env_ids is not None:
            self._buffer[torch.from_numpy(env_ids)] = out

    def _python_advance(self, env_ids: np.ndarray | None, ctrl: np.ndarray, substeps: int, out: np.ndarray) -> None:
        ids = range(self.num_envs) if env_ids is None else env_ids
        for row, i in enumerate(ids):
            m, d = self.models[i], self.datas[i]
            if substeps:
                d.ctrl[:] = ctrl[row]
                mujoco.mj_step(m, d, nstep=substeps)
                mujoco.mj_rnePostConstraint(m, d)
            out[row] = np.concatenate([f.view(d).ravel() for f in self._fields])

    def _reset_envs(self, env_ids: np.ndarray) -> None:
        for i in env_ids:
            m, d, rng = self.models[i], self.datas[i], self._rngs[i]
            self.task.reset_env(m, d, rng)
            if self._randomize is not None:
                self._randomize(m, d, rng)
            mujoco.mj_forward(m, d)
        self._steps[env_ids] = 0
        self._advance(env_ids, 0)

    def _reset_all(self) -> None:
        self._reset_envs(np.arange(self.num_envs))
        self._stats.clear()

    def _reset(self, seed: int | None) -> torch.Tensor:
        self._check_open()
        if seed is not None:
            self._rngs = split_seed(seed, self.num_envs)
        self._reset_all()
        return self._observation(self._state)

    def _observation(self, state: Gathered) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.task.observe(state), dtype=np.float32))

    def _step(self, actions: np.ndarray) -> StepResult:
        self._check_open()
        before = self._state.copy()
        self._ctrl.numpy()[:] = actions
        self._advance(None, self.task.frame_skip)
        out = self.task.outcome(before, self._state, actions, self.dt)
        self._steps += 1
        terminated = out.terminated.astype(bool)
        truncated = (self._steps >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        final_obs = self._observation(self._state)
        ep_return, ep_length = self._stats.add(out.reward, done)
        self._capture_final_frames()
        if done.any():
            self._reset_envs(np.flatnonzero(done))
            obs = self._observation(self._state)
        else:
            obs = final_obs.clone()  # two tensors the caller may change independently
        info: dict[str, Any] = {
            "success": torch.from_numpy(out.success.astype(bool)),
            "final_observation": final_obs,
            "episode_return": ep_return,
            "episode_length": ep_length,
            "reward_terms": {k: torch.from_numpy(v.astype(np.float32)) for k, v in out.terms.items()},
        }
        return StepResult(
            obs,
            torch.from_numpy(out.reward.astype(np.float32)),
            torch.from_numpy(terminated),
            torch.from_numpy(truncated),
            info,
        )

    @property
    def state(self) -> Gathered:
        """The gathered ``MjData`` fields of every env after the last step or reset."""
        return self._state

    def set_state(self, env_id: int, qpos: np.ndarray, qvel: np.ndarray | None = None) -> None:
        """Put env ``env_id`` in the given configuration (``qpos [nq]``, ``qvel [nv]``, default 0)."""
        (env_id,) = self._check_env_ids([env_id])
        m, d = self.models[env_id], self.datas[env_id]
        qpos = np.asarray(qpos, np.float64)
        qvel = np.zeros(m.nv) if qvel is None else np.asarray(qvel, np.float64)
        if qpos.shape != (m.nq,) or qvel.shape != (m.nv,):
            raise ValueError(f"qpos must have shape ({m.nq},) and qvel ({m.nv},), got {qpos.shape} and {qvel.shape}")
        if not (np.isfinite(qpos).all() and np.isfinite(qvel).all()):
            raise ValueError("qpos and qvel must be finite")
        d.qpos[:], d.qvel[:] = qpos, qvel
        mujoco.mj_forward(m, d)
        self._advance(np.array([env_id]), 0)

    # ---- rendering -------------------------------------------------------------------------
    def _render(self, env_ids: list[int]) -> torch.Tensor:
        self._check_open()
        if self._renderer is None:
            h, w = self.render_size
            self._renderer = RendererPool(self.model, h, w, camera=self.task.camera, flags=self.task.scene_flags)
        # per-env models carry per-env appearance (randomised colours, sizes) into the frames
        models = [self.models[i] for i in env_ids] if self.models[0] is not self.model else None
        return self._renderer.render([self.datas[i] for i in env_ids], models=models)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this env is closed; build a new one with sim.make_env(...)")

    def close(self) -> None:
        self._closed = True
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def make_native(
    task: MujocoTask, num_envs: int, seed: int, render_size: tuple[int, int], backend: str = "native", **kwargs: Any
) -> MujocoVecEnv:
    """Factory shared by the native task families (checks the backend and the option names)."""
    if backend != "native":
        raise ValueError(f"task {task.name!r}: backend {backend!r} is not available here; use backend='native'")
    allowed = {"randomize", "per_env_models", "threads", "num_threads", "max_episode_steps"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for task {task.name!r}; allowed: {sorted(allowed)}")
    return MujocoVecEnv(task, num_envs, seed, render_size, **kwargs)


"""Any gymnasium environment (gymnasium's MuJoCo envs, Meta-World, ...) behind ``VecEnv``.

``GymVecEnv`` runs ``num_envs`` gymnasium envs either in this process (``workers=0``) or in
``k`` worker processes that each own a contiguous slice of the envs and do step, automatic
reset and rendering locally. Workers exchange data through one shared-memory block
(actions in; observations, rewards, flags and frames out) and get their commands over a
pipe, so a step costs one tiny message per worker plus the copies out of shared memory.

Which is faster depends on how much a vector step computes. Measured on the 2-core
reference machine while other jobs kept about one core busy (env-steps/s of ``step`` with
uniform random actions; median of 6-8 one-second bursts interleaved across the three
settings, best burst in brackets, ranges over separate runs; ``python -m bench.envs``
compares the default with gymnasium's vector envs):

    env              N    in-process     1 worker      2 workers
    Meta-World push   8   880-1170       770-980       1120-1400 (best 1940)
    Meta-World push  32   1120-1250      960-1130      1670-1980 (best 2430)
    HalfCheetah-v5    8   ~20000         11500-14700   12300-13900
    HalfCheetah-v5   32   17900-22700    12700-18600   13200-23800 (best 30200)
    HalfCheetah-v5  128   13800          12500         18400

A Meta-World step (~0.85 ms, mostly Python) amortises the 0.1-0.3 ms round trip to the
workers: two workers win 1.0-1.3x at 8 envs and 1.4-1.7x at 32. A HalfCheetah step (~45 us) does not:
in-process wins at 8 envs, breaks even at 32 when a core is free and loses when the machine
is busy; workers only win at ~100+ envs. So ``workers=None`` (the default) times one env and
starts one worker per core only when ``num_envs x step time`` reaches 5 ms
(``_WORKER_MIN_COMPUTE_S``): Meta-World from ~8 envs on, gymnasium's locomotion envs
in-process at usual sizes. Rendering costs the same either way (the renderer pool already
renders on two GL threads in-process): 90-150 Meta-World steps + 224x224 frames per second
with 8 envs, depending on the load.

Frames of MuJoCo-based envs (``env.unwrapped`` has ``model`` and ``data``) come from
``sim.mujoco.render.RendererPool``, one pool per distinct model; other envs fall back to
``env.render()`` (they must be built with ``render_mode="rgb_array"``), resized.
"""

from __future__ import annotations

import functools
import hashlib
import mmap
import multiprocessing as mp
import os
import pickle
import tempfile
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from sim.vec_env import BoxSpec, EpisodeStats, StepResult, VecEnv, check_env_args, env_seeds

if TYPE_CHECKING:
    import gymnasium

    from sim.mujoco.render import Camera, RendererPool, SceneFlags

#: builds one gymnasium env; must be picklable (a module-level function or ``functools.partial``)
#: when ``workers > 0``
EnvFactory = Callable[[], "gymnasium.Env[Any, Any]"]

#: in-process compute per vector step (num_envs x one env step) above which ``workers=None``
#: starts worker processes. On the 2-core reference machine a step's round trip to two workers
#: costs 0.1-0.3 ms (more when other processes hold a core), and below ~5 ms of compute the
#: parallel part did not pay for it: see the module docstring.
_WORKER_MIN_COMPUTE_S = 5e-3


@dataclass(frozen=True)
class _EnvMeta:
    """What the parent needs to know about one env (sent back by workers)."""

    name: str
    obs_shape: tuple[int, ...]
    obs_low: np.ndarray
    obs_high: np.ndarray
    act_shape: tuple[int, ...]
    act_low: np.ndarray
    act_high: np.ndarray
    max_episode_steps: int | None
    #: seconds per step (MuJoCo envs' ``dt``, else 1 / ``metadata["render_fps"]``), None if unknown
    dt: float | None


_FIELDS: tuple[tuple[str, str, type], ...] = (
    # (name, per-env shape: "act" | "obs" | "scalar" | "frame", dtype)
    ("actions", "act", np.float64),
    ("obs", "obs", np.float32),
    ("final_obs", "obs", np.float32),
    ("reward", "scalar", np.float64),
    ("terminated", "scalar", np.bool_),
    ("truncated", "scalar", np.bool_),
    ("success", "scalar", np.bool_),
    ("frames", "frame", np.uint8),
)


class _Buffers:
    """Every per-step array of all ``n`` envs, laid out in one flat byte buffer.

    The layout depends only on the sizes, so a worker needs just the shared-memory file's path
    to see the same arrays as the parent.
    """

    actions: np.ndarray  # [N, *act] float64
    obs: np.ndarray  # [N, *obs] float32
    final_obs: np.ndarray  # [N, *obs] float32
    reward: np.ndarray  # [N] float64
    terminated: np.ndarray  # [N] bool
    truncated: np.ndarray  # [N] bool
    success: np.ndarray  # [N] bool
    frames: np.ndarray  # [N, H, W, 3] uint8

    def __init__(self, buf: Any, n: int, obs_shape: tuple[int, ...], act_shape: tuple[int, ...],
                 render_size: tuple[int, int]) -> None:
        for name, shape, dtype, offset in self.layout(n, obs_shape, act_shape, render_size)[0]:
            setattr(self, name, np.ndarray(shape, dtype, buffer=buf, offset=offset))

    @staticmethod
    def layout(n: int, obs_shape: tuple[int, ...], act_shape: tuple[int, ...], render_size: tuple[int, int]
               ) -> tuple[list[tuple[str, tuple[int, ...], type, int]], int]:
        """((name, shape, dtype, byte offset) per array, total bytes); arrays 64-byte aligned."""
        per_env = {"act": act_shape, "obs": obs_shape, "scalar": (), "frame": (*render_size, 3)}
        out, offset = [], 0
        for name, kind, dtype in _FIELDS:
            shape = (n, *per_env[kind])
            out.append((name, shape, dtype, offset))
            offset += -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // 64) * 64
        return out, offset


class _SharedBlock:
    """A file in shared memory (``/dev/shm``) mapped by the parent and its workers.

    The parent removes the file as soon as every worker has mapped it, so nothing is left behind
    however the processes end (``multiprocessing.shared_memory`` would need its resource tracker
    for that, which misfires when workers attach on Python < 3.13).
    """

    def __init__(self, size: int, path: str | None = None) -> None:
        if path is None:
            fd, path = tempfile.mkstemp(prefix="gymvec-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
            try:
                os.ftruncate(fd, size)
            except BaseException:
                os.close(fd)
                os.unlink(path)
                raise
        else:
            fd = os.open(path, os.O_RDWR)
        try:
            self.buf = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.path = path
        self.size = size

    def unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Unmaps the block; every numpy view of it must be gone."""
        self.buf.close()


def _model_key(model: Any) -> str:
    """Identifies MuJoCo models with the same geometry, which can share one renderer pool.

    Meta-World moves bodies by editing ``model.body_pos`` at reset; positions reach the renderer
    through ``MjData``, so they are deliberately left out of the key.
    """
    h = hashlib.sha1()
    for arr in (model.geom_type, model.geom_size, model.geom_dataid, model.geom_matid, model.body_parentid):
        h.update(np.ascontiguousarray(arr).tobytes())
    return f"{model.nq}-{model.nv}-{model.nbody}-{model.ngeom}-{h.hexdigest()}"


@dataclass(frozen=True)
class _RenderSpec:
    """How the renderer pools of a vector draw its envs (sent to the workers)."""

    camera: "Camera | Mapping[str, Any] | None" = None
    scene_flags: "SceneFlags | None" = None
    hide_bodies: tuple[str, ...] = ()
    show_bodies: tuple[str, ...] = ()


def _camera_for(camera: "Camera | Mapping[str, Any] | None", unwrapped: Any) -> "Camera":
    """``camera`` as a ``Camera`` (a mapping gives its fields), or the env's own default view.

    The default mirrors gymnasium's ``MujocoRenderer``: the model camera the env was built with,
    else the free camera of ``mjv_defaultFreeCamera`` updated with the env's
    ``default_camera_config``. Unlike gymnasium, a ``trackbodyid`` in that config is honoured
    (gymnasium drops it), so a walking body stays in frame.
    """
    from sim.mujoco.render import Camera

    if isinstance(camera, Camera):
        return camera
    if camera is not None:
        return Camera(**camera)
    model = unwrapped.model
    renderer = getattr(unwrapped, "mujoco_renderer", None)
    cam_id = getattr(renderer, "camera_id", None)
    if cam_id is not None and cam_id >= 0:
        return Camera(name=int(cam_id))
    fields: dict[str, Any] = {
        "lookat": tuple(float(v) for v in model.stat.center),
        "distance": 1.5 * float(model.stat.extent),
        "azimuth": float(model.vis.global_.azimuth),
        "elevation": float(model.vis.global_.elevation),
    }
    for key, value in (getattr(renderer, "default_cam_config", None) or {}).items():
        if key in ("trackbodyid", "distance", "lookat", "elevation", "azimuth"):
            fields[key] = tuple(float(v) for v in value) if key == "lookat" else value
    return Camera(**fields)


def _resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An ``env.render()`` frame ``[h, w, 3|4]`` as uint8 ``[H, W, 3]`` (antialiased bilinear)."""
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise RuntimeError(f"env.render() returned shape {frame.shape}; expected an RGB(A) image [H, W, 3]")
    rgb = np.ascontiguousarray(frame[..., :3])
    if rgb.shape[:2] == size and rgb.dtype == np.uint8:
        return rgb
    t = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


class _EnvSlice:
    """Envs ``ids`` of the vector: stepping, automatic reset and rendering into ``_Buffers``.

    The same code runs in-process (``workers=0``) and inside each worker process.
    """

    def __init__(self, env_fns: Sequence[EnvFactory], ids: range, render_size: tuple[int, int],
                 spec: _RenderSpec) -> None:
        self.ids = ids
        self.render_size = render_size
        self.spec = spec
        self.envs: list[gymnasium.Env[Any, Any]] = []
        self.bufs: _Buffers | None = None
        self._pools: dict[str, RendererPool] = {}
        try:
            for i in ids:
                self.envs.append(env_fns[i % len(env_fns)]())
        except BaseException:
            self.close()
            raise
        self._act_dtypes = [np.dtype(getattr(env.action_space, "dtype", np.float32)) for env in self.envs]
        self._render_keys = [self._render_key(env) for env in self.envs]

    @staticmethod
    def _render_key(env: "gymnasium.Env[Any, Any]") -> str | None:
        u = env.unwrapped
        return _model_key(u.model) if hasattr(u, "model") and hasattr(u, "data") else None

    def meta(self) -> list[_EnvMeta]:
        out = []
        for env in self.envs:
            obs_space: Any = env.observation_space
            act_space: Any = env.action_space
            for what, space in (("observation", obs_space), ("action", act_space)):
                if not all(hasattr(space, a) for a in ("low", "high", "shape")):
                    raise TypeError(
                        f"{env} has a {type(space).__name__} {what} space; GymVecEnv needs Box spaces "
                        "(wrap dict observations in gymnasium.wrappers.FlattenObservation)"
                    )

            def bound(space: Any, value: Any) -> np.ndarray:
                return np.broadcast_to(np.asarray(value, np.float64), space.shape).copy()

            out.append(_EnvMeta(
                env.spec.id if env.spec is not None else type(env.unwrapped).__name__,
                tuple(obs_space.shape),
                bound(obs_space, obs_space.low),
                bound(obs_space, obs_space.high),
                tuple(act_space.shape),
                bound(act_space, act_space.low),
                bound(act_space, act_space.high),
                self._horizon(env),
                self._dt(env),
            ))
        return out

    @staticmethod
    def _dt(env: "gymnasium.Env[Any, Any]") -> float | None:
        dt = getattr(env.unwrapped, "dt", None)
        if dt is None and env.metadata.get("render_fps"):
            dt = 1.0 / float(env.metadata["render_fps"])
        return None if dt is None else float(dt)

    @staticmethod
    def _horizon(env: "gymnasium.Env[Any, Any]") -> int | None:
        """The env's episode limit: its TimeLimit (spec'd or not), else Meta-World's max_path_length."""
        import gymnasium

        if env.spec is not None and env.spec.max_episode_steps is not None:
            return int(env.spec.max_episode_steps)
        layer: Any = env
        while isinstance(layer, gymnasium.Wrapper):
            if isinstance(layer, gymnasium.wrappers.TimeLimit):
                # an unregistered env has no spec to carry the limit; the wrapper only keeps it here
                return int(layer._max_episode_steps)
            layer = layer.env
        horizon = getattr(env.unwrapped, "max_path_length", None)
        return None if horizon is None else int(horizon)

    def time_step(self, steps: int) -> float:
        """Mean seconds per ``env.step`` of this slice's first env (random actions, after 5 warm-up steps)."""
        env = self.envs[0]
        env.reset(seed=0)
        start = time.perf_counter()
        for k in range(steps + 5):
            if k == 5:
                start = time.perf_counter()
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                env.reset()
        return (time.perf_counter() - start) / steps

    def _rows(self) -> Iterator[tuple[int, "gymnasium.Env[Any, Any]"]]:
        return zip(self.ids, self.envs)

    def reset(self, seed: int | None) -> None:
        assert self.bufs is not None
        # spawned seeds depend only on the env's global index, so each slice derives its own
        seeds = None if seed is None else env_seeds(seed, max(self.ids) + 1)
        for i, env in self._rows():
            obs, _ = env.reset(seed=None if seeds is None else seeds[i])
            self.bufs.obs[i] = obs

    def step(self, render: bool = False) -> None:
        """Steps every env; with ``render``, frames of the stepped states go to ``bufs.frames``
        before finished envs reset (one batched render for the slice)."""
        b = self.bufs
        assert b is not None
        for (i, env), dtype in zip(self._rows(), self._act_dtypes):
            obs, reward, term, trunc, info = env.step(b.actions[i].astype(dtype))
            b.final_obs[i] = obs
            b.reward[i] = float(reward)
            b.terminated[i] = bool(term)
            # gymnasium's TimeLimit also flags a termination on the last allowed step as
            # truncated; a terminal state must not be bootstrapped, so termination wins
            b.truncated[i] = bool(trunc) and not bool(term)
            b.success[i] = bool(info.get("success", False))
        if render:
            self.render(list(self.ids))
        for i, env in self._rows():
            if b.terminated[i] or b.truncated[i]:
                obs, _ = env.reset()
                b.obs[i] = obs
            else:
                b.obs[i] = b.final_obs[i]

    def render(self, ids: Sequence[int]) -> None:
        """Writes frames of envs ``ids`` (global indices within this slice) to ``bufs.frames``."""
        assert self.bufs is not None
        groups: dict[str | None, list[int]] = {}
        for i in ids:
            groups.setdefault(self._render_keys[i - self.ids.start], []).append(i)
        for key, members in groups.items():
            if key is None:
                for i in members:
                    self.bufs.frames[i] = self._render_fallback(self.envs[i - self.ids.start])
            else:
                pool = self._pool(key, self.envs[members[0] - self.ids.start].unwrapped)
                datas = [self.envs[i - self.ids.start].unwrapped.data for i in members]  # type: ignore[attr-defined]
                self.bufs.frames[members] = pool.render(datas).numpy()

    def _pool(self, key: str, unwrapped: Any) -> "RendererPool":
        if key not in self._pools:
            from sim.mujoco.render import RendererPool

            spec = self.spec
            kwargs: dict[str, Any] = {"camera": _camera_for(spec.camera, unwrapped),
                                      "hide_bodies": spec.hide_bodies, "show_bodies": spec.show_bodies}
            if spec.scene_flags is not None:
                kwargs["flags"] = spec.scene_flags
            self._pools[key] = RendererPool(unwrapped.model, self.render_size[0], self.render_size[1], **kwargs)
        return self._pools[key]

    def _render_fallback(self, env: "gymnasium.Env[Any, Any]") -> np.ndarray:
        if env.render_mode != "rgb_array":
            raise RuntimeError(
                f"{env.spec.id if env.spec else type(env.unwrapped).__name__} is not MuJoCo-based and was built with "
                f"render_mode={env.render_mode!r}; build it with render_mode='rgb_array' to render it"
            )
        return _resize_frame(np.asarray(env.render()), self.render_size)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        for env in self.envs:
            env.close()
        self.envs.clear()
        self.bufs = None


def _worker_main(conn: Connection, env_fns: Sequence[EnvFactory], ids: range, render_size: tuple[int, int],
                 spec: _RenderSpec) -> None:
    """Worker process: owns envs ``ids``; serves commands until ``close`` or the parent goes away."""
    torch.set_num_threads(1)
    shm: _SharedBlock | None = None
    envs: _EnvSlice | None = None
    try:
        envs = _EnvSlice(env_fns, ids, render_size, spec)
        conn.send(("ok", envs.meta()))
        while True:
            cmd, arg = conn.recv()
            if cmd == "close":
                break
            try:
                if cmd == "step":
                    envs.step(bool(arg))
                elif cmd == "reset":
                    envs.reset(arg)
                elif cmd == "render":
                    envs.render(arg)
                elif cmd == "attach":
                    path, size, n, obs_shape, act_shape = arg
                    shm = _SharedBlock(size, path)
                    envs.bufs = _Buffers(shm.buf, n, obs_shape, act_shape, render_size)
                else:
                    raise ValueError(f"unknown command {cmd!r}")
                conn.send(("ok", None))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass
    except Exception:
        try:
            conn.send(("error", traceback.format_exc()))
        except (BrokenPipeError, OSError):
            pass
    finally:
        if envs is not None:
            envs.close()
        if shm is not None:
            shm.close()
        conn.close()


def _mp_context(
    method: str,
) -> "mp.context.ForkServerContext | mp.context.SpawnContext | mp.context.ForkContext":
    if method == "forkserver":
        return mp.get_context("forkserver")
    return mp.get_context("spawn") if method == "spawn" else mp.get_context("fork")


class GymVecEnv(VecEnv):
    """``num_envs`` gymnasium envs as one ``VecEnv`` (same-step automatic reset, CPU tensors).

    Env ``i`` is built by ``env_fns[i % len(env_fns)]``, so a list of one factory per task
    assigns tasks round-robin (multi-task sets); ``instructions`` and ``task_names`` are one
    string, or one per factory. ``reset(seed)`` resets env ``i`` with ``sim.vec_env.env_seeds(seed, n)[i]``.

    Actions go to the envs as given (in the action space's dtype, not clipped: the envs and
    MuJoCo's ``ctrlrange`` clamp them). ``info["success"]`` is the env's ``info["success"]``
    (False when it reports none). Episode lengths are the envs' own (``TimeLimit`` from the
    gymnasium spec, or Meta-World's ``max_path_length``); ``max_episode_steps`` is the longest.
    ``dt`` is the envs' seconds per step (NaN for an env that states neither ``dt`` nor
    ``metadata["render_fps"]``).

    ``workers``: 0 runs every env in this process; ``k > 0`` starts ``min(k, num_envs)`` worker
    processes (``start_method``, default ``forkserver``, whose server preloads this module)
    that each own a contiguous slice; ``None`` picks 0 or one worker per core from a short
    timing of one env step (see the module docstring). Scripts that start workers need an
    ``if __name__ == "__main__":`` guard.

    ``camera`` (a ``Camera`` or a mapping of its fields) and ``scene_flags`` configure the
    renderer pools of MuJoCo envs (default: the env's own default view, the pool's flags);
    ``hide_bodies`` / ``show_bodies`` leave geoms out of the frames (``RendererPool``'s
    arguments of those names).
    """

    def __init__(
        self,
        env_fns: Sequence[EnvFactory],
        num_envs: int,
        seed: int = 0,
        render_size: tuple[int, int] = (224, 224),
        instructions: str | Sequence[str] = "",
        task_names: str | Sequence[str] | None = None,
        workers: int | None = None,
        camera: "Camera | Mapping[str, Any] | None" = None,
        scene_flags: "SceneFlags | None" = None,
        start_method: str = "forkserver",
        hide_bodies: Sequence[str] = (),
        show_bodies: Sequence[str] = (),
    ) -> None:
        fns = list(env_fns) if isinstance(env_fns, (list, tuple)) else None
        if not fns or not all(callable(f) for f in fns):
            raise TypeError(f"env_fns must be a non-empty list of callables that build a gymnasium env, got {env_fns!r}")
        num_envs, seed, render_size = check_env_args(num_envs, seed, render_size)
        if workers is not None and (not isinstance(workers, (int, np.integer)) or isinstance(workers, bool) or workers < 0):
            raise ValueError(f"workers must be None (automatic), 0 (in-process) or a positive int, got {workers!r}")
        methods = [m for m in ("forkserver", "spawn", "fork") if m in mp.get_all_start_methods()]
        if start_method not in methods:
            raise ValueError(f"start_method must be one of {methods}, got {start_method!r}")
        self.num_envs = int(num_envs)
        self.render_size = (int(render_size[0]), int(render_size[1]))
        per_env_instr = self._per_env("instructions", instructions, len(fns))
        per_env_names = None if task_names is None else self._per_env("task_names", task_names, len(fns))

        self._local: _EnvSlice | None = None
        self._procs: list[mp.process.BaseProcess] = []
        self._conns: list[Connection] = []
        self._slices: list[range] = []
        self._shm: _SharedBlock | None = None
        self._closed = False
        try:
            from sim.mujoco.render import body_names

            spec = _RenderSpec(camera, scene_flags, body_names(hide_bodies, "hide_bodies"),
                               body_names(show_bodies, "show_bodies"))
            metas = self._start(fns, workers, spec, start_method)
            self._set_specs(metas)
        except BaseException:
            self.close()
            raise
        self.instructions = per_env_instr
        self.task_names = per_env_names if per_env_names is not None else [m.name for m in metas]
        self._stats = EpisodeStats(self.num_envs)
        self.reset(int(seed))

    # ---- construction -------------------------------------------------------------------
    def _per_env(self, what: str, value: str | Sequence[str], n_fns: int) -> list[str]:
        values = [value] if isinstance(value, str) else list(value)
        if not values or not all(isinstance(v, str) for v in values) or len(values) not in (1, n_fns):
            raise ValueError(f"{what} must be one str or one str per env factory ({n_fns}), got {value!r}")
        return [values[i % len(values)] for i in range(self.num_envs)]

    def _start(self, fns: list[EnvFactory], workers: int | None, spec: _RenderSpec,
               start_method: str) -> list[_EnvMeta]:
        """Builds the envs (here or in workers) and their buffers; returns each env's metadata."""
        if workers is None:
            workers = self._auto_workers(fns, spec)
        workers = min(int(workers), self.num_envs)
        if workers == 0:
            self._local = _EnvSlice(fns, range(self.num_envs), self.render_size, spec)
            metas = self._local.meta()
            self._local.bufs = self._allocate(metas)
            return metas
        ctx = _mp_context(start_method)
        if start_method == "forkserver":
            # the server imports torch and this module once; each worker then starts in ~30 ms
            # instead of ~1.5 s (only takes effect if the server is not running yet)
            mp.set_forkserver_preload(["sim.gym_vec"])
        for chunk in np.array_split(np.arange(self.num_envs), workers):
            ids = range(int(chunk[0]), int(chunk[-1]) + 1)
            self._slices.append(ids)
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main, args=(child, fns, ids, self.render_size, spec),
                name=f"GymVecEnv-worker-{len(self._procs)}", daemon=True,
            )
            try:
                proc.start()
            except (pickle.PicklingError, AttributeError, TypeError) as e:
                child.close()
                parent.close()
                raise TypeError(
                    f"workers > 0 sends the env factories to other processes, and pickling them failed ({e}); "
                    "use module-level functions or functools.partial (not lambdas or closures), or workers=0"
                ) from e
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
        metas = [m for k in range(workers) for m in self._recv(k, "building its envs")]
        self._allocate(metas)
        return metas

    def _allocate(self, metas: list[_EnvMeta]) -> _Buffers:
        """The step buffers: private memory in-process, a shared block the workers map otherwise."""
        obs_shapes = {m.obs_shape for m in metas}
        act_shapes = {m.act_shape for m in metas}
        if len(obs_shapes) != 1 or len(act_shapes) != 1:
            detail = sorted({(m.name, m.obs_shape, m.act_shape) for m in metas})
            raise ValueError(
                "all envs of a GymVecEnv need the same observation and action shapes; got (name, obs, action) "
                f"{detail}. Pad or wrap the envs so their spaces agree."
            )
        obs_shape, act_shape = obs_shapes.pop(), act_shapes.pop()
        n = self.num_envs
        size = _Buffers.layout(n, obs_shape, act_shape, self.render_size)[1]
        if not self._slices:
            self._bufs = _Buffers(bytearray(size), n, obs_shape, act_shape, self.render_size)
            return self._bufs
        self._shm = _SharedBlock(size)
        try:
            self._bufs = _Buffers(self._shm.buf, n, obs_shape, act_shape, self.render_size)
            self._broadcast(("attach", (self._shm.path, size, n, obs_shape, act_shape)), "attaching shared memory")
        finally:
            self._shm.unlink()
        return self._bufs

    def _auto_workers(self, fns: list[EnvFactory], spec: _RenderSpec) -> int:
        """One worker per usable core when a vector step computes for long enough, else 0.

        Times 30 steps of a throwaway env of the first factory (for Meta-World ~0.2 s, for
        gymnasium's locomotion envs a few ms).
        """
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if cores < 2 or self.num_envs < 2:
            return 0
        probe = _EnvSlice(fns[:1], range(1), self.render_size, spec)
        try:
            step_s = probe.time_step(30)
        finally:
            probe.close()
        return min(cores, self.num_envs) if self.num_envs * step_s >= _WORKER_MIN_COMPUTE_S else 0

    def _set_specs(self, metas: list[_EnvMeta]) -> None:
        self.observation_spec = BoxSpec(
            metas[0].obs_shape,
            np.min([m.obs_low for m in metas], axis=0),
            np.max([m.obs_high for m in metas], axis=0),
        )
        self.action_spec = BoxSpec(
            metas[0].act_shape,
            np.max([m.act_low for m in metas], axis=0),
            np.min([m.act_high for m in metas], axis=0),
        )
        horizons = [m.max_episode_steps for m in metas]
        if any(h is None for h in horizons):
            unlimited = sorted({m.name for m in metas if m.max_episode_steps is None})
            raise ValueError(
                f"envs {unlimited} have no episode limit; build them with gymnasium.make(..., max_episode_steps=T) "
                "or wrap them in gymnasium.wrappers.TimeLimit"
            )
        self.max_episode_steps = max(h for h in horizons if h is not None)
        dts = {m.dt for m in metas}
        if len(dts) != 1:
            raise ValueError(f"the envs step different amounts of simulated time ({sorted(map(str, dts))} s); "
                             "a GymVecEnv needs one control rate")
        dt = dts.pop()
        self.dt = float("nan") if dt is None else dt

    @classmethod
    def from_id(
        cls,
        name: str,
        num_envs: int = 1,
        seed: int = 0,
        render_size: tuple[int, int] = (224, 224),
        *,
        workers: int | None = None,
        camera: "Camera | Mapping[str, Any] | None" = None,
        scene_flags: "SceneFlags | None" = None,
        instruction: str = "",
        start_method: str = "forkserver",
        hide_bodies: Sequence[str] = (),
        show_bodies: Sequence[str] = (),
        **make_kwargs: Any,
    ) -> "GymVecEnv":
        """``num_envs`` copies of gymnasium id ``name`` (e.g. ``"HalfCheetah-v5"``).

        ``make_kwargs`` go to ``gymnasium.make`` (``max_episode_steps=``, env options such as
        ``xml_file=``); ``render_mode`` defaults to ``"rgb_array"`` so non-MuJoCo envs can render.
        """
        import gymnasium

        if not isinstance(name, str):
            raise TypeError(f"name must be a gymnasium id str, got {type(name).__name__}")
        try:
            gymnasium.spec(name)
        except gymnasium.error.Error as e:
            raise ValueError(
                f"{name!r} is not a registered gymnasium id ({e}); gymnasium.pprint_registry() lists them, "
                "sim.list_tasks() lists this project's tasks"
            ) from None
        make_kwargs.setdefault("render_mode", "rgb_array")
        factory = functools.partial(gymnasium.make, name, **make_kwargs)
        return cls([factory], num_envs, seed, render_size, instructions=instruction, task_names=name,
                   workers=workers, camera=camera, scene_flags=scene_flags, start_method=start_method,
                   hide_bodies=hide_bodies, show_bodies=show_bodies)

    # ---- worker plumbing ----------------------------------------------------------------
    @property
    def workers(self) -> int:
        """Number of worker processes (0: every env runs in this process)."""
        return len(self._procs)

    def _died(self, k: int, doing: str) -> RuntimeError:
        proc = self._procs[k]
        proc.join(timeout=1.0)
        return RuntimeError(
            f"GymVecEnv worker {k} died while {doing} (exit code {proc.exitcode}; its traceback, if any, is on "
            "stderr). Scripts that start workers need an `if __name__ == '__main__':` guard (spawn and "
            "forkserver re-import the main module); a native crash shows in-process with workers=0. "
            "Close this env and build a new one."
        )

    def _send(self, k: int, msg: tuple[str, Any], doing: str) -> None:
        try:
            self._conns[k].send(msg)
        except (BrokenPipeError, ConnectionResetError, OSError):
            raise self._died(k, doing) from None

    def _recv(self, k: int, doing: str) -> Any:
        try:
            status, payload = self._conns[k].recv()
        except (EOFError, ConnectionResetError, OSError):
            raise self._died(k, doing) from None
        if status != "ok":
            raise RuntimeError(f"GymVecEnv worker {k} failed while {doing}:\n{payload}")
        return payload

    def _broadcast(self, msg: tuple[str, Any], doing: str) -> list[Any]:
        self._check_open()
        for k in range(len(self._conns)):
            self._send(k, msg, doing)
        return self._gather(range(len(self._conns)), doing)

    def _gather(self, workers: Sequence[int], doing: str) -> list[Any]:
        """Every worker's reply, read before raising the first error, so that the replies of
        the next command cannot be mistaken for this one's."""
        results: list[Any] = []
        error: BaseException | None = None
        for k in workers:
            try:
                results.append(self._recv(k, doing))
            except RuntimeError as e:
                error = error or e
        if error is not None:
            raise error
        return results

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this GymVecEnv is closed; build a new one with make_env(...)")

    # ---- VecEnv -------------------------------------------------------------------------
    def _reset(self, seed: int | None) -> torch.Tensor:
        self._check_open()
        if self._local is not None:
            self._local.reset(seed)
        else:
            self._broadcast(("reset", seed), "resetting")
        self._stats.clear()
        return torch.from_numpy(self._bufs.obs.copy())

    def _step(self, actions: np.ndarray) -> StepResult:
        self._check_open()
        b = self._bufs
        b.actions[:] = actions
        if self._local is not None:
            self._local.step(self._want_frames)
        else:
            self._broadcast(("step", self._want_frames), "stepping")
        if self._want_frames:
            self._capture_final_frames(torch.from_numpy(b.frames.copy()))
        reward = b.reward.copy()
        terminated, truncated = b.terminated.copy(), b.truncated.copy()
        ep_return, ep_length = self._stats.add(reward, terminated | truncated)
        info = {
            "success": torch.from_numpy(b.success.copy()),
            "final_observation": torch.from_numpy(b.final_obs.copy()),
            "episode_return": ep_return,
            "episode_length": ep_length,
        }
        return StepResult(
            torch.from_numpy(b.obs.copy()),
            torch.from_numpy(reward.astype(np.float32)),
            torch.from_numpy(terminated),
            torch.from_numpy(truncated),
            info,
        )

    def _render(self, env_ids: list[int]) -> torch.Tensor:
        self._check_open()
        if self._local is not None:
            self._local.render(env_ids)
        else:
            busy = []
            for k, ids in enumerate(self._slices):
                mine = [i for i in env_ids if i in ids]
                if mine:
                    self._send(k, ("render", mine), "rendering")
                    busy.append(k)
            self._gather(busy, "rendering")
        return torch.from_numpy(self._bufs.frames[env_ids])

    def close(self) -> None:
        """Stops the worker processes (or closes the in-process envs) and frees shared memory."""
        if self._closed:
            return
        self._closed = True
        if self._local is not None:
            self._local.close()
            self._local = None
        for conn in self._conns:
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=1.0)
        for conn in self._conns:
            conn.close()
        self._procs.clear()
        self._conns.clear()
        self.__dict__.pop("_bufs", None)
        if self._shm is not None:
            try:
                self._shm.close()
            except BufferError:
                pass  # a view is still referenced somewhere; the mapping goes when it does
            self._shm = None

    def __del__(self) -> None:
        if getattr(self, "_closed", True) is False:
            self.close()

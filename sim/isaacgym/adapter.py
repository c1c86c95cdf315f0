"""``IsaacGymVecEnv``: the ``VecEnv`` interface over Isaac Gym's tensor API (``isaacgym.gymapi``).

One sim holds ``num_envs`` envs with one actor each, built from the task's asset. The physics
state stays in Isaac Gym's (GPU) state tensors, which the task's callables read through an
``IsaacGymState``; what ``step`` returns is copied to the CPU, as from every ``VecEnv``.

Isaac Gym is imported when an env is built, not when this module is, so ``sim`` imports
without it. Isaac Gym itself imposes two things:

- it is not on PyPI: it is NVIDIA's Isaac Gym Preview 4 tarball, installed with
  ``pip install -e isaacgym/python``; Preview 4 ships bindings for Python 3.6-3.8 only;
- it refuses to import once ``torch`` is imported, and ``sim`` imports torch, so a script that
  uses this adapter starts with ``import isaacgym`` (before ``torch``, ``sim`` or ``embodied``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from typing import TYPE_CHECKING, Any, Mapping, cast

import numpy as np
import torch

from sim.isaacgym.config import IsaacGymSimConfig, IsaacGymState, IsaacGymTask, StateFn
from sim.vec_env import BoxSpec, EpisodeStats, StepResult, VecEnv, check_env_args

if TYPE_CHECKING:
    from isaacgym import gymapi

_INSTALL = (
    "Isaac Gym is not on PyPI: download Isaac Gym Preview 4 from NVIDIA "
    "(https://developer.nvidia.com/isaac-gym), unpack it and run `pip install -e isaacgym/python` "
    "in this environment. Preview 4 ships Python bindings for Python 3.6-3.8 only "
    f"(this is Python {sys.version_info.major}.{sys.version_info.minor}). Isaac Gym must be "
    "imported before torch: make `import isaacgym` the first import of your script, before "
    "`import torch`, `sim` or `embodied`. The MuJoCo tasks (sim.make_env) need no Isaac Gym."
)


def require_isaacgym() -> None:
    """Import ``isaacgym.gymapi`` and ``isaacgym.gymtorch``, or raise an ``ImportError`` that says
    why not and what to do (install it, or import it before torch)."""
    try:
        from isaacgym import gymapi, gymtorch  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "isaacgym":
            raise ImportError(f"Isaac Gym is not installed (no module named {exc.name!r}). {_INSTALL}") from exc
        raise ImportError(f"Isaac Gym is installed but failed to import: {exc}. {_INSTALL}") from exc
    except (ImportError, RuntimeError) as exc:
        # Isaac Gym's own checks: gymdeps raises "PyTorch was imported before isaacgym modules",
        # gymapi raises RuntimeError "No gym module found for the active version of Python".
        if "imported before" in str(exc) and "torch" in str(exc).lower():
            raise ImportError(
                f"Isaac Gym refused to import because torch was imported first ({exc}). Make "
                "`import isaacgym` the first import of your script, before `import torch`, "
                "`sim` or `embodied`; sim.isaacgym cannot do it for you, since `sim` imports torch."
            ) from exc
        raise ImportError(f"Isaac Gym is installed but failed to import: {exc}. {_INSTALL}") from exc


class IsaacGymVecEnv(VecEnv):
    """``num_envs`` copies of an ``IsaacGymTask`` in one Isaac Gym sim, stepped together.

    Observations are what ``task.observation`` returns (``[N, *obs_shape]``, cast to float32);
    actions are ``[N, D]`` in [-1, 1] (clipped), one per DOF, mapped to efforts or position
    targets as ``IsaacGymTask`` describes. ``step`` applies the actions, runs
    ``task.decimation`` physics steps, refreshes the state tensors and evaluates the task's
    callables; an episode ends when ``task.terminated`` holds (``terminated``) or after
    ``task.max_episode_steps`` steps (``truncated``, only where not terminated), and the env
    is reset at once (the VecEnv convention: ``info["final_observation"]``).

    Caveats from Isaac Gym: the observation returned for a just-reset env sees its reset root
    and DOF states, but rigid-body states and contact forces of that env update only at the
    next physics step; GPU PhysX is not bitwise deterministic, so a seed fixes the initial
    reset states only: reset noise comes from one generator shared by all envs, so a later
    reset depends on which envs finished before it, and hence on the physics. ``render`` renders every env's camera (Isaac
    Gym renders all camera sensors at once) and returns those asked for.
    """

    def __init__(
        self,
        task: IsaacGymTask,
        num_envs: int = 1,
        seed: int = 0,
        render_size: tuple[int, int] = (224, 224),
        sim: IsaacGymSimConfig = IsaacGymSimConfig(),
        enable_cameras: bool = True,
    ) -> None:
        require_isaacgym()
        from isaacgym import gymapi

        num_envs, seed, render_size = check_env_args(num_envs, seed, render_size)
        if enable_cameras and sim.graphics_device_id < 0:
            raise ValueError("cameras need a graphics device: set sim.graphics_device_id >= 0 or enable_cameras=False")
        path = os.path.join(task.asset_root, task.asset_file)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"asset {path!r} (task.asset_root / task.asset_file) does not exist")

        self.task = task
        self.sim_config = sim
        self.num_envs = num_envs
        self.render_size = (int(render_size[0]), int(render_size[1]))
        self.max_episode_steps = task.max_episode_steps
        self.dt = sim.dt * task.decimation
        self.instructions = [task.instruction] * num_envs
        self.task_names = [task.name] * num_envs
        self._closed = False
        self._viewer: gymapi.Viewer | None = None
        self._cameras: list[int] = []
        self._gym = gymapi.acquire_gym()
        self._sim = self._create_sim(sim)
        try:
            self._build(enable_cameras)
            self._generator = torch.Generator(device=self.device)
            self._generator.manual_seed(seed)
            self._stats = EpisodeStats(num_envs)
            self._reset_envs(torch.arange(num_envs, device=self.device))
            obs = self._evaluate(task.observation, "observation")
            if obs.dim() < 2 or not obs.is_floating_point():
                raise TypeError(
                    f"task.observation must return a float tensor [N, *obs_shape], got {tuple(obs.shape)} {obs.dtype}"
                )
        except BaseException:
            self.close()
            raise
        self.observation_spec = BoxSpec.unbounded(tuple(obs.shape[1:]))
        dofs = self._actions.shape[1]
        self.action_spec = BoxSpec((dofs,), -np.ones(dofs), np.ones(dofs))

    # ---- construction ----------------------------------------------------------------
    def _create_sim(self, cfg: IsaacGymSimConfig) -> gymapi.Sim:
        from isaacgym import gymapi

        params = gymapi.SimParams()
        params.dt = cfg.dt
        params.substeps = cfg.substeps
        params.up_axis = gymapi.UP_AXIS_Z if cfg.up_axis == "z" else gymapi.UP_AXIS_Y
        params.gravity = gymapi.Vec3(*cfg.gravity)
        params.use_gpu_pipeline = cfg.use_gpu_pipeline
        physx = params.physx
        physx.use_gpu = cfg.physx_use_gpu
        physx.num_threads = cfg.physx_num_threads
        physx.solver_type = cfg.physx_solver_type
        physx.num_position_iterations = cfg.physx_num_position_iterations
        physx.num_velocity_iterations = cfg.physx_num_velocity_iterations
        physx.contact_offset = cfg.physx_contact_offset
        physx.rest_offset = cfg.physx_rest_offset
        physx.bounce_threshold_velocity = cfg.physx_bounce_threshold_velocity
        physx.max_depenetration_velocity = cfg.physx_max_depenetration_velocity
        physx.max_gpu_contact_pairs = cfg.physx_max_gpu_contact_pairs
        physx.default_buffer_size_multiplier = cfg.physx_default_buffer_size_multiplier
        sim = self._gym.create_sim(cfg.compute_device_id, cfg.graphics_device_id, gymapi.SIM_PHYSX, params)
        if sim is None:
            raise RuntimeError(
                f"Isaac Gym could not create a PhysX sim on compute device {cfg.compute_device_id} / graphics "
                f"device {cfg.graphics_device_id} (see its log above; graphics_device_id=-1 needs no display)"
            )
        return sim

    def _build(self, enable_cameras: bool) -> None:
        """Ground, asset, envs, actors (and cameras, viewer), then the state tensors."""
        from isaacgym import gymapi, gymtorch

        gym, sim, task, cfg, n = self._gym, self._sim, self.task, self.sim_config, self.num_envs
        z_up = cfg.up_axis == "z"
        if task.ground_plane:
            plane = gymapi.PlaneParams()
            plane.normal = gymapi.Vec3(0.0, 0.0, 1.0) if z_up else gymapi.Vec3(0.0, 1.0, 0.0)
            gym.add_ground(sim, plane)

        options = gymapi.AssetOptions()
        options.fix_base_link = task.fix_base_link
        for key, value in task.asset_options.items():
            if not hasattr(options, key):
                raise ValueError(f"task.asset_options: gymapi.AssetOptions has no attribute {key!r}")
            setattr(options, key, value)
        asset = gym.load_asset(sim, task.asset_root, task.asset_file, options)
        if asset is None:
            raise RuntimeError(f"Isaac Gym could not load {os.path.join(task.asset_root, task.asset_file)!r}")
        dofs = gym.get_asset_dof_count(asset)
        bodies = gym.get_asset_rigid_body_count(asset)
        if dofs == 0:
            raise ValueError(f"asset {task.asset_file!r} has no DOFs to act on")

        # A structured array (hasLimits, lower, upper, driveMode, stiffness, damping, effort, ...).
        props = gym.get_asset_dof_properties(asset)
        has_limits = np.asarray(props["hasLimits"], bool) & (np.asarray(props["upper"]) > np.asarray(props["lower"]))
        lower = np.where(has_limits, np.asarray(props["lower"], np.float64), -np.inf)
        upper = np.where(has_limits, np.asarray(props["upper"], np.float64), np.inf)
        default_pos = _default_dof_pos(task, lower, upper)
        offset, scale = _action_map(task, lower, upper, np.asarray(props["effort"], np.float64), default_pos)
        if task.drive == "effort":
            props["driveMode"][:] = gymapi.DOF_MODE_EFFORT
            props["stiffness"][:] = 0.0
            props["damping"][:] = 0.0
        else:
            props["driveMode"][:] = gymapi.DOF_MODE_POS
            props["stiffness"][:] = task.pd_gains[0]
            props["damping"][:] = task.pd_gains[1]

        s = task.spacing
        env_lower = gymapi.Vec3(-s, -s, 0.0) if z_up else gymapi.Vec3(-s, 0.0, -s)
        env_upper = gymapi.Vec3(s, s, s)
        per_row = max(1, int(math.sqrt(n)))
        pose = gymapi.Transform()
        pose.p = gymapi.Vec3(*task.start_position)
        pose.r = gymapi.Quat(*task.start_rotation)
        cam_props = gymapi.CameraProperties()
        cam_props.height, cam_props.width = self.render_size
        cam_props.horizontal_fov = task.camera_fov_deg
        # Camera tensors stay on the GPU with the rest of the state; the CPU pipeline reads images.
        cam_props.enable_tensors = cfg.use_gpu_pipeline
        self._envs: list[gymapi.Env] = []
        actor_ids, origins = [], []
        for i in range(n):
            env = gym.create_env(sim, env_lower, env_upper, per_row)
            # Collision group i keeps envs apart; filter bit 1 masks collisions within the actor.
            actor = gym.create_actor(env, asset, pose, task.name, i, 0 if task.self_collisions else 1)
            gym.set_actor_dof_properties(env, actor, props)
            actor_ids.append(gym.get_actor_index(env, actor, gymapi.DOMAIN_SIM))
            origin = gym.get_env_origin(env)
            origins.append((origin.x, origin.y, origin.z))
            if enable_cameras:
                camera = gym.create_camera_sensor(env, cam_props)
                if camera == gymapi.INVALID_HANDLE:
                    raise RuntimeError("Isaac Gym could not create a camera sensor (is there a graphics device?)")
                gym.set_camera_location(
                    camera, env, gymapi.Vec3(*task.camera_position), gymapi.Vec3(*task.camera_target)
                )
                self._cameras.append(camera)
            self._envs.append(env)
        if not cfg.headless:
            viewer = gym.create_viewer(sim, gymapi.CameraProperties())
            if viewer is None:
                raise RuntimeError("Isaac Gym could not open a viewer window; use sim.headless=True without a display")
            gym.viewer_camera_look_at(
                viewer, self._envs[0], gymapi.Vec3(*task.camera_position), gymapi.Vec3(*task.camera_target)
            )
            self._viewer = viewer
        if not gym.prepare_sim(sim):
            raise RuntimeError("Isaac Gym's prepare_sim failed (see its log above)")

        # Views of the sim's own buffers: refresh_* fills them, set_*_tensor_indexed reads them.
        self._root_states = gymtorch.wrap_tensor(gym.acquire_actor_root_state_tensor(sim))
        self._dof_state = gymtorch.wrap_tensor(gym.acquire_dof_state_tensor(sim))
        body_states = gymtorch.wrap_tensor(gym.acquire_rigid_body_state_tensor(sim))
        contacts = gymtorch.wrap_tensor(gym.acquire_net_contact_force_tensor(sim))
        for name, tensor, size in (
            ("actor root state", self._root_states, n * 13),
            ("DOF state", self._dof_state, n * dofs * 2),
            ("rigid body state", body_states, n * bodies * 13),
            ("net contact force", contacts, n * bodies * 3),
        ):
            if tensor.numel() != size:
                raise RuntimeError(
                    f"Isaac Gym's {name} tensor has {tensor.numel()} values, expected {size} "
                    f"({n} envs with one actor of {dofs} DOFs and {bodies} bodies each)"
                )
        self._refresh()
        self.device = self._root_states.device
        dev = self.device
        dof_state = self._dof_state.view(n, dofs, 2)
        self._dof_pos, self._dof_vel = dof_state[..., 0], dof_state[..., 1]
        self._init_root_states = self._root_states.clone()
        self._actor_ids = torch.tensor(actor_ids, dtype=torch.int32, device=dev)
        self._actions = torch.zeros(n, dofs, device=dev)
        self._command = torch.zeros(n, dofs, device=dev)
        self._episode_step = torch.zeros(n, dtype=torch.int64, device=dev)
        self._offset = torch.as_tensor(offset, dtype=torch.float32, device=dev)
        self._scale = torch.as_tensor(scale, dtype=torch.float32, device=dev)
        self._default_dof_pos = torch.as_tensor(default_pos, dtype=torch.float32, device=dev)
        self._dof_lower = torch.as_tensor(lower, dtype=torch.float32, device=dev)
        self._dof_upper = torch.as_tensor(upper, dtype=torch.float32, device=dev)
        #: the state the task's callables read (views of the sim's tensors)
        self.state = IsaacGymState(
            root_states=self._root_states.view(n, 13),
            dof_pos=self._dof_pos,
            dof_vel=self._dof_vel,
            rigid_body_states=body_states.view(n, bodies, 13),
            contact_forces=contacts.view(n, bodies, 3),
            actions=self._actions,
            episode_step=self._episode_step,
            env_origins=torch.tensor(origins, dtype=torch.float32, device=dev),
            dof_lower=self._dof_lower,
            dof_upper=self._dof_upper,
            dt=cfg.dt * task.decimation,
        )

    # ---- VecEnv ----------------------------------------------------------------------
    def _reset(self, seed: int | None) -> torch.Tensor:
        self._require_open()
        if seed is not None:
            self._generator.manual_seed(seed)
        self._stats.clear()
        self._reset_envs(torch.arange(self.num_envs, device=self.device))
        return self._observe()

    def _step(self, actions: np.ndarray) -> StepResult:
        from isaacgym import gymtorch

        self._require_open()
        gym, sim = self._gym, self._sim
        act = torch.as_tensor(actions, dtype=torch.float32).to(self.device).clamp_(-1.0, 1.0)
        self._actions.copy_(act)
        torch.addcmul(self._offset, act, self._scale, out=self._command)
        if self.task.drive == "effort":
            gym.set_dof_actuation_force_tensor(sim, gymtorch.unwrap_tensor(self._command))
        else:
            gym.set_dof_position_target_tensor(sim, gymtorch.unwrap_tensor(self._command))
        for _ in range(self.task.decimation):
            gym.simulate(sim)
            if not self.sim_config.use_gpu_pipeline:
                # The CPU pipeline publishes results to the host buffers only when fetched.
                gym.fetch_results(sim, True)
        self._refresh()
        self._episode_step += 1

        reward = self._evaluate(self.task.reward, "reward")
        if reward.shape != (self.num_envs,) or not reward.is_floating_point():
            raise TypeError(
                f"task.reward must return a float tensor [{self.num_envs}], got {tuple(reward.shape)} {reward.dtype}"
            )
        terminated = self._predicate(self.task.terminated, "terminated")
        success = self._predicate(self.task.success, "success")
        final_obs = self._observe()
        # A time limit reached on a terminal step is a termination: nothing to bootstrap.
        truncated = (self._episode_step >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        # Copies: a callable may return a view of the sim's buffers, which the next step overwrites.
        reward_cpu = reward.to("cpu", torch.float32, copy=True)
        terminated_cpu = terminated.to("cpu", copy=True)
        truncated_cpu, done_cpu = truncated.cpu(), done.cpu()
        ep_return, ep_length = self._stats.add(reward_cpu.numpy().astype(np.float64), done_cpu.numpy())
        self._capture_final_frames()
        if bool(done_cpu.any()):
            self._reset_envs(done.nonzero().squeeze(1))
            rows = done_cpu.view(-1, *([1] * (final_obs.dim() - 1)))
            obs = torch.where(rows, self._observe(), final_obs)
        else:
            obs = final_obs.clone()
        self._draw_viewer()
        info: dict[str, Any] = {
            "success": success.to("cpu", copy=True),
            "final_observation": final_obs,
            "episode_return": ep_return,
            "episode_length": ep_length,
        }
        return StepResult(obs, reward_cpu, terminated_cpu, truncated_cpu, info)

    def _render(self, env_ids: list[int]) -> torch.Tensor:
        from isaacgym import gymapi, gymtorch

        self._require_open()
        if not self._cameras:
            raise RuntimeError("this env has no cameras: build it with enable_cameras=True (and a graphics device)")
        gym, sim = self._gym, self._sim
        h, w = self.render_size
        if self.sim_config.use_gpu_pipeline:
            # Graphics reads the host copy of the state, which the GPU pipeline fills only here.
            gym.fetch_results(sim, True)
        gym.step_graphics(sim)
        gym.render_all_camera_sensors(sim)
        if self.sim_config.use_gpu_pipeline:
            gym.start_access_image_tensors(sim)
            try:
                images = []
                for i in env_ids:
                    # The stubs type the result as object; it is a gymapi.Tensor of uint8 RGBA [H, W, 4].
                    image = gym.get_camera_image_gpu_tensor(sim, self._envs[i], self._cameras[i], gymapi.IMAGE_COLOR)
                    images.append(gymtorch.wrap_tensor(cast(gymapi.Tensor, image)).view(h, w, 4)[..., :3])
                # Copy out before end_access: the image buffers are reused by the next render.
                return torch.stack(images).cpu() if images else torch.empty(0, h, w, 3, dtype=torch.uint8)
            finally:
                gym.end_access_image_tensors(sim)
        frames = torch.empty(len(env_ids), h, w, 3, dtype=torch.uint8)
        for k, i in enumerate(env_ids):
            # IMAGE_COLOR comes back as uint8 RGBA, [H, W * 4].
            rgba = np.asarray(gym.get_camera_image(sim, self._envs[i], self._cameras[i], gymapi.IMAGE_COLOR), np.uint8)
            frames[k] = torch.from_numpy(rgba.reshape(h, w, 4)[..., :3])
        return frames

    def close(self) -> None:
        """Destroy the viewer and the sim (with its envs and cameras); further calls raise."""
        if self._closed:
            return
        self._closed = True
        if self._viewer is not None:
            self._gym.destroy_viewer(self._viewer)
            self._viewer = None
        self._gym.destroy_sim(self._sim)

    # ---- helpers ---------------------------------------------------------------------
    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError("this IsaacGymVecEnv is closed")

    def _refresh(self) -> None:
        gym, sim = self._gym, self._sim
        gym.refresh_actor_root_state_tensor(sim)
        gym.refresh_dof_state_tensor(sim)
        gym.refresh_rigid_body_state_tensor(sim)
        gym.refresh_net_contact_force_tensor(sim)

    def _reset_envs(self, env_ids: torch.Tensor) -> None:
        """Put envs ``env_ids`` (int64 ``[K]`` on the sim device) back at their start state."""
        from isaacgym import gymtorch

        k, dofs = len(env_ids), self._dof_pos.shape[1]
        self._root_states[env_ids] = self._init_root_states[env_ids]
        pos = self._default_dof_pos.expand(k, dofs).clone()
        vel = torch.zeros(k, dofs, device=self.device)
        noise = self.task.reset_noise
        if noise > 0:
            pos += (torch.rand(k, dofs, generator=self._generator, device=self.device) * 2 - 1) * noise
            vel += (torch.rand(k, dofs, generator=self._generator, device=self.device) * 2 - 1) * noise
            pos = torch.clamp(pos, self._dof_lower, self._dof_upper)
        self._dof_pos[env_ids] = pos
        self._dof_vel[env_ids] = vel
        actor_ids = self._actor_ids[env_ids]
        # Each indexed setter once per physics step: Isaac Gym keeps only the last call's indices.
        self._gym.set_actor_root_state_tensor_indexed(
            self._sim, gymtorch.unwrap_tensor(self._root_states), gymtorch.unwrap_tensor(actor_ids), k
        )
        self._gym.set_dof_state_tensor_indexed(
            self._sim, gymtorch.unwrap_tensor(self._dof_state), gymtorch.unwrap_tensor(actor_ids), k
        )
        self._actions[env_ids] = 0.0
        self._episode_step[env_ids] = 0

    def _draw_viewer(self) -> None:
        if self._viewer is None:
            return
        gym, sim = self._gym, self._sim
        if gym.query_viewer_has_closed(self._viewer):
            gym.destroy_viewer(self._viewer)
            self._viewer = None
            return
        if self.sim_config.use_gpu_pipeline:
            gym.fetch_results(sim, True)
        gym.step_graphics(sim)
        gym.draw_viewer(self._viewer, sim, True)

    def _evaluate(self, fn: StateFn, name: str) -> torch.Tensor:
        value = fn(self.state)
        if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != self.num_envs:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise TypeError(f"task.{name} must return a tensor with {self.num_envs} rows (one per env), got {got}")
        return value

    def _predicate(self, fn: StateFn | None, name: str) -> torch.Tensor:
        if fn is None:
            return torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        value = self._evaluate(fn, name)
        if value.shape != (self.num_envs,) or value.dtype != torch.bool:
            raise TypeError(
                f"task.{name} must return a bool tensor [{self.num_envs}], got {tuple(value.shape)} {value.dtype}"
            )
        return value.to(self.device)

    def _observe(self) -> torch.Tensor:
        """``[N, *obs_shape]`` float32 on the CPU, a copy (the callable may return state views)."""
        obs = self._evaluate(self.task.observation, "observation")
        return obs.to("cpu", torch.float32, copy=True)


def _default_dof_pos(task: IsaacGymTask, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """``[D]``: ``task.default_dof_pos``, or zeros clamped into the joint limits."""
    if task.default_dof_pos is None:
        return np.clip(np.zeros(len(lower)), lower, upper)
    pos = np.asarray(task.default_dof_pos, np.float64)
    if pos.shape != lower.shape:
        raise ValueError(f"task.default_dof_pos must have one value per DOF ({len(lower)}), got {pos.shape}")
    return pos


def _action_map(
    task: IsaacGymTask, lower: np.ndarray, upper: np.ndarray, effort: np.ndarray, default_pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(offset, scale)``, each ``[D]``: the command for action ``a`` is ``offset + a * scale``."""
    dofs = len(lower)
    if task.action_scale is not None:
        scale = np.broadcast_to(np.asarray(task.action_scale, np.float64), (dofs,)).copy()
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"task.action_scale must be positive and finite, got {task.action_scale!r}")
        return (np.zeros(dofs) if task.drive == "effort" else default_pos), scale
    if task.drive == "effort":
        bad = ~(np.isfinite(effort) & (effort > 0))
        if bad.any():
            raise ValueError(
                f"the asset's DOF effort limits are not positive and finite at DOFs {np.flatnonzero(bad).tolist()} "
                f"({effort[bad].tolist()}); give task.action_scale (newtons or newton-metres per unit action)"
            )
        return np.zeros(dofs), effort.copy()
    unlimited = ~(np.isfinite(lower) & np.isfinite(upper))
    if unlimited.any():
        raise ValueError(
            f"DOFs {np.flatnonzero(unlimited).tolist()} have no joint limits to map actions onto; "
            "give task.action_scale (targets are then default_dof_pos + action * action_scale)"
        )
    return (lower + upper) / 2, (upper - lower) / 2


def make_isaacgym_env(
    task: IsaacGymTask,
    num_envs: int = 1,
    seed: int = 0,
    render_size: tuple[int, int] = (224, 224),
    sim: IsaacGymSimConfig | Mapping[str, Any] | None = None,
    enable_cameras: bool = True,
) -> IsaacGymVecEnv:
    """Build ``num_envs`` copies of ``task`` in one Isaac Gym sim, reset with ``seed``.

    The arguments follow ``sim.make_env``; ``sim`` is an ``IsaacGymSimConfig`` or a mapping of
    its fields (as a config file gives them). Raises ``ImportError`` with install instructions
    where Isaac Gym is missing or was imported after torch.
    """
    if sim is None:
        config = IsaacGymSimConfig()
    elif isinstance(sim, IsaacGymSimConfig):
        config = sim
    else:
        known = {f.name for f in dataclasses.fields(IsaacGymSimConfig)}
        unknown = sorted(set(sim) - known)
        if unknown:
            raise ValueError(f"unknown IsaacGymSimConfig fields {unknown}; known: {sorted(known)}")
        config = IsaacGymSimConfig(**sim)
    return IsaacGymVecEnv(task, num_envs, seed, render_size, config, enable_cameras)

"""What an Isaac Gym VecEnv is built from: a task description, simulator settings, and the
state tensors the task's callables read. Nothing here imports Isaac Gym."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping, Sequence

import torch


@dataclass(frozen=True, eq=False)
class IsaacGymState:
    """The simulator state as the task's callables see it, all on the sim device.

    Every field is a view of (or a buffer updated in place next to) Isaac Gym's GPU state
    tensors, so one instance stays valid for the life of the env; the callables must not
    write to it. Positions are in the global (sim) frame: subtract ``env_origins`` for
    env-local coordinates. Quaternions are (x, y, z, w), as in Isaac Gym.

    root_states ``[N, 13]``: position 3, quaternion 4, linear velocity 3, angular velocity 3.
    dof_pos / dof_vel ``[N, D]``: joint positions (rad or m) and velocities.
    rigid_body_states ``[N, B, 13]``: per-body poses and velocities, layout as ``root_states``.
    contact_forces ``[N, B, 3]``: net contact force on each body (N).
    actions ``[N, D]``: the policy's last actions, clipped to [-1, 1] (zeros after a reset).
    episode_step ``[N]`` int64: steps taken in the current episode (1 on its first step).
    env_origins ``[N, 3]``: each env's origin in the global frame (m).
    dof_lower / dof_upper ``[D]``: joint limits (±inf where a joint has none).
    dt: seconds per env step (``sim.dt x task.decimation``).
    """

    root_states: torch.Tensor
    dof_pos: torch.Tensor
    dof_vel: torch.Tensor
    rigid_body_states: torch.Tensor
    contact_forces: torch.Tensor
    actions: torch.Tensor
    episode_step: torch.Tensor
    env_origins: torch.Tensor
    dof_lower: torch.Tensor
    dof_upper: torch.Tensor
    dt: float


#: a per-env quantity computed from the state: ``[N, obs_dim]`` observations, ``[N]``
#: rewards, or ``[N]`` bool predicates (termination, success)
StateFn = Callable[[IsaacGymState], torch.Tensor]


@dataclass(frozen=True)
class IsaacGymTask:
    """One robot asset per env, driven at its DOFs, scored by user callables.

    ``asset_root`` / ``asset_file``: the URDF or MJCF to load (``gym.load_asset``), e.g.
    Isaac Gym's ``assets`` folder and ``mjcf/nv_ant.xml``. ``observation`` / ``reward`` /
    ``terminated`` / ``success`` read an ``IsaacGymState``; ``terminated`` and ``success``
    default to never.

    Actions are ``[N, D]`` in [-1, 1], one per DOF. ``drive="effort"`` applies
    ``action x action_scale`` newton(-metres) per DOF, ``action_scale`` defaulting to the DOF
    effort limits of the asset; ``drive="position"`` sets PD targets, mapping [-1, 1] onto the
    DOF limits, or to ``default_dof_pos + action x action_scale`` when ``action_scale`` is given
    (needed for joints without limits). ``pd_gains`` = (stiffness, damping) of the position
    drive.

    Reset puts the root at ``start_position`` / ``start_rotation`` (x, y, z, w) above the env
    origin and the DOFs at ``default_dof_pos`` (zeros clamped into the limits by default), plus
    uniform noise of ±``reset_noise`` on DOF positions and velocities.
    """

    asset_root: str
    asset_file: str
    observation: StateFn
    reward: StateFn
    terminated: StateFn | None = None
    success: StateFn | None = None
    name: str = "isaacgym"
    instruction: str = ""
    max_episode_steps: int = 1000
    #: physics steps (each ``sim.dt``) per env step
    decimation: int = 1
    drive: Literal["effort", "position"] = "effort"
    action_scale: float | Sequence[float] | None = None
    pd_gains: tuple[float, float] = (40.0, 2.0)
    default_dof_pos: Sequence[float] | None = None
    reset_noise: float = 0.0
    start_position: tuple[float, float, float] = (0.0, 0.0, 1.0)
    start_rotation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)
    #: half-width of each env's cell on the grid (m)
    spacing: float = 2.0
    fix_base_link: bool = False
    #: collisions between the bodies of one robot
    self_collisions: bool = True
    #: extra ``gymapi.AssetOptions`` attributes, e.g. ``{"angular_damping": 0.01}``
    asset_options: Mapping[str, object] = field(default_factory=dict)
    ground_plane: bool = True
    #: render camera position and look-at target, relative to the env origin (m)
    camera_position: tuple[float, float, float] = (3.0, 3.0, 2.0)
    camera_target: tuple[float, float, float] = (0.0, 0.0, 1.0)
    camera_fov_deg: float = 75.0

    def __post_init__(self) -> None:
        for name in ("observation", "reward", "terminated", "success"):
            fn = getattr(self, name)
            if fn is not None and not callable(fn):
                raise TypeError(f"IsaacGymTask.{name} must be callable, got {type(fn).__name__}")
        if self.drive not in ("effort", "position"):
            raise ValueError(f"drive must be 'effort' or 'position', got {self.drive!r}")
        for name in ("max_episode_steps", "decimation"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not (self.spacing > 0 and math.isfinite(self.spacing)):
            raise ValueError(f"spacing must be positive, got {self.spacing!r}")
        if not (self.reset_noise >= 0 and math.isfinite(self.reset_noise)):
            raise ValueError(f"reset_noise must be non-negative, got {self.reset_noise!r}")


@dataclass(frozen=True)
class IsaacGymSimConfig:
    """Simulator settings: ``gymapi.SimParams`` (PhysX) and the devices.

    ``use_gpu_pipeline`` keeps the state tensors on ``cuda:<compute_device_id>`` (the point of
    Isaac Gym); ``graphics_device_id=-1`` creates no graphics context, so no cameras and no
    viewer. ``headless=False`` opens a viewer window drawn every step.
    """

    dt: float = 1.0 / 60.0
    substeps: int = 2
    up_axis: Literal["z", "y"] = "z"
    gravity: tuple[float, float, float] = (0.0, 0.0, -9.81)
    use_gpu_pipeline: bool = True
    compute_device_id: int = 0
    graphics_device_id: int = 0
    headless: bool = True
    physx_use_gpu: bool = True
    physx_num_threads: int = 4
    #: 0: PGS, 1: TGS
    physx_solver_type: int = 1
    physx_num_position_iterations: int = 4
    physx_num_velocity_iterations: int = 0
    physx_contact_offset: float = 0.02
    physx_rest_offset: float = 0.0
    physx_bounce_threshold_velocity: float = 0.2
    physx_max_depenetration_velocity: float = 10.0
    physx_max_gpu_contact_pairs: int = 8 * 1024 * 1024
    physx_default_buffer_size_multiplier: float = 5.0

    def __post_init__(self) -> None:
        if not (self.dt > 0 and math.isfinite(self.dt)):
            raise ValueError(f"dt must be positive seconds, got {self.dt!r}")
        if not isinstance(self.substeps, int) or self.substeps < 1:
            raise ValueError(f"substeps must be a positive int, got {self.substeps!r}")
        if self.up_axis not in ("z", "y"):
            raise ValueError(f"up_axis must be 'z' or 'y', got {self.up_axis!r}")

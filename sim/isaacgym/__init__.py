"""The ``VecEnv`` interface over NVIDIA Isaac Gym (``isaacgym.gymapi``), for those who have it.

Importing this package does not import Isaac Gym; building an env does, and raises an
``ImportError`` that says how to install it when it is missing. Isaac Gym refuses to import
after torch, and ``sim`` imports torch, so a script using it starts with ``import isaacgym``::

    import isaacgym  # first: before torch, sim or embodied
    import torch
    from sim.isaacgym import IsaacGymTask, make_isaacgym_env

    task = IsaacGymTask(
        asset_root="isaacgym/assets", asset_file="mjcf/nv_ant.xml", action_scale=15.0,
        observation=lambda s: torch.cat([s.root_states[:, :7], s.dof_pos, s.dof_vel], 1),
        reward=lambda s: s.root_states[:, 7],  # forward velocity (x)
        terminated=lambda s: s.root_states[:, 2] < 0.3,
    )
    env = make_isaacgym_env(task, num_envs=4096, enable_cameras=False)

The MuJoCo tasks (``sim.make_env``) need no Isaac Gym.
"""

from sim.isaacgym.adapter import IsaacGymVecEnv, make_isaacgym_env, require_isaacgym
from sim.isaacgym.config import IsaacGymSimConfig, IsaacGymState, IsaacGymTask, StateFn

__all__ = [
    "IsaacGymSimConfig",
    "IsaacGymState",
    "IsaacGymTask",
    "IsaacGymVecEnv",
    "StateFn",
    "make_isaacgym_env",
    "require_isaacgym",
]

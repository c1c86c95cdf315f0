"""gymnasium's MuJoCo locomotion envs on the native backend, numerically equal to gymnasium's.

``HalfCheetah-v5``, ``Hopper-v5`` and ``Humanoid-v5`` load gymnasium's own MJCF files and
compute the v5 observations and rewards with gymnasium's default arguments, vectorised over
envs (the tests step both side by side from the same state). Any other gymnasium id, or these
with ``backend="gym"``, runs through ``sim.gym_vec.GymVecEnv``.
"""

from __future__ import annotations

import os
from typing import Any

import mujoco
import numpy as np

from sim.mujoco.native import Field, Gathered, MujocoTask, MujocoVecEnv, Outcome, make_native
from sim.mujoco.render import Camera
from sim.registry import register_task
from sim.vec_env import VecEnv


def gymnasium_asset(filename: str) -> str:
    """Path of one of gymnasium's bundled MuJoCo model files."""
    import gymnasium.envs.mujoco

    path = os.path.join(os.path.dirname(gymnasium.envs.mujoco.__file__), "assets", filename)
    if not os.path.exists(path):
        raise FileNotFoundError(f"gymnasium's MuJoCo asset {path} is missing; reinstall `gymnasium[mujoco]`")
    return path


class _PlanarTask(MujocoTask):
    """A gymnasium planar walker: its model file, and observations and rewards from qpos / qvel."""

    asset: str

    def build_model(self) -> mujoco.MjModel:
        return mujoco.MjModel.from_xml_path(gymnasium_asset(self.asset))

    def fields(self, model: mujoco.MjModel) -> list[Field]:
        return [Field("qpos", "qpos"), Field("qvel", "qvel")]


class HalfCheetah(_PlanarTask):
    name = "HalfCheetah-v5"
    instruction = "run forward as fast as possible"
    frame_skip = 5
    max_episode_steps = 1000
    reset_noise_scale = 0.1
    gaussian_qvel_noise = True
    asset = "half_cheetah.xml"
    camera = Camera(trackbodyid=0, distance=4.0, lookat=(0.0, 0.0, 0.0), elevation=-20.0, azimuth=90.0)

    def observe(self, state: Gathered) -> np.ndarray:
        return np.concatenate([state["qpos"][:, 1:], state["qvel"]], axis=1)

    def outcome(self, before: Gathered, after: Gathered, action: np.ndarray, dt: float) -> Outcome:
        forward = (after["qpos"][:, 0] - before["qpos"][:, 0]) / dt
        ctrl = 0.1 * np.square(action).sum(1)
        n = len(action)
        return Outcome(forward - ctrl, np.zeros(n, bool), np.zeros(n, bool), {"forward": forward, "ctrl": -ctrl})


class Hopper(_PlanarTask):
    name = "Hopper-v5"
    instruction = "hop forward without falling"
    frame_skip = 4
    max_episode_steps = 1000
    reset_noise_scale = 5e-3
    asset = "hopper.xml"
    camera = Camera(trackbodyid=1, distance=4.0, lookat=(0.0, 0.0, 1.15), elevation=-20.0, azimuth=90.0)

    def observe(self, state: Gathered) -> np.ndarray:
        return np.concatenate([state["qpos"][:, 1:], np.clip(state["qvel"], -10.0, 10.0)], axis=1)

    def outcome(self, before: Gathered, after: Gathered, action: np.ndarray, dt: float) -> Outcome:
        qpos, qvel = after["qpos"], after["qvel"]
        z, angle = qpos[:, 1], qpos[:, 2]
        rest = np.concatenate([qpos[:, 2:], qvel], axis=1)
        healthy = (np.abs(rest) < 100.0).all(1) & (z > 0.7) & (angle > -0.2) & (angle < 0.2)
        forward = (qpos[:, 0] - before["qpos"][:, 0]) / dt
        ctrl = 1e-3 * np.square(action).sum(1)
        survive = healthy.astype(np.float64)
        reward = forward + survive - ctrl
        return Outcome(reward, ~healthy, np.zeros(len(action), bool), {"forward": forward, "survive": survive, "ctrl": -ctrl})


def humanoid_fields(model: mujoco.MjModel) -> list[Field]:
    """The ``MjData`` slices of Humanoid-v5's observation and reward."""
    return [
        Field("qpos", "qpos"),
        Field("qvel", "qvel"),
        Field("cinert", "cinert", 1),
        Field("cvel", "cvel", 1),
        Field("qfrc_actuator", "qfrc_actuator", 6),
        Field("cfrc_ext", "cfrc_ext", 1),
        Field("xipos", "xipos"),
        Field("ctrl", "ctrl"),
    ]


def humanoid_observation(state: Gathered) -> np.ndarray:
    """Humanoid-v5's 348-d observation: qpos[2:], qvel, cinert, cvel, qfrc_actuator, cfrc_ext."""
    n = len(state.buffer)
    parts = ["cinert", "cvel", "qfrc_actuator", "cfrc_ext"]
    return np.concatenate(
        [state["qpos"][:, 2:], state["qvel"], *(state[p].reshape(n, -1) for p in parts)], axis=1
    )


class Humanoid(MujocoTask):
    name = "Humanoid-v5"
    instruction = "walk forward without falling"
    frame_skip = 5
    max_episode_steps = 1000
    reset_noise_scale = 1e-2
    camera = Camera(trackbodyid=1, distance=4.0, lookat=(0.0, 0.0, 2.0), elevation=-20.0, azimuth=90.0)

    def build_model(self) -> mujoco.MjModel:
        model = mujoco.MjModel.from_xml_path(gymnasium_asset("humanoid.xml"))
        self._mass = model.body_mass.copy()
        return model

    def fields(self, model: mujoco.MjModel) -> list[Field]:
        return humanoid_fields(model)

    def observe(self, state: Gathered) -> np.ndarray:
        return humanoid_observation(state)

    def outcome(self, before: Gathered, after: Gathered, action: np.ndarray, dt: float) -> Outcome:
        mass = self._mass / self._mass.sum()
        x_before = before["xipos"][:, :, 0] @ mass
        x_after = after["xipos"][:, :, 0] @ mass
        forward = 1.25 * (x_after - x_before) / dt
        z = after["qpos"][:, 2]
        healthy = (z > 1.0) & (z < 2.0)
        survive = 5.0 * healthy
        ctrl = 0.1 * np.square(after["ctrl"]).sum(1)
        # gymnasium's contact cost sums over all bodies; the world body's row is always zero
        contact = np.minimum(5e-7 * np.square(after["cfrc_ext"]).reshape(len(action), -1).sum(1), 10.0)
        reward = forward + survive - ctrl - contact
        terms = {"forward": forward, "survive": survive, "ctrl": -ctrl, "contact": -contact}
        return Outcome(reward, ~healthy, np.zeros(len(action), bool), terms)


_TASKS: dict[str, type[MujocoTask]] = {"HalfCheetah-v5": HalfCheetah, "Hopper-v5": Hopper, "Humanoid-v5": Humanoid}


def _factory(
    name: str, num_envs: int, seed: int, render_size: tuple[int, int], backend: str = "native", **kwargs: Any
) -> VecEnv:
    if backend == "gym":
        from sim.gym_vec import GymVecEnv

        return GymVecEnv.from_id(name, num_envs=num_envs, seed=seed, render_size=render_size, **kwargs)
    return make_native(_TASKS[name](), num_envs, seed, render_size, backend=backend, **kwargs)


for _name, _cls in _TASKS.items():
    register_task(_name, _factory, instruction=_cls.instruction, family="gym_mujoco")

__all__ = ["HalfCheetah", "Hopper", "Humanoid", "MujocoVecEnv", "humanoid_fields", "humanoid_observation"]

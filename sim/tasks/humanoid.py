"""VLM-RM's humanoid posture tasks (Rocamonde et al. 2024) on the native backend.

The MuJoCo humanoid of gymnasium's Humanoid-v5 (same bodies, joints, actuators and
observation), with VLM-RM's changes: no early termination, fixed 100-step episodes, a
textured floor and sky (VLM-RM found textures plus this camera took kneeling from 36% to
100% success), and its fixed camera {distance 3.5, lookat (0, 0, 1), elevation -10,
azimuth 180}. The policy sees the state; the reward model sees pixels, so the
environment's own reward is the sparse success indicator (useful as a sanity baseline).

Success predicates are computed from body and geom positions (metres, z up); their thresholds
are set from hand-built goal poses, see ``tests/sim/test_humanoid.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import mujoco
import numpy as np

from sim.gym_env import register_gymnasium_env
from sim.mujoco.native import Field, Gathered, MujocoTask, Outcome, make_native
from sim.mujoco.render import Camera, SceneFlags
from sim.registry import register_task
from sim.tasks.gym_mujoco import gymnasium_asset, humanoid_fields, humanoid_observation
from sim.vec_env import VecEnv

# VLM-RM's config names trackbodyid 1, but gymnasium's renderer (which VLM-RM rendered with)
# uses a plain free camera when no camera is named, so the body id never took effect: the
# camera VLM-RM's CLIP saw is fixed, looking at (0, 0, 1). Reproduce that, not the config.
VLM_RM_CAMERA = Camera(trackbodyid=-1, distance=3.5, lookat=(0.0, 0.0, 1.0), elevation=-10.0, azimuth=180.0)


def humanoid_model() -> mujoco.MjModel:
    """gymnasium's humanoid with a textured sky and tiled floor (procedural MuJoCo textures)."""
    spec = mujoco.MjSpec.from_file(gymnasium_asset("humanoid.xml"))
    for tex in spec.textures:
        if tex.type == mujoco.mjtTexture.mjTEXTURE_SKYBOX:
            # a blue sky fading to a hazy horizon
            tex.builtin = mujoco.mjtBuiltin.mjBUILTIN_GRADIENT
            tex.rgb1 = [0.35, 0.55, 0.85]
            tex.rgb2 = [0.85, 0.9, 0.97]
            tex.width = tex.height = 256
        elif tex.name == "texplane":
            # stone tiles with grout lines, large enough to read as a floor at 224 x 224
            tex.builtin = mujoco.mjtBuiltin.mjBUILTIN_CHECKER
            tex.rgb1 = [0.62, 0.56, 0.48]
            tex.rgb2 = [0.50, 0.45, 0.39]
            tex.mark = mujoco.mjtMark.mjMARK_EDGE
            tex.markrgb = [0.85, 0.83, 0.78]
            tex.width = tex.height = 512
    floor = spec.material("MatPlane")
    floor.texrepeat = [10.0, 10.0]
    floor.reflectance = 0.0
    return spec.compile()


# ---- success predicates ----------------------------------------------------------------

_BODIES = ("torso", "pelvis", "right_shin", "left_shin")
_GEOMS = ("head", "butt", "right_foot", "left_foot", "right_hand", "left_hand")


@dataclass
class Pose:
    """Key points of every env, each ``[N, 3]`` (world frame), and the torso's up-axis z ``[N]``."""

    head: np.ndarray
    butt: np.ndarray
    right_knee: np.ndarray
    left_knee: np.ndarray
    right_foot: np.ndarray
    left_foot: np.ndarray
    right_hand: np.ndarray
    left_hand: np.ndarray
    torso_up: np.ndarray


def kneeling(p: Pose) -> np.ndarray:
    """Both knees on the ground, feet down behind them, torso upright at kneeling height."""
    knees_down = (p.right_knee[:, 2] < 0.2) & (p.left_knee[:, 2] < 0.2)
    feet_down = (p.right_foot[:, 2] < 0.25) & (p.left_foot[:, 2] < 0.25)
    return knees_down & feet_down & (p.head[:, 2] > 0.85) & (p.head[:, 2] < 1.35) & (p.torso_up > 0.7)


def splits(p: Pose) -> np.ndarray:
    """Feet far apart on the floor with the hips lowered between them and the torso up."""
    spread = np.linalg.norm(p.right_foot[:, :2] - p.left_foot[:, :2], axis=1)
    feet_down = (p.right_foot[:, 2] < 0.25) & (p.left_foot[:, 2] < 0.25)
    return (spread > 1.1) & feet_down & (p.butt[:, 2] < 0.45) & (p.head[:, 2] > p.butt[:, 2] + 0.35)


def lotus(p: Pose) -> np.ndarray:
    """Seated upright on the floor, knees low and out to the sides, feet tucked in."""
    hips = p.butt[:, :2]
    feet_in = (np.linalg.norm(p.right_foot[:, :2] - hips, axis=1) < 0.4) & (
        np.linalg.norm(p.left_foot[:, :2] - hips, axis=1) < 0.4
    )
    knees_low = (p.right_knee[:, 2] < 0.4) & (p.left_knee[:, 2] < 0.4)
    knees_apart = np.linalg.norm(p.right_knee[:, :2] - p.left_knee[:, :2], axis=1) > 0.4
    seated = (p.butt[:, 2] < 0.3) & (p.head[:, 2] > 0.75) & (p.torso_up > 0.8)
    return seated & knees_low & knees_apart & feet_in


def arms_raised(p: Pose) -> np.ndarray:
    """Standing with both hands above the head."""
    hands_up = (p.right_hand[:, 2] > p.head[:, 2] + 0.05) & (p.left_hand[:, 2] > p.head[:, 2] + 0.05)
    return hands_up & (p.head[:, 2] > 1.3)


def standing(p: Pose) -> np.ndarray:
    """Upright on both feet at full height."""
    feet_down = (p.right_foot[:, 2] < 0.25) & (p.left_foot[:, 2] < 0.25)
    return feet_down & (p.head[:, 2] > 1.4) & (p.torso_up > 0.9)


@dataclass(frozen=True)
class Posture:
    predicate: Callable[[Pose], np.ndarray]
    instruction: str


POSTURES: dict[str, Posture] = {
    "kneeling": Posture(kneeling, "a humanoid robot kneeling"),
    "splits": Posture(splits, "a humanoid robot practicing gymnastics, doing the side splits"),
    "lotus": Posture(lotus, "a humanoid robot seated down, meditating in the lotus position"),
    "arms-raised": Posture(arms_raised, "a humanoid robot standing up, with both arms raised"),
    "standing": Posture(standing, "a humanoid robot standing up"),
}


class HumanoidPosture(MujocoTask):
    """Reach and hold a posture described by a sentence; 100-step episodes, never terminated."""

    frame_skip = 5
    max_episode_steps = 100
    reset_noise_scale = 1e-2
    camera = VLM_RM_CAMERA
    # coarse planes: the floor as 2 x 2 quads instead of MuJoCo's grid, the same image from this
    # camera at ~1.7x the frame rate (bench.render)
    scene_flags = SceneFlags(skybox=True, coarse_planes=True)

    def __init__(self, posture: str) -> None:
        self.posture = POSTURES[posture]
        self.name = f"humanoid-{posture}"
        self.instruction = self.posture.instruction

    def build_model(self) -> mujoco.MjModel:
        model = humanoid_model()
        self._bodies = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, b) for b in _BODIES]
        self._geoms = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, g) for g in _GEOMS]
        return model

    def fields(self, model: mujoco.MjModel) -> list[Field]:
        return [*humanoid_fields(model), Field("xpos", "xpos"), Field("geom_xpos", "geom_xpos"), Field("xmat", "xmat")]

    def observe(self, state: Gathered) -> np.ndarray:
        return humanoid_observation(state)

    def pose(self, state: Gathered) -> Pose:
        xpos, gpos = state["xpos"], state["geom_xpos"]
        torso, _, rshin, lshin = self._bodies
        head, butt, rfoot, lfoot, rhand, lhand = (gpos[:, g] for g in self._geoms)
        # xmat rows are the body frame's axes in world coordinates; [2, 2] = z of the body's z axis
        up = state["xmat"][:, torso, 8]
        return Pose(head, butt, xpos[:, rshin], xpos[:, lshin], rfoot, lfoot, rhand, lhand, up)

    def outcome(self, before: Gathered, after: Gathered, action: np.ndarray, dt: float) -> Outcome:
        success = self.posture.predicate(self.pose(after))
        n = len(action)
        return Outcome(success.astype(np.float64), np.zeros(n, bool), success, {"success": success.astype(np.float64)})


def _factory(name: str, num_envs: int, seed: int, render_size: tuple[int, int], **kwargs: Any) -> VecEnv:
    return make_native(HumanoidPosture(name.removeprefix("humanoid-")), num_envs, seed, render_size, **kwargs)


for _posture, _spec in POSTURES.items():
    register_task(f"humanoid-{_posture}", _factory, instruction=_spec.instruction, family="humanoid")
    register_gymnasium_env(f"humanoid-{_posture}", HumanoidPosture.max_episode_steps)

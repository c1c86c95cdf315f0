"""VLM-RM humanoid posture tasks: episode structure, scene, and success predicates on hand-built poses."""

import mujoco
import numpy as np
import pytest
import torch

import sim
from sim.tasks.humanoid import POSTURES, VLM_RM_CAMERA

# Joint angles in degrees; the root is pitched/placed by `_place` so the lowest point touches the floor.
GOAL_POSES = {
    "standing": {},
    "kneeling": {"right_knee": -90, "left_knee": -90},
    "arms-raised": {"right_shoulder1": -85, "right_shoulder2": -25, "left_shoulder1": -45, "left_shoulder2": -60},
    "splits": {"right_hip_x": -90, "left_hip_x": -90},
    "lotus": {
        "right_hip_y": -90, "left_hip_y": -90, "right_hip_x": -60, "left_hip_x": -60,
        "right_hip_z": -40, "left_hip_z": -40, "right_knee": -150, "left_knee": -150,
    },
}


def _place(model: mujoco.MjModel, joints: dict[str, float]) -> np.ndarray:
    """qpos with the given joint angles, upright, lowered until the lowest geom touches z = 0."""
    data = mujoco.MjData(model)
    for name, deg in joints.items():
        data.qpos[model.jnt_qposadr[model.joint(name).id]] = np.deg2rad(deg)
    data.qpos[2] = 2.0
    mujoco.mj_kinematics(model, data)
    low = np.inf
    for g in range(model.ngeom):
        if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_PLANE:
            continue
        r, half = model.geom_size[g][0], model.geom_size[g][1]
        axis_z = data.geom_xmat[g].reshape(3, 3)[2, 2]
        reach = abs(axis_z) * half if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_CAPSULE else 0.0
        low = min(low, data.geom_xpos[g][2] - reach - r)
    qpos = data.qpos.copy()
    qpos[2] -= low
    return qpos


def _successes(env: sim.VecEnv, qpos: np.ndarray) -> dict[str, bool]:
    env.set_state(0, qpos)
    pose = env.task.pose(env.state)
    return {name: bool(p.predicate(pose)[0]) for name, p in POSTURES.items()}


@pytest.fixture(scope="module")
def env():
    with sim.make_env("humanoid-kneeling", num_envs=1, seed=0) as e:
        yield e


@pytest.mark.parametrize("goal", sorted(GOAL_POSES))
def test_goal_pose_satisfies_its_predicate(env, goal):
    result = _successes(env, _place(env.model, GOAL_POSES[goal]))
    assert result[goal], result
    # standing with arms raised is still standing; every other goal pose excludes the others
    others = {k for k, v in result.items() if v} - {goal}
    assert others <= ({"standing"} if goal == "arms-raised" else set()), result


def test_standing_pose_is_no_other_goal(env):
    result = _successes(env, _place(env.model, {}))
    assert result == {k: k == "standing" for k in POSTURES}


def test_fallen_humanoid_is_not_standing(env):
    qpos = _place(env.model, {})
    qpos[3:7] = [np.cos(np.pi / 4), np.sin(np.pi / 4), 0, 0]  # lying on its side
    qpos[2] = 0.2
    assert not any(_successes(env, qpos).values())


def test_episodes_last_100_steps_without_termination():
    with sim.make_env("humanoid-kneeling", num_envs=2, seed=3) as env:
        assert env.max_episode_steps == 100
        assert env.instructions == [POSTURES["kneeling"].instruction] * 2
        env.reset(seed=3)
        big = torch.full((2, *env.action_spec.shape), 0.4)  # flails and falls: no early termination
        for t in range(100):
            r = env.step(big if t % 2 else -big)
            assert not r.terminated.any()
            assert r.truncated.all() == (t == 99)
        assert (r.info["episode_length"] == 100).all()
        # the sparse env reward is the success indicator
        assert torch.equal(r.reward, r.info["success"].float())


def test_scene_has_textured_sky_and_floor_and_vlm_rm_camera():
    task = sim.get_task("humanoid-lotus")
    assert task.instruction == "a humanoid robot seated down, meditating in the lotus position"
    from sim.tasks.humanoid import humanoid_model

    model = humanoid_model()
    types = {int(t) for t in model.tex_type}
    assert int(mujoco.mjtTexture.mjTEXTURE_SKYBOX) in types and int(mujoco.mjtTexture.mjTEXTURE_2D) in types
    assert model.mat_texrepeat[model.material("MatPlane").id].tolist() == [10.0, 10.0]
    assert VLM_RM_CAMERA.trackbodyid == -1 and VLM_RM_CAMERA.distance == 3.5
    assert VLM_RM_CAMERA.lookat == (0.0, 0.0, 1.0) and (VLM_RM_CAMERA.elevation, VLM_RM_CAMERA.azimuth) == (-10.0, 180.0)

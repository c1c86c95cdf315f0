"""sim.isaacgym without Isaac Gym: the error when it is missing, the adapter's control flow and
tensor plumbing against a fake ``isaacgym``, and mypy against isaacgym-stubs.

The fake (``gymapi`` + ``gymtorch`` test doubles with trivial physics on torch tensors, put in
``sys.modules``) implements only the calls the adapter makes, and mimics the Isaac Gym rules
the adapter must follow (tensors acquired after ``prepare_sim``, host results fetched on the
CPU pipeline, int32 actor indices, contiguous tensors, camera images read after rendering).
These tests do not test Isaac Gym itself, nor that the adapter's physics settings are good.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import sim.isaacgym as ig
from sim.isaacgym import IsaacGymSimConfig, IsaacGymTask, IsaacGymVecEnv, make_isaacgym_env, require_isaacgym

ROOT = Path(__file__).resolve().parents[2]


# ---- the fake isaacgym ---------------------------------------------------------------
class Vec3:
    def __init__(self, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> None:
        self.x, self.y, self.z = x, y, z


class Quat:
    def __init__(self, x: float = 0.0, y: float = 0.0, z: float = 0.0, w: float = 1.0) -> None:
        self.x, self.y, self.z, self.w = x, y, z, w


class Transform:
    def __init__(self) -> None:
        self.p, self.r = Vec3(), Quat()


class PhysXParams:
    def __init__(self) -> None:
        self.use_gpu = False
        self.num_threads = self.solver_type = self.num_position_iterations = self.num_velocity_iterations = 0
        self.contact_offset = self.rest_offset = self.bounce_threshold_velocity = 0.0
        self.max_depenetration_velocity = self.default_buffer_size_multiplier = 0.0
        self.max_gpu_contact_pairs = 0


class SimParams:
    def __init__(self) -> None:
        self.dt, self.substeps, self.up_axis, self.gravity = 0.0, 0, None, Vec3()
        self.use_gpu_pipeline = False
        self.physx = PhysXParams()


class AssetOptions:
    def __init__(self) -> None:
        self.fix_base_link = False
        self.angular_damping = 0.5


class PlaneParams:
    def __init__(self) -> None:
        self.normal = Vec3()


class CameraProperties:
    def __init__(self) -> None:
        self.width, self.height, self.horizontal_fov, self.enable_tensors = 0, 0, 90.0, False


class Tensor:
    """gymapi.Tensor stand-in: a handle to a torch tensor."""

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data


class FakeSim:
    def __init__(self, params: SimParams, graphics_device: int) -> None:
        self.params, self.graphics_device = params, graphics_device
        self.envs: list[types.SimpleNamespace] = []
        self.asset: dict | None = None
        self.dof_props: list[np.ndarray] = []
        self.prepared = self.fetched = self.graphics_stepped = self.rendered = self.image_access = False
        self.destroyed = False
        self.simulate_calls = 0
        self.indexed_resets: list[list[int]] = []
        self.forces: torch.Tensor | None = None
        self.targets: torch.Tensor | None = None

    @property
    def gpu(self) -> bool:
        return self.params.use_gpu_pipeline


class FakeGym:
    """The Gym methods the adapter calls. Physics: effort accelerates DOFs, position targets are
    approached halfway each step, the root moves along x with the mean DOF velocity."""

    def __init__(self) -> None:
        self.sims: list[FakeSim] = []

    def create_sim(self, compute: int, graphics: int, kind: object, params: SimParams) -> FakeSim:
        assert kind == "physx"
        sim = FakeSim(params, graphics)
        self.sims.append(sim)
        return sim

    def add_ground(self, sim: FakeSim, plane: PlaneParams) -> None:
        sim.ground = plane

    def load_asset(self, sim: FakeSim, root: str, file: str, options: AssetOptions) -> dict:
        sim.asset = json.loads((Path(root) / file).read_text())
        sim.asset_options = options
        return sim.asset

    def get_asset_dof_count(self, asset: dict) -> int:
        return len(asset["lower"])

    def get_asset_rigid_body_count(self, asset: dict) -> int:
        return asset["bodies"]

    def get_asset_dof_properties(self, asset: dict) -> np.ndarray:
        dtype = [(f, "f4") for f in ("lower", "upper", "stiffness", "damping", "effort")]
        props = np.zeros(len(asset["lower"]), dtype + [("hasLimits", "?"), ("driveMode", "i4")])
        props["lower"], props["upper"], props["effort"] = asset["lower"], asset["upper"], asset["effort"]
        props["hasLimits"] = asset["has_limits"]
        return props

    def create_env(self, sim: FakeSim, lower: Vec3, upper: Vec3, per_row: int) -> types.SimpleNamespace:
        i = len(sim.envs)
        origin = Vec3(2 * upper.x * (i % per_row), 2 * upper.y * (i // per_row), 0.0)
        env = types.SimpleNamespace(index=i, origin=origin)
        sim.envs.append(env)
        return env

    def create_actor(
        self, env: types.SimpleNamespace, asset: dict, pose: Transform, name: str, group: int, filter: int
    ) -> int:
        assert group == env.index
        env.pose = pose
        return 0

    def set_actor_dof_properties(self, env: types.SimpleNamespace, actor: int, props: np.ndarray) -> bool:
        env.dof_props = props.copy()
        return True

    def get_actor_index(self, env: types.SimpleNamespace, actor: int, domain: object) -> int:
        assert domain == "sim"
        return env.index

    def get_env_origin(self, env: types.SimpleNamespace) -> Vec3:
        return env.origin

    def create_camera_sensor(self, env: types.SimpleNamespace, props: CameraProperties) -> int:
        env.camera_props = props
        return 0

    def set_camera_location(self, camera: int, env: types.SimpleNamespace, position: Vec3, target: Vec3) -> None:
        env.camera_at = (position, target)

    def create_viewer(self, sim: FakeSim, props: CameraProperties) -> object:
        sim.viewer = types.SimpleNamespace(draws=0, closed=False, destroyed=False)
        return sim.viewer

    def viewer_camera_look_at(self, viewer: object, env: object, position: Vec3, target: Vec3) -> None:
        pass

    def query_viewer_has_closed(self, viewer: types.SimpleNamespace) -> bool:
        return viewer.closed

    def draw_viewer(self, viewer: types.SimpleNamespace, sim: FakeSim, render_collision: bool) -> None:
        assert sim.graphics_stepped
        viewer.draws += 1

    def destroy_viewer(self, viewer: types.SimpleNamespace) -> None:
        viewer.destroyed = True

    def prepare_sim(self, sim: FakeSim) -> bool:
        n, d, b = len(sim.envs), len(sim.asset["lower"]), sim.asset["bodies"]
        sim.n, sim.d, sim.b = n, d, b
        sim.root = torch.zeros(n, 13)
        for env in sim.envs:
            p, r = env.pose.p, env.pose.r
            sim.root[env.index, :7] = torch.tensor([env.origin.x + p.x, env.origin.y + p.y, p.z, r.x, r.y, r.z, r.w])
        sim.dof = torch.zeros(n, d, 2)
        sim.buffers = {
            "root": torch.full((n, 13), float("nan")),
            "dof": torch.full((n * d, 2), float("nan")),
            "bodies": torch.full((n * b, 13), float("nan")),
            "contacts": torch.full((n * b, 3), float("nan")),
        }
        sim.prepared = sim.fetched = True
        return True

    def _acquire(self, sim: FakeSim, name: str) -> Tensor:
        assert sim.prepared, "state tensors exist only after prepare_sim"
        return Tensor(sim.buffers[name])

    def acquire_actor_root_state_tensor(self, sim: FakeSim) -> Tensor:
        return self._acquire(sim, "root")

    def acquire_dof_state_tensor(self, sim: FakeSim) -> Tensor:
        return self._acquire(sim, "dof")

    def acquire_rigid_body_state_tensor(self, sim: FakeSim) -> Tensor:
        return self._acquire(sim, "bodies")

    def acquire_net_contact_force_tensor(self, sim: FakeSim) -> Tensor:
        return self._acquire(sim, "contacts")

    def _check_fetched(self, sim: FakeSim) -> None:
        assert sim.gpu or sim.fetched, "the CPU pipeline must fetch_results before refreshing"

    def refresh_actor_root_state_tensor(self, sim: FakeSim) -> bool:
        self._check_fetched(sim)
        sim.buffers["root"].copy_(sim.root)
        return True

    def refresh_dof_state_tensor(self, sim: FakeSim) -> bool:
        self._check_fetched(sim)
        sim.buffers["dof"].copy_(sim.dof.reshape(-1, 2))
        return True

    def refresh_rigid_body_state_tensor(self, sim: FakeSim) -> bool:
        self._check_fetched(sim)
        bodies = sim.root[:, None, :].expand(sim.n, sim.b, 13).clone()
        bodies[:, :, 2] += torch.arange(sim.b, dtype=torch.float32)
        sim.buffers["bodies"].copy_(bodies.reshape(-1, 13))
        return True

    def refresh_net_contact_force_tensor(self, sim: FakeSim) -> bool:
        self._check_fetched(sim)
        sim.buffers["contacts"].zero_()
        sim.buffers["contacts"].view(sim.n, sim.b, 3)[:, 0, 2] = 9.81
        return True

    def _command(self, sim: FakeSim, tensor: Tensor, mode: int) -> torch.Tensor:
        data = tensor.data
        assert data.dtype == torch.float32 and data.is_contiguous() and data.numel() == sim.n * sim.d
        assert all((env.dof_props["driveMode"] == mode).all() for env in sim.envs)
        return data.reshape(sim.n, sim.d).clone()

    def set_dof_actuation_force_tensor(self, sim: FakeSim, tensor: Tensor) -> bool:
        sim.forces = self._command(sim, tensor, DOF_MODE_EFFORT)
        return True

    def set_dof_position_target_tensor(self, sim: FakeSim, tensor: Tensor) -> bool:
        sim.targets = self._command(sim, tensor, DOF_MODE_POS)
        return True

    def _indices(self, sim: FakeSim, indices: Tensor, count: int) -> torch.Tensor:
        idx = indices.data
        assert idx.dtype == torch.int32 and idx.is_contiguous() and idx.numel() == count
        return idx.long()

    def set_actor_root_state_tensor_indexed(self, sim: FakeSim, states: Tensor, indices: Tensor, count: int) -> bool:
        idx = self._indices(sim, indices, count)
        sim.root[idx] = states.data.view(sim.n, 13)[idx]
        sim.indexed_resets.append(idx.tolist())
        return True

    def set_dof_state_tensor_indexed(self, sim: FakeSim, states: Tensor, indices: Tensor, count: int) -> bool:
        idx = self._indices(sim, indices, count)
        sim.dof[idx] = states.data.view(sim.n, sim.d, 2)[idx]
        return True

    def simulate(self, sim: FakeSim) -> None:
        dt = sim.params.dt
        pos, vel = sim.dof[..., 0], sim.dof[..., 1]
        if sim.forces is not None:
            vel += sim.forces * dt
            pos += vel * dt
        if sim.targets is not None:
            new = pos + (sim.targets - pos) / 2
            vel.copy_((new - pos) / dt)
            pos.copy_(new)
        sim.root[:, 0] += vel.mean(1) * dt
        sim.simulate_calls += 1
        sim.fetched = sim.graphics_stepped = sim.rendered = False

    def fetch_results(self, sim: FakeSim, wait: bool) -> None:
        assert wait
        sim.fetched = True

    def step_graphics(self, sim: FakeSim) -> None:
        assert sim.fetched, "graphics reads the host state: fetch_results first"
        sim.graphics_stepped = True

    def render_all_camera_sensors(self, sim: FakeSim) -> None:
        assert sim.graphics_stepped
        sim.rendered = True

    def _image(self, sim: FakeSim, env: types.SimpleNamespace) -> torch.Tensor:
        assert sim.rendered, "render_all_camera_sensors first"
        h, w = env.camera_props.height, env.camera_props.width
        image = torch.zeros(h, w, 4, dtype=torch.uint8)
        image[..., 0] = env.index
        image[..., 1] = int(min(max(float(sim.root[env.index, 0] - env.origin.x) * 1000 + 100, 0), 255))
        image[..., 3] = 255
        return image

    def get_camera_image(self, sim: FakeSim, env: types.SimpleNamespace, camera: int, kind: object) -> np.ndarray:
        assert kind == "color"
        image = self._image(sim, env)
        return image.numpy().reshape(image.shape[0], -1)  # Isaac Gym's [H, W * 4]

    def get_camera_image_gpu_tensor(self, sim: FakeSim, env: types.SimpleNamespace, camera: int, kind: object) -> Tensor:
        assert kind == "color" and sim.image_access and env.camera_props.enable_tensors
        return Tensor(self._image(sim, env))

    def start_access_image_tensors(self, sim: FakeSim) -> None:
        sim.image_access = True

    def end_access_image_tensors(self, sim: FakeSim) -> None:
        sim.image_access = False

    def destroy_sim(self, sim: FakeSim) -> None:
        sim.destroyed = True


DOF_MODE_POS, DOF_MODE_EFFORT = 1, 3


def make_fake_isaacgym() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    gym = FakeGym()
    gymapi = types.ModuleType("isaacgym.gymapi")
    for cls in (Vec3, Quat, Transform, SimParams, AssetOptions, PlaneParams, CameraProperties, Tensor):
        setattr(gymapi, cls.__name__, cls)
    gymapi.SIM_PHYSX, gymapi.UP_AXIS_Z, gymapi.UP_AXIS_Y = "physx", "z", "y"
    gymapi.DOF_MODE_POS, gymapi.DOF_MODE_EFFORT = DOF_MODE_POS, DOF_MODE_EFFORT
    gymapi.DOMAIN_SIM, gymapi.IMAGE_COLOR, gymapi.INVALID_HANDLE = "sim", "color", -1
    gymapi.acquire_gym = lambda: gym
    gymtorch = types.ModuleType("isaacgym.gymtorch")
    gymtorch.wrap_tensor = lambda tensor: tensor.data

    def unwrap_tensor(tensor: torch.Tensor) -> Tensor:
        assert tensor.is_contiguous(), "Isaac Gym reads raw memory: tensors must be contiguous"
        return Tensor(tensor)

    gymtorch.unwrap_tensor = unwrap_tensor
    package = types.ModuleType("isaacgym")
    package.__path__ = []
    package.gymapi, package.gymtorch = gymapi, gymtorch
    return package, gymapi, gymtorch


@pytest.fixture
def fake_gym(monkeypatch: pytest.MonkeyPatch) -> FakeGym:
    package, gymapi, gymtorch = make_fake_isaacgym()
    monkeypatch.setitem(sys.modules, "isaacgym", package)
    monkeypatch.setitem(sys.modules, "isaacgym.gymapi", gymapi)
    monkeypatch.setitem(sys.modules, "isaacgym.gymtorch", gymtorch)
    return gymapi.acquire_gym()


DOFS, BODIES = 3, 4


def write_asset(path: Path, **changes: object) -> Path:
    """A fake asset: DOF 0 and 1 limited to [-1, 1] and [0, 2], DOF 2 free; efforts 10, 20, 30."""
    spec = {"lower": [-1.0, 0.0, 0.0], "upper": [1.0, 2.0, 0.0], "has_limits": [True, True, False],
            "effort": [10.0, 20.0, 30.0], "bodies": BODIES}
    path.write_text(json.dumps({**spec, **changes}))
    return path


@pytest.fixture
def asset(tmp_path: Path) -> Path:
    return write_asset(tmp_path / "robot.urdf")


def observe(s: ig.IsaacGymState) -> torch.Tensor:
    return torch.cat([s.root_states[:, :1] - s.env_origins[:, :1], s.dof_pos, s.dof_vel], 1)


def make_task(asset: Path, **overrides: object) -> IsaacGymTask:
    fields: dict = dict(
        asset_root=str(asset.parent), asset_file=asset.name, observation=observe,
        reward=lambda s: s.dof_vel[:, 0], name="fake", instruction="move joint 0", max_episode_steps=50,
    )
    fields.update(overrides)
    return IsaacGymTask(**fields)


CPU_PIPELINE = IsaacGymSimConfig(use_gpu_pipeline=False, dt=0.1)


def make(asset: Path, num_envs: int = 3, sim: IsaacGymSimConfig = CPU_PIPELINE, **task: object) -> IsaacGymVecEnv:
    return IsaacGymVecEnv(make_task(asset, **task), num_envs=num_envs, render_size=(6, 8), sim=sim)


def actions(num_envs: int, *values: float) -> torch.Tensor:
    return torch.tensor([list(values)] * num_envs, dtype=torch.float32)


# ---- without Isaac Gym ---------------------------------------------------------------
def test_importing_sim_isaacgym_does_not_import_isaacgym() -> None:
    assert ig.IsaacGymVecEnv  # imported at the top of this file
    assert "isaacgym" not in sys.modules


def test_missing_isaacgym_says_how_to_install(monkeypatch: pytest.MonkeyPatch, asset: Path) -> None:
    monkeypatch.setitem(sys.modules, "isaacgym", None)  # what an absent package looks like to import
    with pytest.raises(ImportError) as err:
        require_isaacgym()
    message = str(err.value)
    for needle in ("not installed", "not on PyPI", "Isaac Gym Preview 4", "pip install -e isaacgym/python",
                   "3.6-3.8", "before `import torch`", "MuJoCo tasks (sim.make_env) need no Isaac Gym"):
        assert needle in message, needle
    with pytest.raises(ImportError, match="not on PyPI"):
        make_isaacgym_env(make_task(asset))


@pytest.mark.parametrize(
    "failure, expected",
    [
        # Isaac Gym's own check raises from inside `from isaacgym import gymapi`
        (
            ImportError("PyTorch was imported before isaacgym modules.  Please import torch after isaacgym modules."),
            "first import of your script, before `import torch`",
        ),
        (
            RuntimeError("No gym module found for the active version of Python (3.11)"),
            r"failed to import: No gym module.*Python 3\.6-3\.8 only",
        ),
    ],
)
def test_isaacgym_import_failures_say_how_to_fix_them(
    monkeypatch: pytest.MonkeyPatch, failure: Exception, expected: str
) -> None:
    package = types.ModuleType("isaacgym")

    def refuse(name: str) -> object:
        raise failure

    package.__getattr__ = refuse
    monkeypatch.setitem(sys.modules, "isaacgym", package)
    with pytest.raises(ImportError, match=expected):
        require_isaacgym()


# ---- against the fake ----------------------------------------------------------------
@pytest.mark.parametrize("gpu_pipeline", [False, True], ids=["cpu-pipeline", "gpu-pipeline"])
def test_reset_step_shapes_and_dtypes(fake_gym: FakeGym, asset: Path, gpu_pipeline: bool) -> None:
    n = 3
    sim_cfg = IsaacGymSimConfig(use_gpu_pipeline=gpu_pipeline, dt=0.1)
    env = make(asset, n, sim=sim_cfg, success=lambda s: s.dof_pos[:, 0] > 0.0, decimation=2)
    assert env.observation_spec.shape == (1 + 2 * DOFS,) and env.action_spec.shape == (DOFS,)
    assert (env.action_spec.low == -1).all() and (env.action_spec.high == 1).all()
    assert env.instructions == ["move joint 0"] * n and env.task_names == ["fake"] * n
    assert env.max_episode_steps == 50 and env.render_size == (6, 8) and env.state.dt == pytest.approx(0.2)
    obs = env.reset(seed=0)
    assert obs.shape == (n, 1 + 2 * DOFS) and obs.dtype == torch.float32 and obs.device.type == "cpu"
    assert torch.equal(obs, torch.zeros_like(obs))  # DOF 1 defaults to 0 clamped into [0, 2]
    sim = fake_gym.sims[-1]
    calls = sim.simulate_calls
    obs, reward, terminated, truncated, info = env.step(actions(n, 1.0, 0.0, 0.0))
    assert sim.simulate_calls == calls + 2  # decimation
    assert obs.shape == (n, 1 + 2 * DOFS) and obs.dtype == torch.float32
    assert reward.shape == (n,) and reward.dtype == torch.float32
    assert terminated.dtype == truncated.dtype == info["success"].dtype == torch.bool
    assert terminated.shape == truncated.shape == info["success"].shape == (n,)
    assert not terminated.any() and not truncated.any() and info["success"].all()
    assert torch.equal(info["final_observation"], obs)
    assert info["episode_return"].dtype == torch.float32 and (info["episode_length"] == 0).all()
    # Effort 10 N on DOF 0 for two 0.1 s steps from rest: v = 2, x = 0.1 + 0.3.
    assert reward.tolist() == pytest.approx([2.0] * n)
    assert obs[:, 1].tolist() == pytest.approx([0.3] * n)
    env.close()
    assert sim.destroyed


def test_effort_actions_are_clipped_and_scaled_to_the_effort_limits(fake_gym: FakeGym, asset: Path) -> None:
    env = make(asset)
    env.step(actions(3, 2.0, -0.5, 0.1))
    assert fake_gym.sims[-1].forces[0].tolist() == pytest.approx([10.0, -10.0, 3.0])
    env = make(asset, action_scale=[1.0, 2.0, 4.0])
    env.step(actions(3, 0.5, 0.5, -0.5))
    assert fake_gym.sims[-1].forces[0].tolist() == pytest.approx([0.5, 1.0, -2.0])


def test_position_actions_map_onto_the_joint_limits(fake_gym: FakeGym, asset: Path) -> None:
    with pytest.raises(ValueError, match=r"DOFs \[2\] have no joint limits"):
        make(asset, drive="position")
    env = make(asset, drive="position", action_scale=0.5, default_dof_pos=[0.0, 1.0, 0.0], pd_gains=(5.0, 1.0))
    env.step(actions(3, 1.0, -1.0, 0.5))
    sim = fake_gym.sims[-1]
    assert sim.targets[0].tolist() == pytest.approx([0.5, 0.5, 0.25])
    assert (sim.envs[0].dof_props["stiffness"] == 5.0).all() and (sim.envs[0].dof_props["damping"] == 1.0).all()
    limited = write_asset(asset.with_name("limited.urdf"), upper=[1.0, 2.0, 4.0], has_limits=[True] * 3)
    env = make(limited, drive="position")
    env.step(actions(3, -1.0, 0.5, 0.0))
    assert fake_gym.sims[-1].targets[0].tolist() == pytest.approx([-1.0, 1.5, 2.0])


def test_truncation_at_max_episode_steps(fake_gym: FakeGym, asset: Path) -> None:
    n = 2
    env = make(asset, n, max_episode_steps=3)
    first = env.reset(seed=0)
    push = actions(n, 1.0, 0.0, 0.0)
    rewards = []
    for t in range(3):
        obs, reward, terminated, truncated, info = env.step(push)
        rewards.append(reward)
        assert not terminated.any()
        assert truncated.all() == (t == 2) and truncated.any() == (t == 2)
    assert torch.equal(obs, first)  # the first observation of the next episode
    assert (info["final_observation"][:, 1] > 0).all()  # the last one of the finished episode
    assert info["episode_length"].tolist() == [3, 3]
    assert info["episode_return"].tolist() == pytest.approx(torch.stack(rewards).sum(0).tolist())
    assert fake_gym.sims[-1].indexed_resets[-1] == [0, 1]
    obs, *_, info = env.step(push)  # the new episode started from rest
    assert obs[:, 4].tolist() == pytest.approx([1.0, 1.0]) and (info["episode_length"] == 0).all()


def test_termination_resets_only_the_finished_env(fake_gym: FakeGym, asset: Path) -> None:
    n = 3
    env = make(asset, n, max_episode_steps=2, terminated=lambda s: s.dof_pos[:, 0] > 0.05)
    start = env.reset(seed=0)
    push_first = torch.zeros(n, DOFS)
    push_first[0, 0] = 1.0
    obs, reward, terminated, truncated, info = env.step(push_first)
    assert terminated.tolist() == [True, False, False] and not truncated.any()
    assert torch.equal(obs[0], start[0]) and info["final_observation"][0, 1] > 0.05
    assert torch.equal(info["final_observation"][1:], obs[1:])
    assert info["episode_length"].tolist() == [1, 0, 0]
    sim = fake_gym.sims[-1]
    assert sim.indexed_resets[-1] == [0] and float(sim.dof[0, 0, 0]) == 0.0  # pushed into the sim
    # Step 2: envs 1, 2 reach the time limit; env 0 pushed again terminates (and is not truncated).
    obs, reward, terminated, truncated, info = env.step(push_first)
    assert terminated.tolist() == [True, False, False] and truncated.tolist() == [False, True, True]
    assert info["episode_length"].tolist() == [1, 2, 2]
    # The time limit reached on a terminal step: terminated, not truncated (nothing to bootstrap).
    env = make(asset, n, max_episode_steps=1, terminated=lambda s: s.dof_pos[:, 0] > 0.05)
    _, _, terminated, truncated, _ = env.step(push_first)
    assert terminated.tolist() == [True, False, False] and truncated.tolist() == [False, True, True]


def test_render_frames(fake_gym: FakeGym, asset: Path) -> None:
    for gpu_pipeline in (False, True):
        env = make(asset, 4, sim=IsaacGymSimConfig(use_gpu_pipeline=gpu_pipeline, dt=0.1))
        env.reset(seed=0)
        frames = env.render()
        assert frames.shape == (4, 6, 8, 3) and frames.dtype == torch.uint8 and frames.device.type == "cpu"
        assert frames[:, 0, 0, 0].tolist() == [0, 1, 2, 3]  # each env's own camera
        some = env.render([3, 1])
        assert some.shape == (2, 6, 8, 3) and some[:, 0, 0, 0].tolist() == [3, 1]
        assert env.render([]).shape == (0, 6, 8, 3)
        env.step(actions(4, 1.0, 0.0, 0.0))
        assert (env.render()[:, 0, 0, 1] > 100).all()  # frames follow the state
        with pytest.raises(ValueError, match="env_ids"):
            env.render([4])
    no_cameras = IsaacGymVecEnv(make_task(asset), 2, sim=CPU_PIPELINE, enable_cameras=False)
    with pytest.raises(RuntimeError, match="no cameras"):
        no_cameras.render()
    with pytest.raises(ValueError, match="graphics device"):
        IsaacGymVecEnv(make_task(asset), 2, sim=IsaacGymSimConfig(graphics_device_id=-1))


def test_action_validation(fake_gym: FakeGym, asset: Path) -> None:
    env = make(asset, 2)
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(2, DOFS + 1))
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(3, DOFS))
    with pytest.raises(ValueError, match="not finite"):
        env.step(torch.tensor([[0.0, float("nan"), 0.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(TypeError, match="float"):
        env.step(torch.zeros(2, DOFS, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor or numpy"):
        env.step([[0.0] * DOFS] * 2)
    env.step(np.zeros((2, DOFS)))  # numpy float64 is fine


def test_seeding_is_deterministic(fake_gym: FakeGym, asset: Path) -> None:
    def rollout(env: IsaacGymVecEnv, seed: int) -> list[torch.Tensor]:
        out = [env.reset(seed=seed)]
        for t in range(4):
            out.append(env.step(actions(3, 0.5, -0.5, 0.25 * t)).observation)
        return out

    env = make(asset, reset_noise=0.1, max_episode_steps=2)
    a = rollout(env, 7)
    assert not torch.equal(a[0][0], a[0][1])  # envs draw their own noise
    assert all(torch.equal(x, y) for x, y in zip(a, rollout(env, 7)))
    assert all(torch.equal(x, y) for x, y in zip(a, rollout(make(asset, reset_noise=0.1, max_episode_steps=2), 7)))
    assert not torch.equal(a[0], rollout(env, 8)[0])
    lo, hi = env.state.dof_lower, env.state.dof_upper
    assert ((env.state.dof_pos >= lo) & (env.state.dof_pos <= hi)).all()  # noise stays within the limits


def test_task_callables_are_checked(fake_gym: FakeGym, asset: Path) -> None:
    with pytest.raises(TypeError, match="task.reward must return a float tensor"):
        make(asset, reward=lambda s: s.dof_vel).step(actions(3, 0, 0, 0))
    with pytest.raises(TypeError, match="task.terminated must return a bool tensor"):
        make(asset, terminated=lambda s: s.dof_pos[:, 0]).step(actions(3, 0, 0, 0))
    with pytest.raises(TypeError, match="task.observation must return a tensor with 3 rows"):
        make(asset, observation=lambda s: s.dof_pos[:2])
    with pytest.raises(TypeError, match="float tensor"):
        make(asset, observation=lambda s: s.episode_step[:, None])
    with pytest.raises(TypeError, match="must be callable"):
        make_task(asset, reward=3.0)


def test_returned_tensors_do_not_alias_the_sim_buffers(fake_gym: FakeGym, asset: Path) -> None:
    env = make(asset, observation=lambda s: s.dof_pos, reward=lambda s: s.dof_pos[:, 0])
    obs, reward, *_ = env.step(actions(3, 1.0, 0.0, 0.0))
    before = obs.clone(), reward.clone()
    env.step(actions(3, 1.0, 0.0, 0.0))
    assert torch.equal(obs, before[0]) and torch.equal(reward, before[1])


def test_construction_options_reach_isaacgym(fake_gym: FakeGym, asset: Path) -> None:
    env = make_isaacgym_env(
        make_task(asset, asset_options={"angular_damping": 0.01}, fix_base_link=True, start_position=(0.0, 0.0, 0.5)),
        num_envs=4, render_size=(6, 8), sim={"use_gpu_pipeline": False, "dt": 0.005, "substeps": 4},
    )
    sim = fake_gym.sims[-1]
    assert sim.params.dt == 0.005 and sim.params.substeps == 4 and sim.params.up_axis == "z"
    assert sim.asset_options.angular_damping == 0.01 and sim.asset_options.fix_base_link
    assert sim.envs[0].camera_props.width == 8 and sim.envs[0].camera_props.height == 6
    assert (sim.envs[2].dof_props["driveMode"] == DOF_MODE_EFFORT).all()
    assert env.state.env_origins.shape == (4, 3) and env.state.root_states[:, 2].tolist() == [0.5] * 4
    assert env.state.rigid_body_states.shape == (4, BODIES, 13) and env.state.contact_forces.shape == (4, BODIES, 3)
    with pytest.raises(ValueError, match="unknown IsaacGymSimConfig fields"):
        make_isaacgym_env(make_task(asset), sim={"dtt": 0.01})
    with pytest.raises(ValueError, match="has no attribute 'nope'"):
        make(asset, asset_options={"nope": 1})
    assert fake_gym.sims[-1].destroyed  # a failed build releases its sim
    with pytest.raises(FileNotFoundError, match="missing.urdf"):
        make(asset.with_name("missing.urdf"))
    with pytest.raises(ValueError, match="num_envs"):
        make(asset, 0)


def test_viewer_and_close(fake_gym: FakeGym, asset: Path) -> None:
    env = make(asset, sim=IsaacGymSimConfig(use_gpu_pipeline=False, headless=False))
    viewer = fake_gym.sims[-1].viewer
    env.step(actions(3, 0, 0, 0))
    assert viewer.draws == 1
    viewer.closed = True
    env.step(actions(3, 0, 0, 0))
    assert viewer.destroyed and viewer.draws == 1
    with env:
        pass
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.step(actions(3, 0, 0, 0))


# ---- mypy against isaacgym-stubs -----------------------------------------------------
def mypy_config(typings: Path) -> str:
    """The project's mypy settings with the fixed stubs on mypy_path (any override of isaacgym
    in pyproject.toml, such as a skip for the main run, is left out), stricter for sim.isaacgym."""
    import tomllib  # Python 3.11+, as the project's mypy config

    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    lines = ["[mypy]", f"mypy_path = {typings}", "follow_imports = silent"]
    ini = lambda v: ", ".join(map(str, v)) if isinstance(v, list) else str(v)  # noqa: E731
    skip = ("files", "mypy_path", "overrides", "follow_imports")
    lines += [f"{k} = {ini(v)}" for k, v in settings.items() if k not in skip]
    for override in settings.get("overrides", []):
        modules = [override["module"]] if isinstance(override["module"], str) else override["module"]
        if not any(m.split(".")[0] == "isaacgym" for m in modules):
            lines += [f"[mypy-{','.join(modules)}]"] + [f"{k} = {ini(v)}" for k, v in override.items() if k != "module"]
    lines += ["[mypy-sim.isaacgym.*]", "disallow_untyped_defs = True", "disallow_incomplete_defs = True"]
    lines += ["[mypy-isaacgym.*]", "ignore_errors = True"]  # the stubs' own errors (undefined `capsule`, ...)
    return "\n".join(lines) + "\n"


def test_adapter_type_checks_against_isaacgym_stubs(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    from sim.isaacgym.stubs import write_stubs

    cache = request.config.cache.mkdir("isaacgym-mypy") if request.config.cache else tmp_path
    try:
        write_stubs(cache / "typings")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    config = tmp_path / "mypy.ini"
    config.write_text(mypy_config(cache / "typings"))
    # A wrong use of the API must be reported: proof that the stubs, not Any, were checked against.
    probe = tmp_path / "probe.py"
    probe.write_text("from isaacgym import gymapi\n\ngymapi.acquire_gym().simulate(gymapi.SimParams())\n")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(cache / "cache"),
         "sim/isaacgym", str(probe)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    report = result.stdout + result.stderr
    assert len(errors) == 1 and "probe.py:3" in errors[0] and 'expected "Sim"' in errors[0], report

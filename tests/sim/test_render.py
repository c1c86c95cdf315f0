"""RendererPool: frame layout, tiling, cameras and flags, agreement with gymnasium, input errors."""

import copy
import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import mujoco
import numpy as np
import pytest
import torch

import sim.mujoco.render as render
from sim.mujoco.render import Camera, RendererPool, SceneFlags

H, W = 64, 80
#: VLM-RM's humanoid camera as gymnasium's default_camera_config
VLM_RM_CONFIG = {"trackbodyid": 1, "distance": 3.5, "lookat": np.array((0.0, 0.0, 1.0)), "elevation": -10.0,
                 "azimuth": 180.0}
VLM_RM_FREE = Camera(distance=3.5, lookat=(0.0, 0.0, 1.0), elevation=-10.0, azimuth=180.0)


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    import gymnasium.envs.mujoco

    return mujoco.MjModel.from_xml_path(str(Path(gymnasium.envs.mujoco.__file__).parent / "assets" / "humanoid.xml"))


def _state(model: mujoco.MjModel, seed: int, shift: float = 0.0) -> mujoco.MjData:
    rng = np.random.default_rng(seed)
    data = mujoco.MjData(model)
    data.qpos[:] = model.qpos0 + rng.normal(0.0, 0.4, model.nq)
    data.qpos[0] += shift
    data.qpos[3:7] /= np.linalg.norm(data.qpos[3:7])
    mujoco.mj_forward(model, data)
    return data


@pytest.fixture(scope="module")
def datas(model: mujoco.MjModel) -> list[mujoco.MjData]:
    return [_state(model, seed) for seed in range(5)]


@pytest.fixture(scope="module")
def pool(model: mujoco.MjModel):
    with RendererPool(model, H, W, VLM_RM_FREE, SceneFlags.fast(), max_tiles=4) as p:
        yield p


def _mad(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


def test_frames_shape_dtype_and_content(pool: RendererPool, datas: list[mujoco.MjData]) -> None:
    frames = pool.render(datas[:3])
    assert frames.shape == (3, H, W, 3) and frames.dtype == torch.uint8 and frames.is_contiguous()
    assert frames.float().std() > 10  # a picture, not a cleared buffer
    # row 0 is the top: the free camera looks slightly down, so the floor fills the bottom rows
    assert frames[:, -4:].float().std() > 0 and not torch.equal(frames[:, :4], frames[:, -4:])


def test_frames_follow_the_state(pool: RendererPool, datas: list[mujoco.MjData], model: mujoco.MjModel) -> None:
    twin = _state(model, 0)
    frames = pool.render([datas[0], twin, datas[1]])
    assert torch.equal(frames[0], frames[1])
    assert _mad(frames[0], frames[2]) > 1.0


def test_tiles_match_single_renders_across_passes_and_threads(model: mujoco.MjModel,
                                                              datas: list[mujoco.MjData]) -> None:
    # 5 envs, 2 tiles per pass, 2 contexts: passes of 2 and 1 frames, envs in different tile slots
    with RendererPool(model, H, W, VLM_RM_FREE, SceneFlags.fast(), max_tiles=2, threads=2) as tiled, \
            RendererPool(model, H, W, VLM_RM_FREE, SceneFlags.fast(), max_tiles=3, threads=1) as grid, \
            RendererPool(model, H, W, VLM_RM_FREE, SceneFlags.fast(), max_tiles=1, threads=1) as single:
        assert tiled.layout.tiles == 2 and tiled.threads == 2
        assert (grid.layout.rows, grid.layout.cols, grid.layout.tiles) == (2, 2, 3)  # a slot stays free
        for batch in (tiled.render(datas), grid.render(datas)):
            for i, data in enumerate(datas):
                alone = single.render([data])[0]
                # same image up to rounding of vertex positions at a different framebuffer offset
                assert (batch[i].int() - alone.int()).abs().max() <= 2
                assert _mad(batch[i], alone) < 0.01


def test_out_argument(pool: RendererPool, datas: list[mujoco.MjData]) -> None:
    expected = pool.render(datas[:2])
    out = torch.zeros((2, H, W, 3), dtype=torch.uint8)
    assert pool.render(datas[:2], out) is out and torch.equal(out, expected)
    strided = torch.zeros((2, H, W, 4), dtype=torch.uint8)[..., :3]  # not contiguous
    pool.render(datas[:2], strided)
    assert torch.equal(strided, expected)


def test_render_from_another_thread(pool: RendererPool, datas: list[mujoco.MjData]) -> None:
    expected = pool.render(datas[:2])
    got: list[torch.Tensor] = []
    thread = threading.Thread(target=lambda: got.append(pool.render(datas[:2])))
    thread.start()
    thread.join()
    assert torch.equal(got[0], expected)


def _gymnasium_frame(model: mujoco.MjModel, data: mujoco.MjData, config: dict, flags: SceneFlags,
                     monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    """gymnasium's ``render()`` of ``data`` with ``flags`` applied to its scene."""
    monkeypatch.setenv("MUJOCO_GL", os.environ.get("MUJOCO_GL", "egl"))
    from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer

    if not flags.multisample:
        model = copy.copy(model)
        model.vis.quality.offsamples = 0
    renderer = MujocoRenderer(model, data, default_cam_config=config, width=W, height=H, camera_id=-1)
    try:
        renderer.render("rgb_array")
        assert renderer.viewer is not None
        for flag, on in flags.scene_flags().items():
            renderer.viewer.scn.flags[flag] = on
        return renderer.render("rgb_array").copy()
    finally:
        renderer.close()


@pytest.mark.parametrize("flags", [SceneFlags.quality(), SceneFlags.fast()], ids=["quality", "fast"])
def test_matches_gymnasium_render(model: mujoco.MjModel, flags: SceneFlags, monkeypatch: pytest.MonkeyPatch) -> None:
    # displaced 1.5 m: gymnasium ignores trackbodyid in default_camera_config (it always renders
    # mjCAMERA_FREE), so VLM-RM's config is the free camera at lookat (0, 0, 1)
    data = _state(model, 7, shift=1.5)
    theirs = _gymnasium_frame(model, data, VLM_RM_CONFIG, flags, monkeypatch)
    with RendererPool(model, H, W, VLM_RM_FREE, flags, threads=1) as pool:
        ours = pool.render([data])[0].numpy()
    assert _mad(ours, theirs) < 0.05, _mad(ours, theirs)
    with RendererPool(model, H, W, replace(VLM_RM_FREE, trackbodyid=1), flags, threads=1) as pool:
        tracked = pool.render([data])[0].numpy()
    assert _mad(tracked, theirs) > 5.0  # our tracking camera does follow the body


def test_tracking_camera_looks_at_subtree_com(model: mujoco.MjModel) -> None:
    data = _state(model, 3, shift=2.0)
    tracking = Camera(trackbodyid=1, distance=3.5, elevation=-10.0, azimuth=180.0)
    free_at_com = Camera(distance=3.5, lookat=tuple(data.subtree_com[1]), elevation=-10.0, azimuth=180.0)
    with RendererPool(model, H, W, tracking, SceneFlags.fast(), threads=1) as a, \
            RendererPool(model, H, W, free_at_com, SceneFlags.fast(), threads=1) as b:
        assert torch.equal(a.render([data]), b.render([data]))


def test_fixed_cameras_and_default_camera(model: mujoco.MjModel, datas: list[mujoco.MjData]) -> None:
    with RendererPool(model, H, W, "track", threads=1) as by_name, \
            RendererPool(model, H, W, Camera(name=0), threads=1) as by_id, \
            RendererPool(model, H, W, None, threads=1) as default:
        named = by_name.render(datas[:1])
        assert torch.equal(named, by_id.render(datas[:1]))
        assert _mad(named, default.render(datas[:1])) > 1.0
    with pytest.raises(ValueError, match="no camera named 'nope'.*track"):
        RendererPool(model, H, W, "nope")
    with pytest.raises(ValueError, match="out of range"):
        RendererPool(model, H, W, model.ncam)
    with pytest.raises(ValueError, match="trackbodyid"):
        RendererPool(model, H, W, Camera(trackbodyid=model.nbody))


def test_scene_flags(model: mujoco.MjModel, datas: list[mujoco.MjData], pool: RendererPool) -> None:
    fast = pool.render(datas[:1])
    with RendererPool(model, H, W, VLM_RM_FREE, SceneFlags(), threads=1) as sky, \
            RendererPool(model, H, W, VLM_RM_FREE, SceneFlags(coarse_planes=False, skybox=False),
                         threads=1) as fine:
        # the camera looks at the horizon: the skybox fills the top rows
        assert _mad(sky.render(datas[:1])[:, :8], fast[:, :8]) > 5.0
        # the humanoid's light is directional: 2x2 floor quads light exactly like MuJoCo's fine grid
        assert (fine.render(datas[:1]).int() - fast.int()).abs().max() <= 2
    assert SceneFlags.fast().scene_flags()[int(mujoco.mjtRndFlag.mjRND_SKYBOX)] is False
    assert all(SceneFlags.quality().scene_flags()[f] for f in (int(mujoco.mjtRndFlag.mjRND_SHADOW),
                                                               int(mujoco.mjtRndFlag.mjRND_REFLECTION)))


MESHES = """
<mujoco>
  <asset>
    <mesh name="wedge" vertex="0 0 0  0.3 0 0  0 0.2 0  0 0 0.4  0.3 0.2 0.4"/>
    <material name="matte" specular="0"/>
  </asset>
  <worldbody>
    <light directional="true" dir="0 0 -1" specular="0.3 0.3 0.3"/>
    <geom type="plane" size="5 5 0.1" material="matte" rgba="0.4 0.5 0.4 1"/>
    {bodies}
  </worldbody>
</mujoco>
"""


@pytest.fixture(scope="module")
def mesh_model() -> mujoco.MjModel:
    rng = np.random.default_rng(0)
    bodies = "\n".join(
        f'<body pos="{x:.2f} {y:.2f} {z:.2f}" euler="{a:.0f} {b:.0f} {c:.0f}"><freejoint/>'
        f'<geom type="mesh" mesh="wedge" rgba="{r:.2f} 0.3 0.6 1"/></body>'
        for x, y, z, a, b, c, r in zip(*rng.uniform(-3, 3, (2, 40)), rng.uniform(0.1, 2, 40),
                                         *rng.uniform(0, 360, (3, 40)), rng.uniform(0, 1, 40))
    )
    return mujoco.MjModel.from_xml_string(MESHES.format(bodies=bodies))


@pytest.mark.parametrize("camera", [Camera(distance=2.0, lookat=(0.5, 0.0, 0.5), azimuth=30.0, elevation=-15.0),
                                    Camera(distance=6.0, lookat=(0.0, 0.0, 0.0), azimuth=200.0, elevation=-60.0),
                                    Camera(distance=0.8, lookat=(-1.0, 1.0, 1.0), azimuth=100.0, elevation=10.0)])
def test_culling_leaves_frames_unchanged(mesh_model: mujoco.MjModel, camera: Camera) -> None:
    data = mujoco.MjData(mesh_model)
    mujoco.mj_forward(mesh_model, data)
    drawn = []
    with RendererPool(mesh_model, 48, 96, camera, SceneFlags(), threads=1) as culled, \
            RendererPool(mesh_model, 48, 96, camera, SceneFlags(), threads=1, cull=False) as full:
        assert culled.cull and not full.cull
        assert torch.equal(culled.render([data]), full.render([data]))
        worker = culled._workers[0]
        drawn = [worker.scene.geoms[i].dataid >= 0 for i in range(worker.scene.ngeom)
                 if worker.scene.geoms[i].type == mujoco.mjtGeom.mjGEOM_MESH]
    assert 0 < sum(drawn) < len(drawn)  # some meshes skipped, some drawn
    with RendererPool(mesh_model, 48, 96, camera, SceneFlags(reflections=True), threads=1) as mirror:
        assert not mirror.cull  # off-screen geoms can show in reflections


def test_coarse_planes_only_where_exact(model: mujoco.MjModel, mesh_model: mujoco.MjModel,
                                        arm_model: mujoco.MjModel) -> None:
    assert render._planes_lit_uniformly(mesh_model)  # directional light, specular-free floor
    assert not render._planes_lit_uniformly(arm_model)  # no materials at all: MuJoCo's default specular
    assert not render._planes_lit_uniformly(model)  # the humanoid's floor material is specular
    spot = copy.copy(mesh_model)
    spot.light_directional[0] = 0
    assert not render._planes_lit_uniformly(spot)
    dark = copy.copy(model)
    dark.light_specular[:] = 0
    dark.vis.headlight.specular[:] = 0
    assert render._planes_lit_uniformly(dark)


ARM = """
<mujoco>
  <worldbody>
    <light pos="0 0 3" dir="0 0 -1" directional="true"/>
    <geom name="floor" type="plane" size="2 2 0.1" rgba="0.3 0.5 0.3 1"/>
    <geom name="box" type="box" pos="0.6 0 0.2" size="0.2 0.2 0.2" rgba="0 0 1 1"/>
    <body name="base" pos="-0.4 0 0.1">
      <geom name="base_geom" type="cylinder" size="0.2 0.1" rgba="1 0 0 1"/>
      <body name="link" pos="0 0 0.5">
        <joint name="hinge" type="hinge" axis="0 1 0"/>
        <geom name="link_geom" type="capsule" fromto="0 0 -0.4 0 0 0.3" size="0.08" rgba="1 0.5 0 1"/>
        <site name="link_site" pos="0 0 0.1" size="0.05" rgba="1 1 0 1"/>
        <body name="hand" pos="0 0 0.4">
          <geom name="hand_geom" type="sphere" size="0.12" rgba="1 1 1 1"/>
        </body>
      </body>
    </body>
  </worldbody>
</mujoco>
"""


@pytest.fixture(scope="module")
def arm_model() -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(ARM)


def test_subtree_elements(arm_model: mujoco.MjModel) -> None:
    def names(kind: mujoco.mjtObj, ids: np.ndarray) -> set[str]:
        return {mujoco.mj_id2name(arm_model, kind, int(i)) for i in ids}

    geoms, sites = render.subtree_elements(arm_model, ["base"], ["hand"])
    assert names(mujoco.mjtObj.mjOBJ_GEOM, geoms) == {"base_geom", "link_geom"}
    assert names(mujoco.mjtObj.mjOBJ_SITE, sites) == {"link_site"}
    geoms, sites = render.subtree_elements(arm_model, ["link"])
    assert names(mujoco.mjtObj.mjOBJ_GEOM, geoms) == {"link_geom", "hand_geom"}
    assert [len(x) for x in render.subtree_elements(arm_model)] == [0, 0]
    with pytest.raises(ValueError, match=r"no body named \['arm'\].*'base', 'link', 'hand'"):
        render.subtree_elements(arm_model, ["arm"])
    with pytest.raises(TypeError, match="list of body names"):
        render.subtree_elements(arm_model, "base")
    with pytest.raises(TypeError, match="show_bodies must be a list of body names"):
        render.subtree_elements(arm_model, ["base"], None)  # type: ignore[arg-type]


@pytest.mark.parametrize("flags", [SceneFlags(), SceneFlags.quality()])
def test_hidden_bodies_are_drawn_as_if_absent(arm_model: mujoco.MjModel, flags: SceneFlags) -> None:
    camera = Camera(distance=3.0, lookat=(0.0, 0.0, 0.5), azimuth=90.0, elevation=-20.0)
    data = mujoco.MjData(arm_model)
    data.qpos[0] = 0.4
    mujoco.mj_forward(arm_model, data)
    # the reference: the same model with those geoms and sites in a group MuJoCo does not draw
    absent = copy.copy(arm_model)
    geoms, sites = render.subtree_elements(arm_model, ["base"], ["hand"])
    absent.geom_group[geoms] = 5
    absent.site_group[sites] = 5
    groups = arm_model.geom_group.copy()
    with RendererPool(arm_model, 48, 64, camera, flags, hide_bodies=["base"], show_bodies=["hand"]) as hiding, \
            RendererPool(absent, 48, 64, camera, flags) as reference, \
            RendererPool(arm_model, 48, 64, camera, flags) as full, \
            RendererPool(arm_model, 48, 64, camera, flags, hide_bodies=["base"]) as hiding_all:
        frames = hiding.render([data])
        assert torch.equal(frames, reference.render([data]))
        assert _mad(frames, full.render([data])) > 1.0  # the arm was in view
        assert _mad(frames, hiding_all.render([data])) > 0.05  # and the hand is drawn only by the first
    assert np.array_equal(arm_model.geom_group, groups)  # the caller's model is restored


def test_bad_inputs(model: mujoco.MjModel, pool: RendererPool, datas: list[mujoco.MjData]) -> None:
    other = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
    with pytest.raises(TypeError, match="MjModel"):
        RendererPool(mujoco.MjData(model), H, W)
    with pytest.raises(ValueError, match="height"):
        RendererPool(model, 0, W)
    with pytest.raises(TypeError, match="flags"):
        RendererPool(model, H, W, flags={"skybox": False})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_tiles"):
        RendererPool(model, H, W, max_tiles=0)
    with pytest.raises(ValueError, match="backend"):
        RendererPool(model, H, W, backend="vulkan")
    with pytest.raises(TypeError, match="camera"):
        RendererPool(model, H, W, camera=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"pass \[data\]"):
        pool.render(datas[0])
    with pytest.raises(ValueError, match="empty"):
        pool.render([])
    with pytest.raises(TypeError, match=r"datas\[1\]"):
        pool.render([datas[0], model])
    with pytest.raises(ValueError, match=r"datas\[1\] belongs to a different model"):
        pool.render([datas[0], mujoco.MjData(other)])
    with pytest.raises(TypeError, match="uint8"):
        pool.render(datas[:1], torch.zeros((1, H, W, 3)))
    with pytest.raises(ValueError, match="shape"):
        pool.render(datas[:2], torch.zeros((1, H, W, 3), dtype=torch.uint8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        pool.render(datas[:1], np.zeros((1, H, W, 3), np.uint8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distance"):
        Camera(distance=-1.0)
    with pytest.raises(ValueError, match="lookat"):
        Camera(lookat=(0.0, 0.0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="shadows"):
        SceneFlags(shadows=1)  # type: ignore[arg-type]
    closed = RendererPool(model, H, W, threads=1)
    closed.close()
    closed.close()
    with pytest.raises(RuntimeError, match="after close"):
        closed.render(datas[:1])


def test_no_gl_backend_names_what_was_tried_and_the_fix(model: mujoco.MjModel,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise ImportError(f"lib{name}.so: cannot open shared object file")

    monkeypatch.setattr(render, "_gl_context_class", missing)
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    with pytest.raises(RuntimeError) as err:
        RendererPool(model, H, W)
    message = str(err.value)
    assert "egl: ImportError: libegl.so" in message and "osmesa: ImportError" in message
    assert "apt-get install libegl1" in message and "MUJOCO_GL=osmesa" in message
    monkeypatch.setenv("MUJOCO_GL", "osmesa")  # honoured: only that backend is tried
    with pytest.raises(RuntimeError, match="Tried:\n  osmesa: ImportError") as err:
        RendererPool(model, H, W)
    assert "egl:" not in str(err.value)
    with pytest.raises(RuntimeError, match="Tried:\n  egl: ImportError"):
        RendererPool(model, H, W, backend="egl")


_GL_FIRST = """
import os
os.environ.setdefault("MUJOCO_GL", "egl")
import mujoco
from sim.mujoco.render import RendererPool, SceneFlags
xml = '<mujoco><worldbody><light pos="0 0 3"/><geom type="sphere" size=".2" rgba="1 0 0 1"/></worldbody></mujoco>'
model = mujoco.MjModel.from_xml_string(xml)
data = mujoco.MjData(model)
mujoco.mj_forward(model, data)
renderer = mujoco.Renderer(model, 32, 32)  # another renderer loads the GL library first
renderer.update_scene(data)
renderer.render()
with RendererPool(model, 32, 32, None, SceneFlags.fast()) as pool:
    frame = pool.render([data])
print("frame", tuple(frame.shape))
"""


def test_a_pool_after_another_gl_renderer_does_not_crash(tmp_path):
    # importing triton after Mesa's LLVM is loaded segfaults: the pool must not do it then
    proc = subprocess.run([sys.executable, "-c", _GL_FIRST], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "frame (1, 32, 32, 3)" in proc.stdout

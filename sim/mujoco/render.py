"""Renderer pool: frames of many MuJoCo envs at once, headless, into one uint8 torch tensor.

``RendererPool(model, height, width, camera, flags).render(datas)`` returns
``uint8 [len(datas), height, width, 3]`` (row 0 = top of the image, as gymnasium's
``rgb_array``). Each GL context owns one offscreen framebuffer holding a grid of
``height x width`` tiles; a pass runs ``mjv_updateScene`` + ``mjr_render`` once per env into
its tile, reads the used part of the framebuffer back with ONE ``mjr_readPixels``, and
flips each tile into its row of the output in a single copy.

Where the time goes (Mesa llvmpipe, 2 CPU cores, 224x224; ``python -m bench.render``, on a
machine shared with other jobs, so read ratios rather than absolute numbers)

* gymnasium's ``render()`` gives ~14 frames/s on the humanoid: MuJoCo's default scene pays a
  4096^2 shadow-map depth pass per frame (+45-50 ms of CPU; +10 ms with a 1024 map, see
  ``SceneFlags.shadow_size``), 4x multisampling (+7-10 ms), reflections (+6 ms on
  Meta-World's table, nothing on a floor with reflectance 0). ``SceneFlags.quality()``
  renders gymnasium's exact image (mean difference 0.00) at the same speed.
* With those off, the cost is geometry more than pixels: llvmpipe transforms vertices on the
  thread that issued the draw (its rasterizer threads, ``LP_NUM_THREADS``, only shade
  pixels), so a frame costs nearly as much at 32x32 as at 224x224. Two sources dominate:
  plane geoms, which MuJoCo draws as a grid of up to 200x200 quads (26 k for the humanoid's
  floor: ~3-4 ms), and mesh triangles (68 k on the Meta-World Sawyer + door: ~3 ms).
* The plane grid only serves per-vertex lighting (spot-light falloff, specular highlights
  with MuJoCo's local viewer). ``SceneFlags.coarse_planes`` builds the GL context from a
  model copy whose planes are 2x2 quads; it is automatic only where that is provably the
  same image, and ``SceneFlags.fast()`` forces it (humanoid: 8.9 -> 4.7 ms of CPU a frame,
  the same frame from VLM-RM's side-on camera).
* Mesh geoms entirely outside the view frustum are skipped (``_MeshCuller``, exact; ~1 ms of
  7 on door-open, more for close-up views); the skybox costs ~0.5 ms.
* Tiling and threads. One context cannot overlap its single-threaded vertex work with its
  rasterization, and a readback per frame serialises the two further. Two contexts on
  worker threads, each rendering its half of the batch as tiles of one framebuffer with one
  readback, overlap them: at batch 32 (fast flags, best of 30 interleaved calls) the
  humanoid went from 450 frames/s (one context) to 660, door-open from 155-200 to 240; one
  tile per pass with two contexts gave 510 and 200, and a third context no more (within
  noise). But Mesa 22.3's llvmpipe is not safe with several contexts drawing at once: a CI
  run segfaulted inside ``mjr_render`` with a pool's two contexts busy, and
  a stress run (two pools from two threads, four contexts, rendering for a minute) crashed 1
  run in 13. So all GL work in the process (context creation, scene upload, drawing, readback,
  freeing) is serialised by one lock (``_GL_LOCK``), the default is one context per pool,
  and ``DEFAULT_MAX_TILES = 16``; ``threads > 1`` still works, without the overlap. Under
  other load frames/s falls towards 1000 / (CPU ms per frame), ~3.5 ms humanoid, ~8.5 ms
  door-open.

GL backend. The context is created explicitly (``mujoco.egl`` / ``mujoco.osmesa`` /
``mujoco.glfw``), so it does not depend on ``MUJOCO_GL`` having been set before ``import
mujoco``. Order: the ``backend`` argument, else ``MUJOCO_GL`` when set, else EGL then
OSMesa. When none works, ``RuntimeError`` lists what was tried and how to fix it. PyOpenGL
binds one platform per process: once something (gymnasium's renderer, another pool) made an
EGL context, only EGL works in that process.

Framebuffer. Its size (``vis.global_.offwidth`` / ``offheight``) is set on a private copy of
the model (the caller's model is not modified) to hold the tile grid, which is capped by the
GL implementation's largest renderbuffer and viewport (16384 pixels a side on llvmpipe,
often 16384-32768 on GPUs): ``max_tiles`` shrinks to fit, and a single frame larger than the
limit raises ``ValueError``.

Threads. OpenGL contexts are current on one thread only; every context of a pool lives on
its own worker thread for the pool's lifetime, so ``render`` may be called from any thread
(calls are serialised). The ``datas`` are read by the workers while ``render`` runs: do not
step them from another thread meanwhile. A forked child cannot use its parent's pools (their
threads and GL contexts stay in the parent): make pools after forking, or use ``spawn``.

Hidden bodies. With ``hide_bodies``, each scene is built with those geoms and sites moved to a
group MuJoCo does not draw, on the ``model`` given, which is restored before ``render`` returns.

What the frames reflect. Scenes are built with the ``model`` given (live: geom colours,
light and camera parameters edited after construction show up); textures, meshes and the
framebuffer live in the GL context and are fixed at construction. ``datas`` may come from
other ``MjModel`` instances of the same model (one per env): geometry positions come from
each data. Call ``mj_forward`` (or ``mj_step``) after editing ``qpos`` so the kinematics
the scene reads are current.
"""

from __future__ import annotations

import atexit
import copy
import functools
import importlib
import importlib.util
import math
import os
import queue
import sys
import threading
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Sequence

import mujoco
import numpy as np
import torch


#: GL backends this module can create a context with (module ``mujoco.<name>``)
BACKENDS = ("egl", "osmesa", "glfw")
#: values of MUJOCO_GL that MuJoCo itself maps onto GLFW
_GLFW_ALIASES = ("glfw", "glx", "enable", "enabled", "on", "true", "1")
_DISABLED = ("disable", "disabled", "off", "false", "0")
#: tiles per framebuffer when ``max_tiles`` is not given
DEFAULT_MAX_TILES = 16
#: held for every GL call in the process: llvmpipe crashes with contexts drawing concurrently
_GL_LOCK = threading.Lock()
_THREAD_NAME = "renderer-pool"
_UNUSED_SHADOW_SIZE = 16


@dataclass(frozen=True)
class Camera:
    """Either a named/indexed fixed camera of the model (name=...), or a free camera.

    Free camera (``name=None``): looks at ``lookat`` (metres, world frame) from ``distance``
    metres, ``azimuth`` / ``elevation`` in degrees (MuJoCo's ``mjvCamera`` convention, the same
    keys as gymnasium's ``default_camera_config``). ``trackbodyid >= 0`` makes it track that
    body: ``lookat`` is replaced by the body's subtree centre of mass in every frame (MuJoCo's
    tracking camera once its smoothing has converged; stateless, so a frame depends only on
    its env's state). Note that gymnasium's ``MujocoRenderer`` ignores ``trackbodyid`` in
    ``default_camera_config`` (it always renders ``mjCAMERA_FREE`` when no camera is named), so
    the gymnasium-equivalent of such a config is ``trackbodyid=-1``.

    ``name=-1`` is the model's default free camera (``mjv_defaultFreeCamera``: centred on the
    model, as the MuJoCo viewer opens), like ``camera_id=-1`` in ``mujoco.Renderer``.
    """

    name: str | int | None = None
    trackbodyid: int = -1
    distance: float = 3.0
    lookat: tuple[float, float, float] = (0.0, 0.0, 0.0)
    elevation: float = -20.0
    azimuth: float = 90.0

    def __post_init__(self) -> None:
        name_types = (str, int, np.integer)
        if self.name is not None and (isinstance(self.name, bool) or not isinstance(self.name, name_types)):
            raise TypeError(f"Camera.name must be a str, an int or None, got {type(self.name).__name__}")
        if isinstance(self.name, np.integer):
            object.__setattr__(self, "name", int(self.name))
        if isinstance(self.trackbodyid, bool) or not isinstance(self.trackbodyid, (int, np.integer)):
            raise TypeError(f"Camera.trackbodyid must be an int, got {type(self.trackbodyid).__name__}")
        object.__setattr__(self, "trackbodyid", int(self.trackbodyid))
        lookat = tuple(self.lookat)
        if len(lookat) != 3 or not all(isinstance(v, (int, float, np.number)) and math.isfinite(v) for v in lookat):
            raise ValueError(f"Camera.lookat must be 3 finite numbers (x, y, z) in metres, got {self.lookat!r}")
        object.__setattr__(self, "lookat", tuple(float(v) for v in lookat))
        for key in ("distance", "elevation", "azimuth"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
                raise ValueError(f"Camera.{key} must be a finite number, got {value!r}")
        if self.distance <= 0:
            raise ValueError(f"Camera.distance must be > 0 metres, got {self.distance}")


@dataclass(frozen=True)
class SceneFlags:
    """Which costly effects a frame includes: the scene's ``mjtRndFlag`` s and GL context options.

    ``shadows``, ``reflections``, ``skybox``, ``fog``, ``haze``: MuJoCo's scene flags of those
    names. ``multisample``: antialias with the model's ``vis.quality.offsamples`` (MuJoCo's
    default rendering does; 2-3x the cost of a frame on llvmpipe).
    ``coarse_planes``: draw plane geoms as 2x2 quads instead of MuJoCo's fine grid, which
    exists for per-vertex lighting (spot-light falloff, specular highlights): ~3 ms less per
    frame on a large floor. ``None`` = only where that renders the same image: shadows off
    (shadow-map depth tests over large quads differ by a few grey levels), every light
    directional and no specular on the planes (see ``_planes_lit_uniformly``).
    ``shadow_size``: side of the shadow map in texels when ``shadows`` is on; ``None`` = the
    model's ``vis.quality.shadowsize`` (4096 by default: a 16 M-texel depth pass per
    shadow-casting light per frame).
    """

    shadows: bool = False
    reflections: bool = False
    skybox: bool = True
    fog: bool = False
    haze: bool = False
    multisample: bool = False
    coarse_planes: bool | None = None
    shadow_size: int | None = None

    def __post_init__(self) -> None:
        for key in ("shadows", "reflections", "skybox", "fog", "haze", "multisample"):
            if not isinstance(getattr(self, key), (bool, np.bool_)):
                raise TypeError(f"SceneFlags.{key} must be a bool, got {getattr(self, key)!r}")
        if self.coarse_planes is not None and not isinstance(self.coarse_planes, (bool, np.bool_)):
            raise TypeError(f"SceneFlags.coarse_planes must be a bool or None, got {self.coarse_planes!r}")
        if self.shadow_size is not None:
            _positive_int(self.shadow_size, "SceneFlags.shadow_size")

    @classmethod
    def fast(cls) -> "SceneFlags":
        """Every optional effect off, skybox included, and coarse planes (the fastest frames).

        Coarse planes also drop specular highlights that MuJoCo's fine plane grid would show
        on a floor; from side-on views such as VLM-RM's humanoid camera there are none.
        """
        return cls(shadows=False, reflections=False, skybox=False, fog=False, haze=False, multisample=False,
                   coarse_planes=True)

    @classmethod
    def quality(cls) -> "SceneFlags":
        """MuJoCo's defaults, which ``mujoco.Renderer`` and gymnasium's ``render()`` use."""
        return cls(shadows=True, reflections=True, skybox=True, fog=False, haze=True, multisample=True)

    def scene_flags(self) -> dict[int, bool]:
        """``{mjtRndFlag: on}`` for the flags this class controls."""
        flag = mujoco.mjtRndFlag
        return {
            int(flag.mjRND_SHADOW): bool(self.shadows),
            int(flag.mjRND_REFLECTION): bool(self.reflections),
            int(flag.mjRND_SKYBOX): bool(self.skybox),
            int(flag.mjRND_FOG): bool(self.fog),
            int(flag.mjRND_HAZE): bool(self.haze),
        }


@dataclass(frozen=True)
class _Layout:
    """Tile grid of one framebuffer: ``tiles`` frames of ``height x width`` pixels per pass, in
    ``rows x cols`` slots filled row by row from the bottom-left (GL's origin)."""

    height: int
    width: int
    rows: int
    cols: int
    tiles: int


def tile_grid(n: int) -> tuple[int, int]:
    """(rows, cols) of the most square grid that holds ``n`` tiles."""
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _layout(height: int, width: int, max_tiles: int, max_size: int) -> _Layout:
    """The most square grid of at most ``max_tiles`` tiles that fits a ``max_size`` buffer."""
    fit_cols, fit_rows = max_size // width, max_size // height
    if fit_cols < 1 or fit_rows < 1:
        raise ValueError(
            f"a {height}x{width} frame exceeds this GL implementation's largest framebuffer "
            f"({max_size}x{max_size} pixels); render smaller frames"
        )
    tiles = min(max_tiles, fit_cols * fit_rows)
    rows, cols = tile_grid(tiles)
    if cols > fit_cols or rows > fit_rows:  # a square grid does not fit: fill the limiting side
        cols = min(cols, fit_cols)
        rows = min(fit_rows, math.ceil(tiles / cols))
    return _Layout(height, width, rows, cols, tiles)


def _gl_context_class(name: str) -> Any:
    """``mujoco.<name>.GLContext`` (importing it loads that backend's GL library)."""
    load_triton_before_gl()
    return importlib.import_module(f"mujoco.{name}").GLContext


@functools.cache
def load_triton_before_gl() -> None:
    """Import triton (when installed) before a GL library is loaded.

    Mesa's software rasteriser (llvmpipe) and triton each carry their own LLVM; once Mesa's
    is loaded, importing triton (which ``torch._dynamo`` and so ``torchvision`` do) segfaults
    the process. The other order works. Call this first in a program that renders with another
    renderer (gymnasium's, ``mujoco.Renderer``) before the pool; where Mesa's LLVM is already
    loaded it does nothing, since the import would be the crash.
    """
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None or _mesa_llvm_loaded():
        return
    importlib.import_module("triton")


def _mesa_llvm_loaded() -> bool:
    try:
        with open("/proc/self/maps") as maps:
            return "libLLVM" in maps.read()
    except OSError:  # not Linux: no llvmpipe to clash with
        return False


def _backend_order(backend: str | None) -> list[str]:
    if backend is not None:
        return [backend]
    env = os.environ.get("MUJOCO_GL", "").strip().lower()
    if env in ("egl", "osmesa"):
        return [env]
    if env in _GLFW_ALIASES:
        return ["glfw"]
    if env in _DISABLED:
        raise RuntimeError(f"MUJOCO_GL={env!r} disables rendering; unset it (or set MUJOCO_GL=egl) to render frames")
    return ["egl", "osmesa"]


def _create_gl_context(order: Sequence[str], width: int, height: int) -> tuple[str, Any]:
    """A GL context made current on this thread: the first backend of ``order`` that works."""
    errors = []
    for name in order:
        saved = os.environ.get("PYOPENGL_PLATFORM")
        try:
            ctx = _gl_context_class(name)(width, height)
            ctx.make_current()
            return name, ctx
        except Exception as exc:  # any failure of a backend just means: try the next one
            errors.append(f"{name}: {type(exc).__name__}: {exc}".strip())
            # mujoco.egl / mujoco.osmesa pin PyOpenGL's platform; undo it for the next backend
            if saved is None:
                os.environ.pop("PYOPENGL_PLATFORM", None)
            else:
                os.environ["PYOPENGL_PLATFORM"] = saved
    platform = os.environ.get("PYOPENGL_PLATFORM")
    raise RuntimeError(
        "RendererPool could not create an OpenGL context with any backend. Tried:\n  "
        + "\n  ".join(errors)
        + "\nFix: for headless EGL (the default) install the EGL/Mesa drivers "
        "(Debian/Ubuntu: apt-get install libegl1 libgl1-mesa-dri; with an NVIDIA GPU, its driver's libEGL); "
        "or use software OSMesa: apt-get install libosmesa6, then set MUJOCO_GL=osmesa (or pass backend='osmesa'); "
        "with a display, MUJOCO_GL=glfw. "
        + (
            f"PYOPENGL_PLATFORM is set to {platform!r}: PyOpenGL can use one platform per process, so unset it "
            "or make it match the backend."
            if platform
            else ""
        )
    )


class _Worker:
    """One GL context, its MuJoCo render context and scene, on its own thread.

    A GL context is current on one thread only, so everything touching it runs as a job on
    this worker's thread. The thread is a daemon: the process-exit hook (``_close_all``)
    frees the context before EGL terminates, and a pool dropped without ``close()`` frees
    it from its finalizer.
    """

    def __init__(self) -> None:
        self.gl: Any = None
        self.con: mujoco.MjrContext | None = None
        self._jobs: queue.SimpleQueue[tuple[Any, tuple[Any, ...], Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=_THREAD_NAME, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, args, future = job
            try:
                with _GL_LOCK:  # every job makes GL calls
                    result = fn(*args)
                future.set_result(result)
            except BaseException as exc:  # handed to the caller of submit
                future.set_exception(exc)

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._jobs.put((fn, args, future))
        return future

    def close(self) -> None:
        """Free the GL resources on the worker thread and stop it."""
        if not self._thread.is_alive():
            return  # e.g. in a forked child, which has no copy of this thread
        done = self.submit(self.free)
        self._jobs.put(None)
        # a worker thread (a finalizer run by GC during a job) holds _GL_LOCK: waiting would deadlock
        if threading.current_thread().name != _THREAD_NAME:
            done.result()
            self._thread.join()

    # ---- run on the worker thread -------------------------------------------------------
    def open_gl(self, order: Sequence[str]) -> tuple[str, int]:
        """Create and bind the GL context; returns (backend, largest framebuffer side)."""
        backend, self.gl = _create_gl_context(order, 64, 64)
        from OpenGL import GL  # PyOpenGL comes with mujoco's GL backends

        max_size = int(GL.glGetIntegerv(GL.GL_MAX_RENDERBUFFER_SIZE))
        viewport = np.asarray(GL.glGetIntegerv(GL.GL_MAX_VIEWPORT_DIMS)).reshape(-1)
        return backend, int(min(max_size, *viewport.tolist()))

    def setup(self, gl_model: mujoco.MjModel, layout: _Layout, flags: SceneFlags, camera: "_CameraSetup",
              max_geom: int, cull: bool, hidden: "_Hidden") -> None:
        self.layout = layout
        self.camera = camera
        self.hidden = hidden
        self.con = mujoco.MjrContext(gl_model, mujoco.mjtFontScale.mjFONTSCALE_50)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self.con)
        if self.con.offWidth < layout.cols * layout.width or self.con.offHeight < layout.rows * layout.height:
            raise RuntimeError(
                f"the GL driver made a {self.con.offWidth}x{self.con.offHeight} framebuffer, "
                f"{layout.cols * layout.width}x{layout.rows * layout.height} was asked; pass a smaller max_tiles"
            )
        self.scene = mujoco.MjvScene(gl_model, maxgeom=max_geom)
        for flag, on in flags.scene_flags().items():
            self.scene.flags[flag] = on
        self.option = mujoco.MjvOption()
        self.cam = mujoco.MjvCamera()
        camera.apply(gl_model, self.cam)
        self.culler = _MeshCuller(gl_model, layout.width / layout.height) if cull else None
        self.viewports = [
            mujoco.MjrRect(c * layout.width, r * layout.height, layout.width, layout.height)
            for r, c in (divmod(i, layout.cols) for i in range(layout.tiles))
        ]
        # readback buffer: the GL framebuffer's rows bottom-up, tightly packed
        self.pixels = np.empty(layout.rows * layout.cols * layout.height * layout.width * 3, np.uint8)

    def render(self, models: Sequence[mujoco.MjModel], datas: Sequence[mujoco.MjData], out: np.ndarray) -> None:
        """Frames of ``datas`` (each drawn with its ``models`` entry) into ``out`` (``[len(datas), H, W, 3]``)."""
        assert self.con is not None
        lay, cam, track = self.layout, self.cam, self.camera.trackbodyid
        h, w = lay.height, lay.width
        for start in range(0, len(datas), lay.tiles):
            batch = datas[start:start + lay.tiles]
            for model, data, viewport in zip(models[start:start + lay.tiles], batch, self.viewports):
                if track >= 0:
                    cam.lookat[:] = data.subtree_com[track]
                if len(self.hidden):
                    _update_scene_hiding(model, data, self.option, cam, self.scene, self.hidden)
                else:
                    mujoco.mjv_updateScene(model, data, self.option, None, cam, mujoco.mjtCatBit.mjCAT_ALL, self.scene)
                if self.culler is not None:
                    self.culler.cull(self.scene, data)
                mujoco.mjr_render(viewport, self.scene, self.con)
            n = len(batch)
            cols = min(n, lay.cols)
            rows = math.ceil(n / cols)
            pixels = self.pixels[: rows * h * cols * w * 3].reshape(rows * h, cols * w, 3)
            mujoco.mjr_readPixels(pixels, None, mujoco.MjrRect(0, 0, cols * w, rows * h), self.con)
            for i in range(n):
                r, c = divmod(i, lay.cols)
                # GL rows run bottom-up: reversing a tile's rows is the only copy of the frame
                np.copyto(out[start + i], pixels[r * h:(r + 1) * h, c * w:(c + 1) * w][::-1])

    def free(self) -> None:
        if self.con is not None:
            self.con.free()
            self.con = None
        if self.gl is not None:
            self.gl.free()
            self.gl = None


#: the group hidden geoms and sites are moved to while a scene is built (a default ``MjvOption`` hides it)
_HIDDEN_GROUP = 5


@dataclass(frozen=True)
class _Hidden:
    """Geoms and sites a pool does not draw."""

    geoms: np.ndarray
    sites: np.ndarray

    def __len__(self) -> int:
        return len(self.geoms) + len(self.sites)


def _update_scene_hiding(model: mujoco.MjModel, data: mujoco.MjData, option: mujoco.MjvOption,
                         cam: mujoco.MjvCamera, scene: mujoco.MjvScene, hidden: _Hidden) -> None:
    """``mjv_updateScene`` leaving out the geoms and sites ``hidden``.

    They are moved to a group the option does not draw for the duration of the call, so they
    cast no shadow and show in no reflection, exactly as if they were not in the model. Groups
    are visual only (the physics never reads them), and the caller's model is restored before
    this returns.
    """
    geom_groups, site_groups = model.geom_group[hidden.geoms].copy(), model.site_group[hidden.sites].copy()
    model.geom_group[hidden.geoms] = _HIDDEN_GROUP
    model.site_group[hidden.sites] = _HIDDEN_GROUP
    try:
        mujoco.mjv_updateScene(model, data, option, None, cam, mujoco.mjtCatBit.mjCAT_ALL, scene)
    finally:
        model.geom_group[hidden.geoms] = geom_groups
        model.site_group[hidden.sites] = site_groups


def body_names(names: Sequence[str], what: str) -> tuple[str, ...]:
    """``names`` as a tuple, or a ``TypeError`` naming ``what`` unless it is a list or tuple of str."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{what} must be a list of body names, got {names!r}")
    return tuple(names)


def subtree_elements(model: mujoco.MjModel, hide_bodies: Sequence[str] = (),
                     show_bodies: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Ids of the geoms and of the sites in the subtrees of bodies ``hide_bodies`` but not in
    those of ``show_bodies``.

    E.g. ``subtree_elements(sawyer, ["base"], ["hand"])``: the arm without its gripper.
    """
    def roots(names: Sequence[str], what: str) -> list[int]:
        names = body_names(names, what)
        ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, n) for n in names]
        missing = [n for n, i in zip(names, ids) if i < 0]
        if missing:
            known = [model.body(i).name for i in range(model.nbody)]
            raise ValueError(f"{what}: the model has no body named {missing}; its bodies are {known}")
        return ids

    def inside(ids: list[int]) -> np.ndarray:
        # a body lies in a subtree when the walk from it towards the world meets the subtree's root
        member = np.zeros(model.nbody, bool)
        member[ids] = True
        for b in range(1, model.nbody):  # parents come before their children in MuJoCo's body order
            member[b] |= member[model.body_parentid[b]]
        return member

    hidden = inside(roots(hide_bodies, "hide_bodies")) & ~inside(roots(show_bodies, "show_bodies"))
    return np.flatnonzero(hidden[model.geom_bodyid]), np.flatnonzero(hidden[model.site_bodyid])


class _MeshCuller:
    """Skips mesh geoms whose bounding box lies outside the view frustum.

    Vertex work is most of a frame's cost on llvmpipe, and GL clips only after transforming
    every vertex: on Meta-World's Sawyer, the base, head and upper links (up to 37 k of 68 k
    mesh triangles) are outside the usual camera views. A mesh scene geom with
    ``dataid = -1`` is not drawn by ``mjr_render``. Skipping geoms that are entirely outside
    the frustum leaves the image unchanged as long as nothing draws off-screen geoms into it:
    the pool only culls with shadows and reflections off.
    """

    def __init__(self, model: mujoco.MjModel, aspect: float) -> None:
        self.aspect = aspect
        self.any_mesh = bool(np.any(model.geom_type == mujoco.mjtGeom.mjGEOM_MESH))
        # oriented bounding box in the geom frame (centre, half sizes), padded for float32 rounding
        self.box_center = model.geom_aabb[:, :3].copy()
        self.box_half = model.geom_aabb[:, 3:] * 1.01 + 1e-4
        #: scene slot and model geom id of each drawn mesh geom, for the last scene layout
        self.slots: np.ndarray = np.empty(0, np.int64)
        self.geoms: np.ndarray = np.empty(0, np.int64)
        self.ngeom = -1

    def _index(self, scene: mujoco.MjvScene) -> None:
        """Where the model's mesh geoms sit in the scene (they move only if the scene's content does)."""
        mesh, obj = mujoco.mjtGeom.mjGEOM_MESH, mujoco.mjtObj.mjOBJ_GEOM
        slots, geoms = [], []
        for i in range(scene.ngeom):
            g = scene.geoms[i]
            if g.type == mesh and g.objtype == obj and g.dataid >= 0:
                slots.append(i)
                geoms.append(g.objid)
        self.slots, self.geoms, self.ngeom = np.array(slots, np.int64), np.array(geoms, np.int64), scene.ngeom

    def _planes(self, scene: mujoco.MjvScene) -> tuple[np.ndarray, np.ndarray]:
        """The frustum as planes ``normal . p + offset >= 0`` (world frame): [6, 3] and [6]."""
        c0, c1 = scene.camera[0], scene.camera[1]
        eye = 0.5 * (np.asarray(c0.pos, np.float64) + np.asarray(c1.pos, np.float64))
        forward, up = np.asarray(c0.forward, np.float64), np.asarray(c0.up, np.float64)
        right = np.cross(forward, up)
        near, far = float(c0.frustum_near), float(c0.frustum_far)
        bottom, top = float(c0.frustum_bottom), float(c0.frustum_top)
        # mjr_render widens the frustum to the viewport's aspect ratio unless frustum_width is set
        half = float(c0.frustum_width) or 0.5 * self.aspect * (top - bottom)
        left, right_edge = float(c0.frustum_center) - half, float(c0.frustum_center) + half
        if c0.orthographic:
            normals = np.array([right, -right, up, -up, forward, -forward])
            limits = np.array([-left, right_edge, -bottom, top, -near, far])
        else:
            # side planes through the eye, e.g. left: x * near - left * z >= 0 in camera axes
            normals = np.array([near * right - left * forward, right_edge * forward - near * right,
                                near * up - bottom * forward, top * forward - near * up, forward, -forward])
            normals[:4] /= np.linalg.norm(normals[:4], axis=1, keepdims=True)
            limits = np.array([0.0, 0.0, 0.0, 0.0, -near, far])
        return normals, limits - normals @ eye

    def cull(self, scene: mujoco.MjvScene, data: mujoco.MjData) -> None:
        if not self.any_mesh:
            return
        if scene.ngeom != self.ngeom or any(scene.geoms[int(i)].objid != g for i, g in zip(self.slots, self.geoms)):
            self._index(scene)
        if not len(self.slots):
            return
        normals, offsets = self._planes(scene)
        rot = data.geom_xmat[self.geoms].reshape(-1, 3, 3)  # columns: the geom's axes in the world
        center = data.geom_xpos[self.geoms] + np.einsum("gij,gj->gi", rot, self.box_center[self.geoms])
        # box extent along each plane normal: sum over the box axes of |normal . axis| * half size
        extent = np.einsum("gpk,gk->gp", np.abs(np.einsum("pi,gik->gpk", normals, rot)), self.box_half[self.geoms])
        outside = np.any(center @ normals.T + offsets < -extent, axis=1)
        for i in self.slots[outside]:
            scene.geoms[int(i)].dataid = -1


@dataclass(frozen=True)
class _CameraSetup:
    """A ``Camera`` resolved against a model: what to write into the ``mjvCamera``."""

    fixedcamid: int  # >= 0: fixed model camera
    default_free: bool  # mjv_defaultFreeCamera
    trackbodyid: int
    camera: Camera

    @classmethod
    def resolve(cls, model: mujoco.MjModel, camera: Camera | str | int | None) -> "_CameraSetup":
        if camera is None:
            camera = Camera(name=-1)
        elif isinstance(camera, (str, int, np.integer)) and not isinstance(camera, bool):
            camera = Camera(name=camera)
        elif not isinstance(camera, Camera):
            raise TypeError(f"camera must be a Camera, a camera name or id, or None; got {type(camera).__name__}")
        name = camera.name
        if isinstance(name, str):
            cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
            if cam_id < 0:
                names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
                raise ValueError(f"the model has no camera named {name!r}; its cameras are {names} "
                                 "(or use Camera(name=None, ...) for a free camera)")
            return cls(cam_id, False, -1, camera)
        if isinstance(name, int):
            if not -1 <= name < model.ncam:
                raise ValueError(f"camera id {name} is out of range [-1, {model.ncam}) for this model "
                                 "(-1 = the model's default free camera)")
            return cls(name, name == -1, -1, camera)
        if not -1 <= camera.trackbodyid < model.nbody:
            raise ValueError(f"Camera.trackbodyid must be -1 (no tracking) or a body id in [0, {model.nbody}), "
                             f"got {camera.trackbodyid}")
        return cls(-1, False, int(camera.trackbodyid), camera)

    def apply(self, model: mujoco.MjModel, cam: mujoco.MjvCamera) -> None:
        if self.default_free:
            mujoco.mjv_defaultFreeCamera(model, cam)
        elif self.fixedcamid >= 0:
            cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
            cam.fixedcamid = self.fixedcamid
        else:
            # tracking is done by moving lookat per frame, so the type stays FREE (MuJoCo's
            # own TRACKING type smooths over successive calls, i.e. depends on render history)
            cam.type = mujoco.mjtCamera.mjCAMERA_FREE
            cam.fixedcamid = -1
            cam.trackbodyid = -1
            cam.lookat[:] = self.camera.lookat
            cam.distance = self.camera.distance
            cam.azimuth = self.camera.azimuth
            cam.elevation = self.camera.elevation


def _planes_lit_uniformly(model: mujoco.MjModel) -> bool:
    """Whether MuJoCo's per-vertex lighting is the same at every vertex of every plane.

    True when all lights are directional (no falloff) and no specular term reaches a plane:
    MuJoCo lights with a local viewer, so specular highlights vary across a plane and need
    its fine grid. Geoms without a material get MuJoCo's default specular 0.5.
    """
    planes = np.flatnonzero(model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE)
    if not len(planes) or not np.all(model.light_directional):
        return not len(planes)
    light_specular = [model.light_specular[i] for i in range(model.nlight) if model.light_active[i]]
    if model.vis.headlight.active:
        light_specular.append(model.vis.headlight.specular)
    if not np.any(np.asarray(light_specular)):
        return True
    matid = model.geom_matid[planes]
    if model.nmat == 0:  # np.where below would index an empty array
        return False
    specular = np.where(matid >= 0, model.mat_specular[np.maximum(matid, 0)], 0.5)
    return not np.any(specular)


def _shutdown(workers: list[_Worker]) -> None:
    while workers:
        workers.pop().close()


_live_pools: "weakref.WeakSet[RendererPool]" = weakref.WeakSet()
_exit_hook_registered = False


def _close_all() -> None:
    for pool in list(_live_pools):
        pool.close()


def _forget_pools_in_child() -> None:
    """After ``fork`` the child has the pools but none of their threads: abandon them."""
    for pool in list(_live_pools):
        pool._workers.clear()
    _live_pools.clear()


os.register_at_fork(after_in_child=_forget_pools_in_child)


def _register_exit_hook() -> None:
    """Close live pools at exit, before the GL backends' own exit hooks (atexit runs LIFO).

    Registered after the first GL context exists, i.e. after ``mujoco.egl`` registered its
    ``eglTerminate``; freeing contexts after that raises errors at exit.
    """
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(_close_all)
        _exit_hook_registered = True


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


class RendererPool:
    """Renders ``[B, height, width, 3]`` uint8 frames of B ``MjData`` of one model, headless.

    Args:
        model: the ``MjModel`` every ``MjData`` passed to ``render`` belongs to (not modified;
            with ``hide_bodies``, geom groups are changed while a scene is built and restored).
        height, width: frame size in pixels.
        camera: a ``Camera``, a model camera's name or id, or ``None`` (= ``-1``: the model's
            default free camera).
        flags: ``SceneFlags``: which effects are drawn (``SceneFlags.fast()`` for the fastest
            frames, ``SceneFlags.quality()`` for MuJoCo's/gymnasium's defaults).
        max_tiles: frames per framebuffer pass (per GL context); default
            ``DEFAULT_MAX_TILES``, reduced to what the GL implementation's largest framebuffer
            holds. Larger batches are rendered in several passes.
        threads: GL contexts, each on its own worker thread (default 1: GL work is serialised
            process-wide, see the module docstring, so more contexts do not draw at once).
        backend: ``"egl"``, ``"osmesa"`` or ``"glfw"``; default ``MUJOCO_GL`` if set, else EGL
            then OSMesa.
        max_geom: capacity of each scene in geoms.
        cull: skip mesh geoms outside the view (same image; only done with shadows and
            reflections off, which can show off-screen geoms).
        hide_bodies, show_bodies: the geoms of the subtrees of ``hide_bodies``, except those in
            the subtrees of ``show_bodies``, are not drawn, nor their sites (no shadow, no reflection):
            e.g. a robot's arm (``["base"]``, ``["hand"]`` on Meta-World's Sawyer), so that a reward
            learned from frames sees the objects and the gripper rather than the arm's pose.
    """

    def __init__(self, model: mujoco.MjModel, height: int, width: int, camera: Camera | str | int | None = None,
                 flags: SceneFlags = SceneFlags(), max_tiles: int | None = None, *, threads: int | None = None,
                 backend: str | None = None, max_geom: int = 10_000, cull: bool = True,
                 hide_bodies: Sequence[str] = (), show_bodies: Sequence[str] = ()) -> None:
        if not isinstance(model, mujoco.MjModel):
            raise TypeError(f"model must be a mujoco.MjModel, got {type(model).__name__}")
        self.height = _positive_int(height, "height")
        self.width = _positive_int(width, "width")
        if not isinstance(flags, SceneFlags):
            raise TypeError(f"flags must be a SceneFlags, got {type(flags).__name__}")
        max_tiles = DEFAULT_MAX_TILES if max_tiles is None else _positive_int(max_tiles, "max_tiles")
        threads = 1 if threads is None else _positive_int(threads, "threads")
        max_geom = _positive_int(max_geom, "max_geom")
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
        self.model = model
        self.flags = flags
        self.camera = _CameraSetup.resolve(model, camera)
        #: ids of the geoms and of the sites this pool does not draw
        self.hidden_geoms, self.hidden_sites = subtree_elements(model, hide_bodies, show_bodies)
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._workers)
        self._finalizer.atexit = False  # _close_all does it, in the right order
        try:
            first = _Worker()
            self._workers.append(first)
            self.backend, max_size = first.submit(first.open_gl, _backend_order(backend)).result()
            _register_exit_hook()
            _live_pools.add(self)
            self.layout = _layout(self.height, self.width, max_tiles, max_size)
            for _ in range(threads - 1):
                self._workers.append(_Worker())
            opened = [w.submit(w.open_gl, [self.backend]) for w in self._workers[1:]]
            for future in opened:
                future.result()
            gl_model = self._gl_model()
            # off-screen geoms show in shadows and reflections: culling is exact only without them
            self.cull = bool(cull) and not flags.shadows and not flags.reflections
            built = [w.submit(w.setup, gl_model, self.layout, flags, self.camera, max_geom, self.cull,
                              _Hidden(self.hidden_geoms, self.hidden_sites))
                     for w in self._workers]
            for future in built:
                future.result()
        except BaseException:
            self.close()
            raise

    def _gl_model(self) -> mujoco.MjModel:
        """A copy of the model with what the GL context is built from adjusted."""
        gl_model = copy.copy(self.model)
        gl_model.vis.global_.offwidth = self.layout.cols * self.width
        gl_model.vis.global_.offheight = self.layout.rows * self.height
        if not self.flags.multisample:
            gl_model.vis.quality.offsamples = 0
        if not self.flags.shadows:
            # MjrContext allocates the shadow map anyway: 4096^2 takes ~0.2 s per context
            gl_model.vis.quality.shadowsize = _UNUSED_SHADOW_SIZE
        elif self.flags.shadow_size is not None:
            gl_model.vis.quality.shadowsize = self.flags.shadow_size
        coarse = self.flags.coarse_planes
        if coarse is None:
            coarse = not self.flags.shadows and _planes_lit_uniformly(self.model)
        if coarse:
            planes = np.flatnonzero(gl_model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE)
            # MuJoCo grids a finite plane in cells of geom_size[2]; a spacing as large as the
            # plane leaves 2x2 quads (infinite planes, size 0, are gridded by texrepeat instead)
            sizes = gl_model.geom_size[planes, :2].max(axis=1)
            gl_model.geom_size[planes, 2] = np.maximum(gl_model.geom_size[planes, 2], sizes)
        return gl_model

    @property
    def threads(self) -> int:
        return len(self._workers)

    def render(
        self,
        datas: Sequence[mujoco.MjData],
        out: torch.Tensor | None = None,
        models: Sequence[mujoco.MjModel] | None = None,
    ) -> torch.Tensor:
        """uint8 [len(datas), height, width, 3], row 0 = top of the image (like gymnasium rgb_array).

        ``datas``: a list/tuple of ``MjData`` of this pool's model, with current kinematics
        (after ``mj_forward`` / ``mj_step``). ``out``: optional CPU uint8 tensor of that shape to
        write into (returned). ``models``: one ``MjModel`` per data, copies of the pool's model
        whose colours or sizes were randomised per env (default: the pool's model for all).
        """
        datas = self._check_datas(datas)
        if models is None:
            models = [self.model] * len(datas)
        elif len(models) != len(datas) or not all(isinstance(m, mujoco.MjModel) for m in models):
            raise ValueError(f"models must be one mujoco.MjModel per data ({len(datas)}), got {len(models)} items")
        out = self._check_out(out, len(datas))
        frames = out.numpy()
        with self._lock:
            if not self._workers:
                raise RuntimeError("RendererPool.render called after close()")
            chunks = np.array_split(np.arange(len(datas)), len(self._workers))
            jobs = [
                w.submit(w.render, models[c[0]:c[-1] + 1], datas[c[0]:c[-1] + 1], frames[c[0]:c[-1] + 1])
                for w, c in zip(self._workers, chunks) if len(c)
            ]
            for job in jobs:
                job.result()
        return out

    def _check_datas(self, datas: Sequence[mujoco.MjData]) -> Sequence[mujoco.MjData]:
        if isinstance(datas, mujoco.MjData):
            raise TypeError("datas must be a sequence of MjData; for one env pass [data]")
        if not isinstance(datas, (list, tuple)):
            raise TypeError(f"datas must be a list or tuple of mujoco.MjData, got {type(datas).__name__}")
        if not datas:
            raise ValueError("datas is empty: pass at least one MjData")
        m = self.model
        for i, d in enumerate(datas):
            if not isinstance(d, mujoco.MjData):
                raise TypeError(f"datas[{i}] must be a mujoco.MjData, got {type(d).__name__}")
            got = (d.qpos.shape[0], d.xpos.shape[0], d.geom_xpos.shape[0])
            if got != (m.nq, m.nbody, m.ngeom):
                raise ValueError(
                    f"datas[{i}] belongs to a different model: (nq, nbody, ngeom) = {got}, the pool's model has "
                    f"{(m.nq, m.nbody, m.ngeom)}; make one RendererPool per model"
                )
        return datas

    def _check_out(self, out: torch.Tensor | None, n: int) -> torch.Tensor:
        shape = (n, self.height, self.width, 3)
        if out is None:
            return torch.empty(shape, dtype=torch.uint8)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"out must be a torch.Tensor, got {type(out).__name__}")
        if out.dtype != torch.uint8:
            raise TypeError(f"out must be a uint8 tensor, got {out.dtype}; allocate it with dtype=torch.uint8")
        if out.device.type != "cpu":
            raise ValueError(f"out must be on the CPU, got {out.device}; render to the CPU, then .to(device)")
        if tuple(out.shape) != shape:
            raise ValueError(f"out must have shape [len(datas), height, width, 3] = {list(shape)}, "
                             f"got {list(out.shape)}")
        return out

    def close(self) -> None:
        """Free the GL contexts and stop the worker threads (idempotent)."""
        with self._lock:
            self._finalizer()

    def __enter__(self) -> "RendererPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

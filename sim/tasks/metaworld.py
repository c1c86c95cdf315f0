"""Meta-World v3 manipulation tasks (Sawyer arm): ``metaworld/<task>``, ``metaworld/mt10``, ``metaworld/mt50``.

Every MT50 env is registered without its ``-v3`` suffix (``metaworld/door-open``), with a
language instruction; ``metaworld/mt10`` / ``metaworld/mt50`` assign their tasks to envs
round-robin (env ``i`` runs task ``i % 10``), each env with its own task's instruction.
They run on gymnasium (``sim.gym_vec.GymVecEnv``): ``backend="gym"`` is the only backend.

Observations are Meta-World's 39 numbers with the goal visible (hand xyz, gripper opening,
two object poses, the same 18 of the previous step, goal xyz: the multi-task benchmarks'
setting, which its scripted experts need). Actions: 4 numbers in [-1, 1] (hand xyz delta,
gripper effort). ``info["success"]`` is Meta-World's success flag; episodes end by
truncation after ``max_episode_steps`` (Meta-World's 500), never by termination.

Goal randomisation. Meta-World draws object and goal positions from each task's own box
(``_random_reset_space``) at reset; its benchmarks (MT1/MT10/MT50) pre-draw 50 such vectors
per task from the global NumPy generator and pick one per episode, and its env ignores
``reset(seed=...)`` (``env.seed()`` is how it is seeded). Here ``reset(seed)`` seeds each env
with its own seed spawned from ``seed`` (``sim.vec_env.env_seeds``) and
  * ``goals="uniform"`` (default) draws fresh positions every episode from that env's seeded
    generator (Meta-World's ``seeded_rand_vec`` mode), so episodes never repeat;
  * ``goals="benchmark"`` uses Meta-World's 50 benchmark goals per task (``MT1`` / ``MT10``
    / ``MT50`` built with the factory's ``seed``) and picks one per episode with the env's
    generator, for numbers comparable with published multi-task results;
  * ``goals="fixed"`` uses one configuration for every env and episode (the first of Meta-World's
    MT1 goals for benchmark seed 0, whatever the env seed): Meta-World's original fixed
    single-task setting, where a reward learned from a few demonstrations of that scene applies.
Either way the same seed replays the same episodes.

Camera. Meta-World's ``corner*`` cameras are mounted upside down (their image up-vector
points at the floor), so frames from them come out rotated by 180 degrees. ``CAMERA`` is a
free camera instead (free cameras have no roll: frames are always world-up) looking at the
work area from the front right, 30 degrees down: the table top, the objects' start and goal
regions and the raised gripper stay in frame, and doors, drawers and windows are seen
obliquely so their motion shows. It is the default of every Meta-World task; pass
``camera=`` (a ``sim.mujoco.render.Camera`` or its fields, e.g. ``{"name": "corner3"}``) to
change it.

What the frames show of the robot. ``robot="visible"`` (default) draws the whole Sawyer;
``robot="gripper"`` draws only the gripper (the ``hand`` body and its fingers), leaving out the
pedestal, the arm's links and the head; ``robot="hidden"`` draws none of it. Only the frames
change (the physics and observations do not). A reward learned from frames of a few demos
scores what fills the frames, and the arm fills more of them than a drawer's travel does: with
the arm left out it has to score the objects and where the gripper is.

Where the hand can go. ``workspace={"low": xyz, "high": xyz}`` narrows the box the hand's target is
clipped to (Meta-World's ``mocap_low`` / ``mocap_high``, by default the task's ``hand_low`` /
``hand_high``: most of the table and half a metre above it). A camera close enough for a drawer's
travel to show at 64x64 does not see all of that box, and a policy trained on a reward learned
from frames can park the gripper outside the frame, where that reward scores the empty scene by
chance; a box the camera sees whole removes that way out. It must lie inside the task's own box
and contain the hand's start.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Mapping
from typing import Any

import gymnasium
import numpy as np

from sim.gym_vec import GymVecEnv
from sim.mujoco.render import SceneFlags
from sim.registry import register_task

#: MT50 task (Meta-World id without "-v3") -> language instruction
INSTRUCTIONS: dict[str, str] = {
    "assembly": "put the ring onto the peg",
    "basketball": "dunk the ball into the hoop",
    "bin-picking": "move the puck into the other bin",
    "box-close": "put the lid on the box",
    "button-press-topdown": "press the button down from above",
    "button-press-topdown-wall": "press the button down from above behind the wall",
    "button-press": "press the button",
    "button-press-wall": "press the button behind the wall",
    "coffee-button": "press the button of the coffee machine",
    "coffee-pull": "pull the mug out from under the coffee machine",
    "coffee-push": "push the mug under the coffee machine",
    "dial-turn": "turn the dial",
    "disassemble": "lift the ring off the peg",
    "door-close": "close the door",
    "door-lock": "lock the door",
    "door-open": "open the door",
    "door-unlock": "unlock the door",
    "hand-insert": "put the gripper into the hole",
    "drawer-close": "close the drawer",
    "drawer-open": "open the drawer",
    "faucet-open": "turn the faucet on",
    "faucet-close": "turn the faucet off",
    "hammer": "hammer the nail into the wall",
    "handle-press-side": "press the handle down from the side",
    "handle-press": "press the handle down",
    "handle-pull-side": "pull the handle up from the side",
    "handle-pull": "pull the handle up",
    "lever-pull": "pull the lever",
    "pick-place-wall": "pick up the puck and place it at the goal behind the wall",
    "pick-out-of-hole": "pick the puck up out of the hole",
    "pick-place": "pick up the puck and place it at the goal",
    "plate-slide": "slide the plate into the cabinet",
    "plate-slide-side": "slide the plate sideways into the cabinet",
    "plate-slide-back": "slide the plate back out of the cabinet",
    "plate-slide-back-side": "slide the plate sideways back out of the cabinet",
    "peg-insert-side": "insert the peg into the hole from the side",
    "peg-unplug-side": "pull the peg out of the hole sideways",
    "soccer": "push the ball into the goal",
    "stick-push": "use the stick to push the thermos to the goal",
    "stick-pull": "use the stick to pull the thermos to the goal",
    "push": "push the puck to the goal",
    "push-wall": "push the puck around the wall to the goal",
    "push-back": "pull the puck back to the goal",
    "reach": "move the gripper to the goal",
    "reach-wall": "move the gripper over the wall to the goal",
    "shelf-place": "put the puck on the shelf",
    "sweep-into": "sweep the puck into the hole",
    "sweep": "sweep the puck off the table",
    "window-open": "open the window",
    "window-close": "close the window",
}

#: Meta-World's MT10 tasks, in its order
MT10: tuple[str, ...] = (
    "reach", "push", "pick-place", "door-open", "drawer-open",
    "drawer-close", "button-press-topdown", "peg-insert-side", "window-open", "window-close",
)
#: multi-task set name -> tasks (env i runs tasks[i % len(tasks)])
TASK_SETS: dict[str, tuple[str, ...]] = {"mt10": MT10, "mt50": tuple(INSTRUCTIONS)}

#: Meta-World's horizon (``SawyerXYZEnv.max_path_length``)
MAX_EPISODE_STEPS = 500

#: default render camera (``sim.mujoco.render.Camera`` fields): free, world-up, see module docstring
#: skybox on, the table and floor planes drawn as 2 x 2 quads: ~10% more frames/s than MuJoCo's
#: plane grid and the same picture from ``CAMERA`` (``python -m bench.render``)
SCENE_FLAGS = SceneFlags(coarse_planes=True)

CAMERA: dict[str, Any] = {"lookat": (-0.05, 0.75, 0.15), "distance": 1.35, "azimuth": 125.0, "elevation": -30.0}

#: ``robot=`` option -> (bodies whose subtrees are not drawn, bodies within them drawn anyway)
ROBOT_VIEWS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "visible": ((), ()),
    "gripper": (("base",), ("hand",)),
    "hidden": (("base",), ()),
}

_OPTIONS = ("backend", "workers", "max_episode_steps", "goals", "camera", "scene_flags", "robot", "workspace")

#: a hand box: (low xyz, high xyz) in metres, world frame
Workspace = tuple[tuple[float, ...], tuple[float, ...]]


def tasks_of(name: str) -> tuple[str, ...]:
    """Meta-World tasks (without ``-v3``) of registry name ``metaworld/<task>`` or ``metaworld/mt10|mt50``."""
    if not isinstance(name, str) or not name.startswith("metaworld/"):
        raise ValueError(f"{name!r} is not a Meta-World task name (metaworld/<task>, metaworld/mt10, metaworld/mt50)")
    short = name.removeprefix("metaworld/")
    if short in TASK_SETS:
        return TASK_SETS[short]
    if short not in INSTRUCTIONS:
        raise ValueError(f"unknown Meta-World task {name!r}; the tasks are metaworld/<one of {sorted(INSTRUCTIONS)}>"
                         " and the sets metaworld/mt10, metaworld/mt50")
    return (short,)


class MetaWorldEnv(gymnasium.Wrapper[Any, Any, Any, Any]):
    """One Meta-World v3 env: goal in the observation, seeded per-episode goals, settable horizon.

    ``reset(seed=s)`` reseeds the env's generator (Meta-World's own ``reset`` ignores ``seed``);
    ``goal_set`` (Meta-World ``Task`` objects) switches from uniform goal sampling to picking
    one of those goals per episode. ``workspace`` replaces the box the hand's target is clipped
    to (Meta-World's ``mocap_low`` / ``mocap_high``); see ``check_workspace``.
    """

    def __init__(self, task: str, max_episode_steps: int = MAX_EPISODE_STEPS, goal_set: tuple[Any, ...] = (),
                 workspace: Workspace | None = None) -> None:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS
        from metaworld.types import Task

        if f"{task}-v3" not in ALL_V3_ENVIRONMENTS:
            raise ValueError(f"unknown Meta-World task {task!r}; known: {sorted(INSTRUCTIONS)}")
        env = ALL_V3_ENVIRONMENTS[f"{task}-v3"]()
        # the instance's horizon: SawyerXYZEnv truncates (and refuses further steps) there
        env.max_path_length = int(max_episode_steps)
        if workspace is not None:
            check_workspace(task, env, workspace)
            env.mocap_low, env.mocap_high = (np.array(b, dtype=np.float64) for b in workspace)
        if goal_set:
            env.set_task(goal_set[0])
        else:
            # set_task is Meta-World's one public switch to a visible goal; rand_vec is unused once
            # _freeze_rand_vec is off, and seeded_rand_vec makes each reset draw from env.np_random
            env.set_task(Task(env_name=f"{task}-v3", data=pickle.dumps(
                {"env_cls": type(env), "rand_vec": None, "partially_observable": False})))
            env._freeze_rand_vec = False
            env.seeded_rand_vec = True
        super().__init__(env)
        # the constructor's space hides the goal (zero bounds); this one is the visible-goal space
        self.observation_space = env.sawyer_observation_space
        self._goal_set = goal_set
        self._rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        env: Any = self.env.unwrapped
        if seed is not None:
            env.seed(int(seed))
            self._rng = np.random.default_rng(int(seed))
        if self._goal_set:
            env.set_task(self._goal_set[int(self._rng.integers(len(self._goal_set)))])
        return self.env.reset(options=options)


def parse_workspace(value: Any) -> Workspace:
    """``{"low": [x, y, z], "high": [x, y, z]}`` (or ``(low, high)``) as two xyz tuples, checked."""
    if isinstance(value, Mapping):
        if set(value) != {"low", "high"}:
            raise ValueError(f"workspace must have exactly the keys 'low' and 'high' (xyz corners in metres), "
                             f"got {sorted(value)}")
        value = (value["low"], value["high"])
    try:
        low, high = (np.asarray(b, dtype=np.float64) for b in value)
    except (TypeError, ValueError):
        raise ValueError(f"workspace must be {{'low': [x, y, z], 'high': [x, y, z]}}, got {value!r}") from None
    if low.shape != (3,) or high.shape != (3,) or not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError(f"workspace corners must be 3 finite numbers each (x, y, z), got low={low}, high={high}")
    if not (low < high).all():
        raise ValueError(f"workspace low must be below high on every axis, got low={low}, high={high}")
    return tuple(low.tolist()), tuple(high.tolist())


def check_workspace(task: str, env: Any, workspace: Workspace) -> None:
    """Refuses a hand box outside ``task``'s own (Meta-World's ``mocap_low`` / ``mocap_high``) or
    without the hand's start: the first would let the hand go where the task never does, the
    second would move it at the first step whatever the policy does."""
    low, high = (np.asarray(b) for b in workspace)
    if (low < env.mocap_low - 1e-9).any() or (high > env.mocap_high + 1e-9).any():
        raise ValueError(f"{task}: workspace {low.tolist()}..{high.tolist()} reaches outside the task's own hand "
                         f"box {env.mocap_low.tolist()}..{env.mocap_high.tolist()}; shrink it")
    start = np.asarray(env.hand_init_pos)
    if (start < low).any() or (start > high).any():
        raise ValueError(f"{task}: workspace {low.tolist()}..{high.tolist()} leaves out the hand's start "
                         f"{start.tolist()}; widen it to include that point")


def _benchmark_goals(name: str, tasks: tuple[str, ...], seed: int) -> dict[str, tuple[Any, ...]]:
    """Meta-World's 50 benchmark goals per task, as its MT1 / MT10 / MT50 draw them for ``seed``."""
    import metaworld

    short = name.removeprefix("metaworld/")
    bench: Any
    if short == "mt10":
        bench = metaworld.MT10(seed=seed)
    elif short == "mt50":
        bench = metaworld.MT50(seed=seed)
    else:
        bench = metaworld.MT1(f"{tasks[0]}-v3", seed=seed)
    return {t: tuple(g for g in bench.train_tasks if g.env_name == f"{t}-v3") for t in tasks}


def make_metaworld(name: str, num_envs: int, seed: int, render_size: tuple[int, int], **kwargs: Any) -> GymVecEnv:
    """``num_envs`` envs of Meta-World task (or task set) ``name`` as a ``GymVecEnv``, reset with ``seed``.

    Options: ``backend`` ("gym", the only one), ``workers`` (see ``GymVecEnv``; default
    automatic), ``max_episode_steps`` (default 500), ``goals`` ("uniform", "benchmark" or "fixed", see
    the module docstring), ``camera`` (a ``sim.mujoco.render.Camera`` or its fields; default
    ``CAMERA``), ``scene_flags`` (``SceneFlags``; default ``SCENE_FLAGS``), ``robot``
    ("visible", "gripper" or "hidden": what frames show of the Sawyer, see the module docstring),
    ``workspace`` (``{"low": xyz, "high": xyz}``: the box the hand moves in, inside the task's own;
    default the task's own, see the module docstring).
    """
    tasks = tasks_of(name)
    unknown = sorted(set(kwargs) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"{name} got unknown option(s) {unknown}; Meta-World tasks accept {list(_OPTIONS)}")
    backend = kwargs.get("backend", "gym")
    if backend not in (None, "gym"):
        raise ValueError(f"Meta-World runs only on gymnasium: pass backend='gym' (or leave it out), got {backend!r}")
    max_steps = kwargs.get("max_episode_steps", MAX_EPISODE_STEPS)
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_episode_steps must be a positive int (Meta-World uses 500), got {max_steps!r}")
    goals = kwargs.get("goals", "uniform")
    if goals not in ("uniform", "benchmark", "fixed"):
        raise ValueError(f"goals must be 'uniform' (fresh random goals), 'benchmark' (Meta-World's 50) or 'fixed' "
                         f"(one configuration), got {goals!r}")
    robot = kwargs.get("robot", "visible")
    if robot not in ROBOT_VIEWS:
        raise ValueError(f"robot must be one of {list(ROBOT_VIEWS)} (what frames show of the Sawyer), got {robot!r}")
    hide_bodies, show_bodies = ROBOT_VIEWS[robot]
    workspace = kwargs.get("workspace")
    if workspace is not None:
        workspace = parse_workspace(workspace)
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        for t in tasks:  # here, not in a worker process, so a bad box is a plain error at construction
            probe = ALL_V3_ENVIRONMENTS[f"{t}-v3"]()
            try:
                check_workspace(f"metaworld/{t}", probe, workspace)
            finally:
                probe.close()
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if goals == "benchmark":
        goal_sets = _benchmark_goals(name, tasks, int(seed))
    elif goals == "fixed":  # independent of the env seed: training, evaluation and demos share it
        goal_sets = {t: g[:1] for t, g in _benchmark_goals(name, tasks, 0).items()}
    else:
        goal_sets = {t: () for t in tasks}
    return GymVecEnv(
        [functools.partial(MetaWorldEnv, t, int(max_steps), goal_sets[t], workspace) for t in tasks],
        num_envs,
        seed=seed,
        render_size=render_size,
        instructions=[INSTRUCTIONS[t] for t in tasks],
        task_names=[f"metaworld/{t}" for t in tasks],
        workers=kwargs.get("workers"),
        camera=kwargs.get("camera") or CAMERA,
        scene_flags=kwargs.get("scene_flags") or SCENE_FLAGS,
        hide_bodies=hide_bodies,
        show_bodies=show_bodies,
    )


for _task, _instruction in INSTRUCTIONS.items():
    register_task(f"metaworld/{_task}", make_metaworld, instruction=_instruction, family="metaworld")
for _set, _members in TASK_SETS.items():
    register_task(
        f"metaworld/{_set}", make_metaworld,
        instruction=f"{_set.upper()}: {len(_members)} Meta-World tasks, one instruction per env (VecEnv.instructions)",
        family="metaworld",
    )

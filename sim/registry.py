"""Task names -> VecEnv factories, and the one public constructor ``make_env``.

Task families register themselves when their module is imported; the registry imports the
family modules on first use (Meta-World's, the heaviest, only then).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any, Protocol

from sim.vec_env import VecEnv, check_env_args

#: modules whose import registers a task family
_FAMILY_MODULES = ("sim.tasks.humanoid", "sim.tasks.gym_mujoco", "sim.tasks.metaworld", "sim.tasks.toy")


class TaskFactory(Protocol):
    def __call__(
        self, name: str, num_envs: int, seed: int, render_size: tuple[int, int], **kwargs: Any
    ) -> VecEnv: ...


@dataclass(frozen=True)
class TaskEntry:
    name: str
    factory: TaskFactory
    #: default language instruction ("open the door"); multi-task sets give one per env
    instruction: str
    family: str


_TASKS: dict[str, TaskEntry] = {}
_loaded = False


def register_task(name: str, factory: TaskFactory, *, instruction: str, family: str) -> None:
    """Make ``make_env(name, ...)`` call ``factory``. Re-registering a name is an error."""
    if name in _TASKS and _TASKS[name].factory is not factory:
        raise ValueError(f"task {name!r} is already registered by family {_TASKS[name].family!r}")
    _TASKS[name] = TaskEntry(name, factory, instruction, family)


def _load_families() -> None:
    global _loaded
    if not _loaded:
        for module in _FAMILY_MODULES:
            importlib.import_module(module)
        _loaded = True


def list_tasks() -> list[str]:
    """Every registered task name, sorted."""
    _load_families()
    return sorted(_TASKS)


def get_task(name: str) -> TaskEntry:
    """The registry entry of ``name``; an unknown name raises ``ValueError`` with suggestions."""
    _load_families()
    if not isinstance(name, str):
        raise TypeError(f"task name must be a str, got {type(name).__name__}")
    if name not in _TASKS:
        close = difflib.get_close_matches(name, _TASKS, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"unknown task {name!r}.{hint} sim.list_tasks() lists the {len(_TASKS)} registered tasks; "
            "any other gymnasium id runs with make_env(name, backend='gym')."
        )
    return _TASKS[name]


def make_env(
    name: str,
    num_envs: int = 1,
    seed: int = 0,
    render_size: tuple[int, int] = (224, 224),
    backend: str | None = None,
    **kwargs: Any,
) -> VecEnv:
    """Build ``num_envs`` copies of task ``name`` as one ``VecEnv``, reset with ``seed``.

    ``render_size`` is (height, width) of ``render()`` frames. ``backend="gym"`` wraps any
    gymnasium id with ``sim.gym_vec.GymVecEnv`` (worker processes or in-process), even for
    tasks that also have a native implementation; ``None`` picks the task's own backend.
    Extra keyword arguments go to the task's factory (e.g. ``randomize=`` on native tasks).
    """
    num_envs, seed, render_size = check_env_args(num_envs, seed, render_size)
    if backend not in (None, "native", "gym"):
        raise ValueError(f"backend must be None, 'native' or 'gym', got {backend!r}")
    if backend == "gym" and name not in list_tasks():
        from sim.gym_vec import GymVecEnv

        return GymVecEnv.from_id(name, num_envs=num_envs, seed=seed, render_size=render_size, **kwargs)
    entry = get_task(name)
    if backend is not None:
        kwargs["backend"] = backend
    return entry.factory(name, num_envs, seed, render_size, **kwargs)

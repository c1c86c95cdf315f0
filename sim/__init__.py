"""Batched MuJoCo simulation: the ``VecEnv`` interface, tasks, renderer pool and experts."""

from sim.registry import get_task, list_tasks, make_env, register_task
from sim.vec_env import BoxSpec, StepResult, VecEnv

# our native tasks are gymnasium environments too: gymnasium.make("embodied/humanoid-kneeling-v0")
import sim.tasks.humanoid  # noqa: E402,F401  (registers the tasks with gymnasium)

__all__ = ["BoxSpec", "StepResult", "VecEnv", "get_task", "list_tasks", "make_env", "register_task"]

"""Batched MuJoCo simulation: the ``VecEnv`` interface, tasks, renderer pool and experts."""

from sim.registry import get_task, list_tasks, make_env, register_task
from sim.vec_env import BoxSpec, StepResult, VecEnv

__all__ = ["BoxSpec", "StepResult", "VecEnv", "get_task", "list_tasks", "make_env", "register_task"]

"""Env-steps/s of our VecEnv against gymnasium's SyncVectorEnv and AsyncVectorEnv, in one run.

    python -m bench.envs [--seconds 2] [--envs 8 32] [--out PATH]

Tasks: Humanoid-v5 and HalfCheetah-v5 (ours: the native backend, C++ threads) and Meta-World
push (ours: the gymnasium backend, ``sim.gym_vec``). Every contender steps the same random
actions, uniform in 40% of the action range, with automatic resets; the clock runs over whole
``step`` calls after a warm-up. Target: the native backend at >= 1.6x the best gymnasium vector
env on every native task and env count.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import gymnasium
import numpy as np
import torch

import sim
from bench.common import print_table, write_json

TARGET = 1.6


def _actions(low: np.ndarray, high: np.ndarray, n: int, count: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    mid, half = (high + low) / 2, (high - low) / 2
    return [(mid + 0.4 * half * rng.uniform(-1, 1, (n, *low.shape))).astype(np.float32) for _ in range(count)]


def _rate(step: Callable[[np.ndarray], Any], actions: list[np.ndarray], n: int, seconds: float) -> float:
    for a in actions[:8]:
        step(a)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for a in actions[:16]:
            step(a)
        steps += 16
    return n * steps / (time.perf_counter() - start)


def _gym_rate(cls: type, make: Callable[[], gymnasium.Env], n: int, seconds: float) -> float:
    venv = cls([make] * n)
    try:
        venv.reset(seed=0)
        space = venv.single_action_space
        return _rate(venv.step, _actions(space.low, space.high, n), n, seconds)
    finally:
        venv.close()


def _ours_rate(task: str, n: int, seconds: float) -> float:
    with sim.make_env(task, num_envs=n, seed=0) as env:
        actions = [torch.from_numpy(a) for a in _actions(env.action_spec.low, env.action_spec.high, n)]
        return _rate(env.step, actions, n, seconds)  # type: ignore[arg-type]


def _metaworld_push() -> gymnasium.Env:
    import metaworld  # noqa: F401  (registers the Meta-World/* ids)

    return gymnasium.make("Meta-World/MT1", env_name="push-v3")


TASKS: list[tuple[str, str, Callable[[], gymnasium.Env], str]] = [
    ("Humanoid-v5", "Humanoid-v5", lambda: gymnasium.make("Humanoid-v5"), "native"),
    ("HalfCheetah-v5", "HalfCheetah-v5", lambda: gymnasium.make("HalfCheetah-v5"), "native"),
    ("Meta-World push", "metaworld/push", _metaworld_push, "gym"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement")
    parser.add_argument("--envs", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    rows, results = [], []
    for label, task, make, backend in TASKS:
        for n in args.envs:
            sync = _gym_rate(gymnasium.vector.SyncVectorEnv, make, n, args.seconds)
            async_ = _gym_rate(gymnasium.vector.AsyncVectorEnv, make, n, args.seconds)
            ours = _ours_rate(task, n, args.seconds)
            best = max(sync, async_)
            ratio = ours / best
            met = "yes" if ratio >= TARGET else "no"
            rows.append([label, n, backend, round(sync), round(async_), round(ours), f"{ratio:.2f}x",
                         met if backend == "native" else "-"])
            results.append({"task": label, "num_envs": n, "backend": backend, "sync": sync, "async": async_,
                            "ours": ours, "ratio_vs_best_gymnasium": ratio,
                            "target_met": ratio >= TARGET if backend == "native" else None})
            print(rows[-1], flush=True)
    print_table(
        f"env-steps/s, {torch.get_num_threads()} torch threads (target: native >= {TARGET}x best gymnasium)",
        ["task", "envs", "our backend", "gym Sync", "gym Async", "ours", "ours / best gym", "target met"],
        rows,
    )
    write_json("envs", {"target": TARGET, "results": results}, args.out)


if __name__ == "__main__":
    main()

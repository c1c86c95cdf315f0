"""Timing, table and JSON helpers shared by the benchmarks."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], object], device: str = "cpu", min_time: float = 0.5,
            max_reps: int = 10_000, warmup: int = 2) -> float:
    """Median seconds per call of fn over repeated calls filling about min_time."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    once = max(time.perf_counter() - start, 1e-7)
    # Batch fast calls so timer overhead stays negligible; take the median of rounds.
    per_round = max(1, min(max_reps, int(0.05 / once)))
    rounds = max(3, min(50, int(min_time / (once * per_round))))
    samples = []
    for _ in range(rounds):
        _sync(device)
        start = time.perf_counter()
        for _ in range(per_round):
            fn()
        _sync(device)
        samples.append((time.perf_counter() - start) / per_round)
    samples.sort()
    return samples[len(samples) // 2]


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def print_table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    cells = [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(columns)]
    line = "  ".join(h.ljust(w) for h, w in zip(columns, widths))
    print(f"\n{title}\n{line}\n{'-' * len(line)}")
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def write_json(name: str, payload: dict, out: str | None = None) -> Path:
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    print(f"\nwrote {path}")
    return path

"""Run-directory logging: a CSV of every metric, TensorBoard, a progress bar, a learning-curve PNG.

``metrics.csv`` is long-format (``step,time,key,value``: one row per metric per log call), so
metrics that appear at different steps (training, evaluation) share one file. Resuming a run
rewrites it up to the checkpoint's step, and TensorBoard purges events after that step, so the
curves continue without duplicates.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path

from tqdm import tqdm

CSV_NAME = "metrics.csv"
FIELDS = ["step", "time", "key", "value"]


def read_metrics(run_dir: Path, max_step: int | None = None) -> list[tuple[int, float, str, float]]:
    """Rows of ``metrics.csv`` (skipping a torn last line), optionally up to ``max_step``."""
    path = Path(run_dir) / CSV_NAME
    rows: list[tuple[int, float, str, float]] = []
    if not path.is_file():
        return rows
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            try:
                row = (int(rec["step"]), float(rec["time"]), str(rec["key"]), float(rec["value"]))
            except (TypeError, ValueError, KeyError):
                continue  # a line cut by a kill
            if max_step is None or row[0] <= max_step:
                rows.append(row)
    return rows


class RunLogger:
    """Writes metrics of one run (rank 0 only); ``start_step`` > 0 continues a resumed run."""

    def __init__(self, run_dir: Path, total_steps: int, start_step: int = 0, tensorboard: bool = True,
                 progress: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / CSV_NAME
        kept = read_metrics(self.run_dir, start_step) if start_step > 0 else []
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(FIELDS)
            writer.writerows(kept)
        os.replace(tmp, path)
        self._file = open(path, "a", newline="")
        self._csv = csv.writer(self._file)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step + 1 if start_step else None)
        self._bar = tqdm(total=total_steps, initial=start_step, unit="step", unit_scale=True, dynamic_ncols=True,
                         disable=not progress, smoothing=0.1)
        self._postfix: dict[str, str] = {}

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        now = time.time()
        for key, value in metrics.items():
            value = float(value)
            self._csv.writerow([step, f"{now:.3f}", key, repr(value)])
            if self._tb is not None and math.isfinite(value):
                self._tb.add_scalar(key, value, step)
        self._file.flush()

    def progress(self, step: int, **postfix: float) -> None:
        """Advance the bar to ``step``; ``postfix`` values (return, success) show beside it."""
        self._bar.update(step - self._bar.n)
        for key, value in postfix.items():
            if math.isfinite(value):
                self._postfix[key] = f"{value:.3g}"
        if self._postfix:
            self._bar.set_postfix(self._postfix, refresh=False)

    def flush(self) -> None:
        self._file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self._bar.close()
        self._file.close()
        if self._tb is not None:
            self._tb.close()

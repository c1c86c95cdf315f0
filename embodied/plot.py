"""The learning-curve PNG of a run, drawn from its ``metrics.csv``."""

from __future__ import annotations

from pathlib import Path

from embodied.logger import read_metrics

#: (panel title, metric keys drawn in it)
PANELS = [
    ("episode return", ["train/episode_return", "eval/mean_return"]),
    ("success rate", ["train/success_rate", "eval/success_rate"]),
]


def plot_learning_curve(run_dir: Path, out: Path | None = None, title: str | None = None) -> Path:
    """Write ``learning_curve.png`` (return and success rate against env steps; train and eval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, tuple[list[int], list[float]]] = {}
    for step, _, key, value in read_metrics(run_dir):
        xs, ys = series.setdefault(key, ([], []))
        xs.append(step)
        ys.append(value)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.6))
    for ax, (panel, keys) in zip(axes, PANELS):
        for key in keys:
            if key in series:
                xs, ys = series[key]
                ax.plot(xs, ys, marker="o" if key.startswith("eval") else None, markersize=3,
                        label=key.split("/")[0])
        ax.set_title(panel)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend()
    fig.suptitle(title or Path(run_dir).name)
    fig.tight_layout()
    out = out or Path(run_dir) / "learning_curve.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

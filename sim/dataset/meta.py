"""LeRobot dataset metadata: path templates, ``meta/info.json`` validation, JSON(L) files, statistics.

The layout (LeRobot ``codebase_version`` v2.1, which this package writes)::

    meta/info.json              fps, features (dtype/shape/names), totals, path templates
    meta/episodes.jsonl         {"episode_index", "tasks": [instruction], "length"} per line
    meta/tasks.jsonl            {"task_index", "task": instruction} per line
    meta/episodes_stats.jsonl   {"episode_index", "stats": {feature: {min, max, mean, std, count}}}
    meta/stats.json             the same statistics over the whole dataset (what v2.0 readers use)
    data/chunk-000/episode_000000.parquet                      one row per frame
    videos/chunk-000/observation.images.main/episode_000000.mp4 one video per episode and camera

v3.0 (read only) concatenates episodes: ``data/chunk-000/file-000.parquet``,
``videos/<key>/chunk-000/file-000.mp4`` and ``meta/episodes/chunk-000/file-000.parquet`` whose
rows say where each episode lives (row range, video ``from_timestamp``/``to_timestamp``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CODEBASE_VERSION = "v2.1"
READABLE_VERSIONS = ("v2.0", "v2.1", "v3.0")
CHUNKS_SIZE = 1000

INFO_PATH = "meta/info.json"
EPISODES_PATH = "meta/episodes.jsonl"
EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"
TASKS_PATH = "meta/tasks.jsonl"
STATS_PATH = "meta/stats.json"
V3_EPISODES_DIR = "meta/episodes"
V3_TASKS_PATH = "meta/tasks.parquet"
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"

#: the per-frame bookkeeping columns every LeRobot dataset has
INDEX_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}

_CONVERT_HINT = (
    "upgrade it with LeRobot's converters (lerobot.common.datasets.v2.convert_dataset_v1_to_v2, "
    "then lerobot.common.datasets.v21.convert_dataset_v20_to_v21)"
)


@dataclass(frozen=True)
class DatasetInfo:
    """What the reader needs from ``meta/info.json``, validated."""

    root: Path
    version: str
    fps: int
    features: dict[str, dict[str, Any]]
    total_episodes: int
    total_frames: int
    chunks_size: int
    data_path: str
    video_path: str | None
    robot_type: str | None

    @property
    def video_keys(self) -> list[str]:
        """Features stored as mp4 videos (``observation.images.<camera>``)."""
        return [k for k, ft in self.features.items() if ft["dtype"] == "video"]

    def video_size(self, key: str) -> tuple[int, int] | None:
        """(height, width) of video feature ``key`` as declared, or None if the shape is ambiguous."""
        ft = self.features[key]
        info = ft.get("info") or ft.get("video_info") or {}
        if isinstance(info, dict) and isinstance(info.get("video.height"), int) and isinstance(info.get("video.width"), int):
            return int(info["video.height"]), int(info["video.width"])
        shape, names = ft["shape"], ft.get("names")
        if len(shape) != 3 or not all(isinstance(s, int) for s in shape):
            return None
        if isinstance(names, list) and names and str(names[0]).startswith("channel"):
            return shape[1], shape[2]
        return shape[0], shape[1]


def load_json(path: Path, what: str) -> Any:
    """Parse ``path``; a missing file is ``FileNotFoundError``, bad JSON a ``ValueError``, both naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found ({what})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); the file is truncated or corrupt: restore it, "
                         "or re-record / re-download the dataset") from e


def load_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    """One JSON object per non-empty line of ``path``; errors name the file and the line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found ({what})")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {n} is not valid JSON ({e}); the file is truncated or corrupt: "
                             "restore it, or re-record / re-download the dataset") from e
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {n}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _int_field(info: dict[str, Any], key: str, path: Path, minimum: int = 0) -> int:
    v = info.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise ValueError(f"{path}: {key!r} must be an int >= {minimum}, got {v!r}; the file is malformed")
    return v


def load_info(root: Path) -> DatasetInfo:
    """Read and validate ``root/meta/info.json`` (versions v2.0, v2.1 and v3.0)."""
    if not root.exists():
        raise FileNotFoundError(f"dataset root {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"dataset root {root} is not a directory")
    path = root / INFO_PATH
    if not path.is_file():
        hint = (
            "it holds data but no metadata: the recording was interrupted before finalize(); "
            "re-record it (python -m sim.record ... overwrite=true)"
            if (root / "data").exists()
            else "it is not a LeRobot dataset (expected meta/info.json, data/ and videos/)"
        )
        raise FileNotFoundError(f"{path} not found: {hint}")
    info = load_json(path, "the dataset's metadata")
    if not isinstance(info, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(info).__name__}; the file is malformed")
    version = info.get("codebase_version")
    if not isinstance(version, str):
        raise ValueError(f"{path} has no 'codebase_version' string; it is not a LeRobot v2/v3 dataset ({_CONVERT_HINT})")
    if version not in READABLE_VERSIONS:
        hint = _CONVERT_HINT if version < "v2.0" else "convert it to v3.0 or v2.1 with LeRobot"
        raise ValueError(f"{path}: codebase_version {version!r} is not supported (this reader reads "
                         f"{', '.join(READABLE_VERSIONS)}); {hint}")
    fps = info.get("fps")
    if isinstance(fps, float) and fps.is_integer():
        fps = int(fps)
    if not isinstance(fps, int) or isinstance(fps, bool) or fps <= 0:
        raise ValueError(f"{path}: 'fps' must be a positive integer, got {fps!r}; the file is malformed")
    features = info.get("features")
    if not isinstance(features, dict) or not features:
        raise ValueError(f"{path}: 'features' must be a non-empty object, got {features!r}; the file is malformed")
    for key, ft in features.items():
        if (
            not isinstance(ft, dict)
            or not isinstance(ft.get("dtype"), str)
            or not isinstance(ft.get("shape"), list)
            or not all(isinstance(s, int) or s is None for s in ft["shape"])
        ):
            raise ValueError(f"{path}: feature {key!r} must have a 'dtype' string and a 'shape' list, got {ft!r}")
    data_path = info.get("data_path")
    if not isinstance(data_path, str):
        raise ValueError(f"{path}: 'data_path' must be a path template string, got {data_path!r}")
    video_path = info.get("video_path")
    has_videos = any(ft["dtype"] == "video" for ft in features.values())
    if has_videos and not isinstance(video_path, str):
        raise ValueError(f"{path}: features include videos but 'video_path' is {video_path!r}")
    image_keys = [k for k, ft in features.items() if ft["dtype"] == "image"]
    if image_keys:
        raise ValueError(f"{path}: features {image_keys} store frames as images inside the parquet files, which "
                         "this reader does not decode; re-encode them as videos with LeRobot (use_videos=True)")
    robot_type = info.get("robot_type")
    return DatasetInfo(
        root=root,
        version=version,
        fps=fps,
        features=features,
        total_episodes=_int_field(info, "total_episodes", path),
        total_frames=_int_field(info, "total_frames", path),
        # v3.0 locates files through the episode metadata, not through chunks_size
        chunks_size=_int_field(info, "chunks_size", path, 1) if version != "v3.0" else CHUNKS_SIZE,
        data_path=data_path,
        video_path=video_path if isinstance(video_path, str) else None,
        robot_type=robot_type if isinstance(robot_type, str) else None,
    )


# ---- statistics ----------------------------------------------------------------------------


def feature_stats(values: np.ndarray) -> dict[str, Any]:
    """min / max / mean / std over the frame axis of ``values [T, *shape]``, and count ``[T]``."""
    x = values.astype(np.float64).reshape(len(values), -1) if values.ndim > 1 else values.astype(np.float64)[:, None]
    return {
        "min": x.min(0).tolist(),
        "max": x.max(0).tolist(),
        "mean": x.mean(0).tolist(),
        "std": x.std(0).tolist(),
        "count": [len(values)],
    }


def image_stats(frames: np.ndarray, max_frames: int = 100) -> dict[str, Any]:
    """Per-channel statistics of ``frames`` uint8 ``[T, H, W, 3]`` scaled to [0, 1], shaped ``[3, 1, 1]``
    as LeRobot stores them; at most ``max_frames`` evenly spaced frames are used."""
    idx = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), max_frames)).round().astype(np.int64))
    x = frames[idx]
    # per-channel histograms of the 256 levels: exact statistics, ~10x faster than float reductions
    hist = np.stack([np.bincount(x[..., c].ravel(), minlength=256) for c in range(3)]).astype(np.float64)
    levels = np.arange(256) / 255.0
    count = hist.sum(1)
    mean = hist @ levels / count
    var = hist @ levels**2 / count - mean**2
    nonzero = hist > 0
    per_channel = {
        "min": levels[nonzero.argmax(1)],
        "max": levels[255 - nonzero[:, ::-1].argmax(1)],
        "mean": mean,
        "std": np.sqrt(np.maximum(var, 0.0)),
    }
    out: dict[str, Any] = {k: v.reshape(3, 1, 1).tolist() for k, v in per_channel.items()}
    out["count"] = [len(idx)]
    return out


def aggregate_stats(per_episode: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Whole-dataset statistics from per-episode ones (count-weighted mean, pooled variance)."""
    out: dict[str, dict[str, Any]] = {}
    for key in per_episode[0]:
        parts = [ep[key] for ep in per_episode]
        counts = np.array([p["count"][0] for p in parts], np.float64)
        means = np.stack([np.asarray(p["mean"], np.float64) for p in parts])
        stds = np.stack([np.asarray(p["std"], np.float64) for p in parts])
        w = (counts / counts.sum()).reshape(-1, *([1] * (means.ndim - 1)))
        mean = (w * means).sum(0)
        var = (w * (stds**2 + (means - mean) ** 2)).sum(0)
        out[key] = {
            "min": np.min(np.stack([np.asarray(p["min"], np.float64) for p in parts]), 0).tolist(),
            "max": np.max(np.stack([np.asarray(p["max"], np.float64) for p in parts]), 0).tolist(),
            "mean": mean.tolist(),
            "std": np.sqrt(np.maximum(var, 0.0)).tolist(),
            "count": [int(counts.sum())],
        }
    return out


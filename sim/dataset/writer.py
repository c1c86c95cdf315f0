"""``DatasetWriter``: episodes in, a LeRobot v2.1 dataset directory out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from sim.dataset import meta
from sim.dataset.video import ENCODERS, encode_video

ArrayLike = np.ndarray | torch.Tensor

#: what a dataset directory may hold; ``overwrite=True`` deletes nothing else
_DATASET_ENTRIES = {"meta", "data", "videos", "images", "README.md", ".gitattributes"}


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")


def _check_float(x: np.ndarray, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a float array, got {x.dtype}")
    if x.shape != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(x.shape)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}[{', '.join(map(str, np.argwhere(~np.isfinite(x))[0]))}] is not finite")
    return x.astype(np.float32)


def _vector_column(x: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


class DatasetWriter:
    """Writes demonstrations as a LeRobot v2.1 dataset under ``root`` (one camera).

    Each ``add_episode`` writes that episode's parquet table and mp4 at once (memory stays at
    one episode); ``finalize`` writes ``meta/``, ``meta/info.json`` last and atomically, so a
    recording killed before it leaves a directory that ``DemoDataset`` rejects as incomplete.
    Use as a context manager to finalize on a clean exit (and not after an exception).

    Per-frame columns: ``observation.state`` float32 ``[state_dim]``, ``action`` float32
    ``[action_dim]``, ``next.reward`` float32, ``next.done`` bool (true on the last frame),
    ``next.success`` bool, ``timestamp`` float32 seconds (``frame_index / fps``), ``frame_index``,
    ``episode_index``, ``index`` (over the dataset) and ``task_index`` int64. Frames go to
    ``videos/chunk-XXX/observation.images.<camera>/episode_XXXXXX.mp4`` (H.264 yuv420p by default).

    Args:
        root: output directory; must not exist or be empty, unless ``overwrite`` (which deletes
            an existing dataset there, and refuses to delete a directory holding anything else).
        fps: control steps per second (integer, as LeRobot requires).
        state_dim, action_dim: sizes of ``observation.state`` and ``action``.
        image_size: (height, width) of the frames, both even.
        camera: camera name; the video feature is ``observation.images.<camera>``.
        robot_type: stored in ``info.json`` (LeRobot uses it to pick robot configs).
        codec: ``"h264"`` (default, plays everywhere) or ``"av1"`` (LeRobot's default, smaller).
        crf: encoder quality, lower is better (18: visually lossless H.264).
        state_names, action_names: optional per-dimension names for ``info.json``.
    """

    def __init__(
        self,
        root: str | Path,
        fps: int,
        state_dim: int,
        action_dim: int,
        image_size: tuple[int, int] = (224, 224),
        camera: str = "main",
        robot_type: str = "unknown",
        codec: str = "h264",
        crf: int = 18,
        state_names: list[str] | None = None,
        action_names: list[str] | None = None,
        overwrite: bool = False,
    ) -> None:
        for name, v in (("fps", fps), ("state_dim", state_dim), ("action_dim", action_dim)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if (
            not isinstance(image_size, (tuple, list))
            or len(image_size) != 2
            or not all(isinstance(s, (int, np.integer)) and s > 0 and s % 2 == 0 for s in image_size)
        ):
            raise ValueError(f"image_size must be (height, width), positive and even (yuv420p video), got {image_size!r}")
        if not isinstance(camera, str) or not camera or "/" in camera:
            raise ValueError(f"camera must be a non-empty name without '/', got {camera!r}")
        if codec not in ENCODERS:
            raise ValueError(f"codec must be one of {sorted(ENCODERS)}, got {codec!r}")
        if not isinstance(crf, int) or not 0 <= crf <= 63:
            raise ValueError(f"crf must be an int in [0, 63], got {crf!r}")
        for name, names, dim in (("state_names", state_names, state_dim), ("action_names", action_names, action_dim)):
            if names is not None and (len(names) != dim or not all(isinstance(n, str) for n in names)):
                raise ValueError(f"{name} must be {dim} strings, got {names!r}")
        self.root = Path(root)
        self.fps, self.state_dim, self.action_dim = int(fps), int(state_dim), int(action_dim)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.video_key = f"observation.images.{camera}"
        self.robot_type, self.codec, self.crf = robot_type, codec, crf
        self._names = {"observation.state": state_names, "action": action_names}
        self._prepare_root(overwrite)
        self._episodes: list[dict[str, Any]] = []
        self._episode_stats: list[dict[str, dict[str, Any]]] = []
        self._tasks: dict[str, int] = {}
        self._frames = 0
        self._finalized = False

    def _prepare_root(self, overwrite: bool) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"dataset root {self.root} exists and is not a directory")
        entries = {p.name for p in self.root.iterdir()} if self.root.is_dir() else set()
        if entries:
            if not overwrite:
                state = "a dataset" if (self.root / meta.INFO_PATH).is_file() else "files"
                raise FileExistsError(f"{self.root} already holds {state}; choose another output directory "
                                      "or pass overwrite=True (sim.record: overwrite=true)")
            foreign = sorted(entries - _DATASET_ENTRIES)
            if foreign:
                raise FileExistsError(f"not overwriting {self.root}: it holds {foreign[:5]}, which are not part of a "
                                      "LeRobot dataset; choose another output directory")
            for name in entries:
                p = self.root / name
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    @property
    def num_frames(self) -> int:
        return self._frames

    def add_episode(
        self,
        frames: ArrayLike,
        states: ArrayLike,
        actions: ArrayLike,
        rewards: ArrayLike,
        successes: ArrayLike,
        instruction: str,
    ) -> int:
        """Write one episode of ``T`` steps; returns its ``episode_index``.

        ``frames`` uint8 ``[T, H, W, 3]`` (the camera image of the state ``states[t]``), ``states``
        ``[T, state_dim]``, ``actions`` ``[T, action_dim]`` (the action taken at ``t``), ``rewards``
        ``[T]`` and ``successes`` bool ``[T]`` (reward and success after that action), ``instruction``
        the task in words. Arrays may be numpy or torch (CPU or not).
        """
        if self._finalized:
            raise RuntimeError(f"{self.root} is finalized; create a new DatasetWriter to add episodes")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
        fr = _to_numpy(frames, "frames")
        t = fr.shape[0] if fr.ndim >= 1 else 0
        h, w = self.image_size
        if fr.dtype != np.uint8 or fr.shape != (t, h, w, 3):
            raise ValueError(f"frames must be uint8 [T, {h}, {w}, 3], got {fr.dtype} {list(fr.shape)}")
        if t == 0:
            raise ValueError("an episode needs at least one frame")
        st = _check_float(_to_numpy(states, "states"), "states", (t, self.state_dim))
        act = _check_float(_to_numpy(actions, "actions"), "actions", (t, self.action_dim))
        rew = _check_float(_to_numpy(rewards, "rewards"), "rewards", (t,))
        suc = _to_numpy(successes, "successes")
        if suc.shape != (t,):
            raise ValueError(f"successes must have shape [{t}], got {list(suc.shape)}")
        if suc.dtype != np.bool_:
            if suc.dtype.kind not in "iu" or not np.isin(suc, (0, 1)).all():
                raise TypeError(f"successes must be bool (or 0/1 integers), got {suc.dtype}")
            suc = suc.astype(bool)

        ep = len(self._episodes)
        task_index = self._tasks.setdefault(instruction, len(self._tasks))
        frame_index = np.arange(t, dtype=np.int64)
        done = frame_index == t - 1
        columns: dict[str, np.ndarray] = {
            "observation.state": st,
            "action": act,
            "timestamp": (frame_index / self.fps).astype(np.float32),
            "frame_index": frame_index,
            "episode_index": np.full(t, ep, np.int64),
            "index": self._frames + frame_index,
            "task_index": np.full(t, task_index, np.int64),
            "next.reward": rew,
            "next.done": done,
            "next.success": suc,
        }
        chunk = ep // meta.CHUNKS_SIZE
        encode_video(
            self.root / meta.VIDEO_PATH.format(episode_chunk=chunk, video_key=self.video_key, episode_index=ep),
            fr, self.fps, self.codec, self.crf,
        )
        table = pa.table({k: _vector_column(v) if v.ndim == 2 else pa.array(v) for k, v in columns.items()})
        path = self.root / meta.DATA_PATH.format(episode_chunk=chunk, episode_index=ep)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)

        stats = {k: meta.feature_stats(v) for k, v in columns.items()}
        stats[self.video_key] = meta.image_stats(fr)
        self._episode_stats.append(stats)
        self._episodes.append({"episode_index": ep, "tasks": [instruction], "length": t})
        self._frames += t
        return ep

    def _features(self) -> dict[str, dict[str, Any]]:
        h, w = self.image_size
        return {
            "observation.state": {"dtype": "float32", "shape": [self.state_dim], "names": self._names["observation.state"]},
            "action": {"dtype": "float32", "shape": [self.action_dim], "names": self._names["action"]},
            self.video_key: {
                "dtype": "video",
                "shape": [h, w, 3],
                "names": ["height", "width", "channels"],
                "info": {
                    "video.fps": float(self.fps),
                    "video.height": h,
                    "video.width": w,
                    "video.channels": 3,
                    "video.codec": self.codec,
                    "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False,
                    "has_audio": False,
                },
            },
            **meta.INDEX_FEATURES,
            "next.reward": {"dtype": "float32", "shape": [1], "names": None},
            "next.done": {"dtype": "bool", "shape": [1], "names": None},
            "next.success": {"dtype": "bool", "shape": [1], "names": None},
        }

    def finalize(self) -> Path:
        """Write the metadata (``meta/info.json`` last); returns ``root``. Needs at least one episode."""
        if self._finalized:
            return self.root
        if not self._episodes:
            raise ValueError(f"no episodes were added to {self.root}; nothing to finalize")
        n = len(self._episodes)
        meta.write_jsonl(self.root / meta.TASKS_PATH, [{"task_index": i, "task": s} for s, i in self._tasks.items()])
        meta.write_jsonl(self.root / meta.EPISODES_PATH, self._episodes)
        meta.write_jsonl(
            self.root / meta.EPISODES_STATS_PATH,
            [{"episode_index": i, "stats": s} for i, s in enumerate(self._episode_stats)],
        )
        meta.write_text_atomic(self.root / meta.STATS_PATH, json.dumps(meta.aggregate_stats(self._episode_stats), indent=4))
        info = {
            "codebase_version": meta.CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": n,
            "total_frames": self._frames,
            "total_tasks": len(self._tasks),
            "total_videos": n,
            "total_chunks": (n - 1) // meta.CHUNKS_SIZE + 1,
            "chunks_size": meta.CHUNKS_SIZE,
            "fps": self.fps,
            "splits": {"train": f"0:{n}"},
            "data_path": meta.DATA_PATH,
            "video_path": meta.VIDEO_PATH,
            "features": self._features(),
        }
        meta.write_text_atomic(self.root / meta.INFO_PATH, json.dumps(info, indent=4, ensure_ascii=False))
        self._finalized = True
        return self.root

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.finalize()

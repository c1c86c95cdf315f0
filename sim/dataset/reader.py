"""``DemoDataset``: a torch ``Dataset`` over a LeRobot dataset directory (v2.0, v2.1 or v3.0)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from sim.dataset import meta
from sim.dataset.video import decode_video

_RERECORD = "re-record it (python -m sim.record ... overwrite=true) or re-download the dataset"


@dataclass(frozen=True)
class EpisodeInfo:
    """Where one episode lives. ``start`` is the dataset index of its first frame."""

    episode_index: int
    length: int
    tasks: list[str]
    start: int
    data_file: Path
    video_files: dict[str, Path] = field(default_factory=dict)
    #: v3.0: the episode's span inside a video that holds several; v2: (0, inf)
    video_spans: dict[str, tuple[float, float]] = field(default_factory=dict)


def _read_parquet(path: Path, what: str) -> pa.Table:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found ({what}); the dataset is incomplete: {_RERECORD}")
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{path} is not a readable parquet file ({e}); it is truncated or corrupt: {_RERECORD}") from e


def _column_to_numpy(column: pa.ChunkedArray | pa.Array, name: str, path: Path) -> np.ndarray | None:
    """A numeric or bool column (scalars or fixed-length, possibly nested, lists) as ``[T, *shape]``;
    None for other types (strings, structs), which the reader passes over."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    rows, dims = len(arr), []
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        if arr.null_count:
            raise ValueError(f"{path}: column {name!r} has null rows; the file is corrupt: {_RERECORD}")
        if pa.types.is_fixed_size_list(arr.type):
            dims.append(arr.type.list_size)
        else:
            lengths = pc.unique(pc.list_value_length(arr)).to_pylist()
            if len(lengths) > 1:
                raise ValueError(f"{path}: column {name!r} has rows of different lengths {sorted(lengths)[:5]}")
            dims.append(lengths[0] if lengths else 0)
        arr = arr.flatten()
    if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_boolean(arr.type)):
        return None
    if arr.null_count:
        raise ValueError(f"{path}: column {name!r} has null values; the file is corrupt: {_RERECORD}")
    return np.asarray(arr.to_numpy(zero_copy_only=False)).reshape(rows, *dims)


class DemoDataset(torch.utils.data.Dataset[dict[str, Any]]):
    """Frames of a LeRobot dataset (written by ``DatasetWriter`` or by LeRobot) as torch dicts.

    ``dataset[i]`` is frame ``i`` over all episodes in order: every numeric parquet column as a
    tensor of its stored dtype (``observation.state`` ``[S]`` and ``action`` ``[A]`` float32,
    ``next.reward`` float32, ``next.success``/``next.done`` bool, ``timestamp`` float32 seconds,
    ``frame_index``/``episode_index``/``index``/``task_index`` int64 scalars), each camera
    ``observation.images.<cam>`` as uint8 ``[H, W, 3]`` (as ``VecEnv.render`` returns frames;
    convert with ``x.permute(2, 0, 1).float() / 255`` for CHW floats), and ``task``, the
    instruction string. The default ``DataLoader`` collation batches them.

    Videos are decoded one whole episode at a time and the last ``cache_episodes`` episodes are
    kept (per DataLoader worker): sequential access decodes each episode once. For shuffled
    training use ``EpisodeShuffleSampler``, which shuffles within a few episodes at a time.

    Missing or malformed metadata, unsupported versions, truncated parquet or mp4 files and
    frame-count mismatches raise ``FileNotFoundError``/``ValueError`` naming the file.
    """

    def __init__(self, root: str | Path, cache_episodes: int = 4) -> None:
        if not isinstance(root, (str, Path)):
            raise TypeError(f"root must be a path, got {type(root).__name__}")
        if not isinstance(cache_episodes, int) or cache_episodes < 1:
            raise ValueError(f"cache_episodes must be a positive int, got {cache_episodes!r}")
        self.root = Path(root)
        self.info = meta.load_info(self.root)
        self.fps = self.info.fps
        self.video_keys = self.info.video_keys
        self.cache_episodes = cache_episodes
        if self.info.version == "v3.0":
            self.tasks, episodes = self._load_v3_metadata()
        else:
            self.tasks, episodes = self._load_v2_metadata()
        self.episodes: list[EpisodeInfo] = episodes
        self._position = {ep.episode_index: i for i, ep in enumerate(episodes)}
        self._starts = np.array([ep.start for ep in episodes] + [sum(ep.length for ep in episodes)], np.int64)
        if self.info.total_frames != self._starts[-1]:
            raise ValueError(f"{self.root / meta.INFO_PATH} says total_frames={self.info.total_frames} but the "
                             f"episodes add up to {self._starts[-1]}; the metadata is inconsistent: {_RERECORD}")
        self._cache: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._table_cache: tuple[Path, pa.Table] | None = None

    # ---- metadata ----------------------------------------------------------------------
    def _task_names(self, rows: list[tuple[Any, Any]], path: Path) -> dict[int, str]:
        tasks: dict[int, str] = {}
        for i, task in rows:
            if not isinstance(i, int) or not isinstance(task, str) or i in tasks:
                raise ValueError(f"{path}: task rows need a unique int task_index and a task string, got "
                                 f"({i!r}, {task!r})")
            tasks[i] = task
        return tasks

    def _check_total(self, n: int, path: Path) -> None:
        if n != self.info.total_episodes:
            raise ValueError(f"{path} lists {n} episodes but {self.root / meta.INFO_PATH} says total_episodes="
                             f"{self.info.total_episodes}; the metadata is inconsistent: {_RERECORD}")

    def _load_v2_metadata(self) -> tuple[dict[int, str], list[EpisodeInfo]]:
        tasks_path = self.root / meta.TASKS_PATH
        task_rows = meta.load_jsonl(tasks_path, "task_index -> instruction")
        tasks = self._task_names([(r.get("task_index"), r.get("task")) for r in task_rows], tasks_path)
        ep_path = self.root / meta.EPISODES_PATH
        episodes, start = [], 0
        rows = meta.load_jsonl(ep_path, "episode lengths and tasks")
        for n, row in enumerate(rows, 1):
            idx, length, ep_tasks = row.get("episode_index"), row.get("length"), row.get("tasks", [])
            if not isinstance(idx, int) or not isinstance(length, int) or length < 1 or not isinstance(ep_tasks, list):
                raise ValueError(f"{ep_path}, line {n}: needs an int episode_index, a positive int length and a "
                                 f"tasks list, got {row!r}")
        for row in sorted(rows, key=lambda r: r["episode_index"]):
            idx, length, ep_tasks = row["episode_index"], row["length"], row.get("tasks", [])
            chunk = idx // self.info.chunks_size
            try:
                data_file = self.root / self.info.data_path.format(episode_chunk=chunk, episode_index=idx)
                videos = {
                    k: self.root / str(self.info.video_path).format(episode_chunk=chunk, video_key=k, episode_index=idx)
                    for k in self.video_keys
                }
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(f"{self.root / meta.INFO_PATH}: bad data_path/video_path template ({e})") from e
            episodes.append(EpisodeInfo(idx, length, [str(t) for t in ep_tasks], start, data_file, videos,
                                        {k: (0.0, float("inf")) for k in self.video_keys}))
            start += length
        self._check_total(len(episodes), ep_path)
        if len({ep.episode_index for ep in episodes}) != len(episodes):
            raise ValueError(f"{ep_path} lists an episode_index twice")
        return tasks, episodes

    def _load_v3_metadata(self) -> tuple[dict[int, str], list[EpisodeInfo]]:
        tasks_path = self.root / meta.V3_TASKS_PATH
        table = _read_parquet(tasks_path, "task_index -> instruction")
        # LeRobot writes a pandas frame indexed by the task string: the string column is the index.
        names = [c for c in ("task", "__index_level_0__") if c in table.column_names]
        if "task_index" not in table.column_names or not names:
            raise ValueError(f"{tasks_path} needs columns task_index and task, has {table.column_names}")
        tasks = self._task_names(list(zip(table["task_index"].to_pylist(), table[names[0]].to_pylist())), tasks_path)
        ep_dir = self.root / meta.V3_EPISODES_DIR
        files = sorted(ep_dir.glob("chunk-*/file-*.parquet"))
        if not files:
            raise FileNotFoundError(f"no episode metadata under {ep_dir} (expected chunk-XXX/file-XXX.parquet); "
                                    f"the dataset is incomplete: {_RERECORD}")
        needed = ["episode_index", "length", "tasks", "data/chunk_index", "data/file_index"]
        for k in self.video_keys:
            needed += [f"videos/{k}/chunk_index", f"videos/{k}/file_index",
                       f"videos/{k}/from_timestamp", f"videos/{k}/to_timestamp"]
        rows: list[dict[str, Any]] = []
        for f in files:
            t = _read_parquet(f, "episode metadata")
            missing = [c for c in needed if c not in t.column_names]
            if missing:
                raise ValueError(f"{f} lacks columns {missing}; it is not LeRobot v3.0 episode metadata")
            rows += t.select(needed).to_pylist()
        rows.sort(key=lambda r: r["episode_index"])
        episodes, start = [], 0
        for r in rows:
            if not isinstance(r["length"], int) or r["length"] < 1:
                raise ValueError(f"{ep_dir}: episode {r['episode_index']} has length {r['length']!r}")
            data_file = self.root / self.info.data_path.format(
                chunk_index=r["data/chunk_index"], file_index=r["data/file_index"])
            videos, spans = {}, {}
            for k in self.video_keys:
                videos[k] = self.root / str(self.info.video_path).format(
                    video_key=k, chunk_index=r[f"videos/{k}/chunk_index"], file_index=r[f"videos/{k}/file_index"])
                spans[k] = (float(r[f"videos/{k}/from_timestamp"]), float(r[f"videos/{k}/to_timestamp"]))
            episodes.append(EpisodeInfo(int(r["episode_index"]), r["length"], list(r["tasks"] or []), start,
                                        data_file, videos, spans))
            start += r["length"]
        self._check_total(len(episodes), ep_dir)
        return tasks, episodes

    # ---- episodes ----------------------------------------------------------------------
    def _data_table(self, path: Path) -> pa.Table:
        if self._table_cache is None or self._table_cache[0] != path:
            self._table_cache = (path, _read_parquet(path, "per-frame data"))
        return self._table_cache[1]

    def _load(self, pos: int) -> dict[str, Any]:
        """Decode episode ``self.episodes[pos]``: numpy columns ``[T, ...]`` and frames ``[T, H, W, 3]``."""
        if pos in self._cache:
            self._cache.move_to_end(pos)
            return self._cache[pos]
        ep = self.episodes[pos]
        path = ep.data_file
        table = self._data_table(path)
        if self.info.version == "v3.0":
            if "episode_index" not in table.column_names:
                raise ValueError(f"{path} lacks the episode_index column; it is not LeRobot v3.0 data")
            table = table.filter(pc.equal(table["episode_index"], ep.episode_index))
        declared = [k for k, ft in self.info.features.items() if ft["dtype"] != "video"]
        missing = [k for k in declared if k not in table.column_names]
        if missing:
            raise ValueError(f"{path} lacks column(s) {missing} that {meta.INFO_PATH} declares; the file was written "
                             f"by another tool or belongs to another dataset: {_RERECORD}")
        if table.num_rows != ep.length:
            raise ValueError(f"{path} has {table.num_rows} rows for episode {ep.episode_index} but the metadata says "
                             f"{ep.length}; the file is truncated or the metadata is stale: {_RERECORD}")
        data: dict[str, Any] = {}
        for name in table.column_names:
            values = _column_to_numpy(table[name], name, path)
            if values is not None:
                data[name] = values
        if "frame_index" in data and not np.array_equal(data["frame_index"].reshape(-1), np.arange(ep.length)):
            raise ValueError(f"{path}: frame_index of episode {ep.episode_index} is not 0..{ep.length - 1} in order")
        timestamps = (data["timestamp"].reshape(-1).astype(np.float64) if "timestamp" in data
                      else np.arange(ep.length) / self.fps)
        for key in self.video_keys:
            data[key] = self._load_video(ep, key, timestamps, path)
        data["task"] = self._task_of(ep, data)
        self._cache[pos] = data
        while len(self._cache) > self.cache_episodes:
            self._cache.popitem(last=False)
        return data

    def _load_video(self, ep: EpisodeInfo, key: str, timestamps: np.ndarray, data_file: Path) -> np.ndarray:
        path, (t0, t1) = ep.video_files[key], ep.video_spans[key]
        tol = 0.5 / self.fps
        if self.info.version == "v3.0":
            frames, times = decode_video(path, t0, t1, tol)
        else:
            frames, times = decode_video(path)
            t0 = 0.0
        if len(frames) != ep.length:
            raise ValueError(f"{path} has {len(frames)} frames but {data_file} has {ep.length} rows for episode "
                             f"{ep.episode_index}; the video is truncated or belongs to another episode: {_RERECORD}")
        off = np.abs((times - t0) - timestamps)
        if (off > tol).any():
            i = int(np.argmax(off > tol))
            raise ValueError(f"{path}: frame {i} is at {times[i] - t0:.4f} s but {data_file} says {timestamps[i]:.4f} s; "
                             f"the video does not match the data (dropped or duplicated frames): {_RERECORD}")
        size = self.info.video_size(key)
        if size is not None and frames.shape[1:3] != size:
            raise ValueError(f"{path}: frames are {frames.shape[1]}x{frames.shape[2]} but {meta.INFO_PATH} declares "
                             f"{size[0]}x{size[1]} for {key}")
        return frames

    def _task_of(self, ep: EpisodeInfo, data: dict[str, Any]) -> str:
        if "task_index" in data:
            idx = int(data["task_index"].reshape(-1)[0])
            if idx not in self.tasks:
                raise ValueError(f"{ep.data_file}: task_index {idx} is not in the dataset's tasks {sorted(self.tasks)}")
            return self.tasks[idx]
        return ep.tasks[0] if ep.tasks else ""

    # ---- public API --------------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Frame ``index`` (0 <= index < len) as a dict of tensors plus the ``task`` string."""
        if isinstance(index, torch.Tensor) and index.numel() == 1:
            index = int(index.item())
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"frame index {index} out of range for a dataset of {n} frames")
        index = int(index) % n
        pos = int(np.searchsorted(self._starts, index, side="right")) - 1
        data = self._load(pos)
        t = index - self.episodes[pos].start
        item: dict[str, Any] = {k: torch.from_numpy(np.array(v[t])) for k, v in data.items() if k != "task"}
        item["task"] = data["task"]
        return item

    def episode(self, episode_index: int) -> dict[str, Any]:
        """Episode ``episode_index`` whole: the keys of ``dataset[i]`` with a leading ``[T]`` dimension
        (frames uint8 ``[T, H, W, 3]``), and ``task``, its instruction."""
        if not isinstance(episode_index, (int, np.integer)) or isinstance(episode_index, bool):
            raise TypeError(f"episode_index must be an int, got {type(episode_index).__name__}")
        if episode_index not in self._position:
            raise IndexError(f"episode {episode_index} is not in {self.root} (episode indices "
                             f"{self.episodes[0].episode_index}..{self.episodes[-1].episode_index})")
        data = self._load(self._position[int(episode_index)])
        out: dict[str, Any] = {k: torch.from_numpy(np.array(v)) for k, v in data.items() if k != "task"}
        out["task"] = data["task"]
        return out

    def __repr__(self) -> str:
        return (f"DemoDataset({str(self.root)!r}, {self.info.version}, {self.num_episodes} episodes, {len(self)} frames, "
                f"{self.fps} fps, cameras {self.video_keys})")


class EpisodeShuffleSampler(torch.utils.data.Sampler[int]):
    """Shuffled frame order that keeps ``DemoDataset``'s episode cache warm.

    Episodes are shuffled and taken ``episodes_at_once`` at a time (keep it <= the dataset's
    ``cache_episodes``); the frames of each group are shuffled together. Each pass over the
    sampler draws a new order from ``seed`` and the pass number.
    """

    def __init__(self, dataset: DemoDataset, episodes_at_once: int = 4, seed: int = 0) -> None:
        if not isinstance(dataset, DemoDataset):
            raise TypeError(f"dataset must be a DemoDataset, got {type(dataset).__name__}")
        if not isinstance(episodes_at_once, int) or episodes_at_once < 1:
            raise ValueError(f"episodes_at_once must be a positive int, got {episodes_at_once!r}")
        self.spans = [(ep.start, ep.length) for ep in dataset.episodes]
        self.episodes_at_once, self.seed, self._pass = episodes_at_once, seed, 0

    def __len__(self) -> int:
        return sum(n for _, n in self.spans)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self._pass])
        self._pass += 1
        order = rng.permutation(len(self.spans))
        for g in range(0, len(order), self.episodes_at_once):
            group = np.concatenate([np.arange(s, s + n) for s, n in (self.spans[i] for i in order[g:g + self.episodes_at_once])])
            yield from (int(i) for i in rng.permutation(group))

"""sim.dataset: LeRobot-format writer and reader (round trips, hand-made v2.1/v3.0 datasets, bad files)."""

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sim.dataset import DatasetWriter, DemoDataset, EpisodeShuffleSampler

H, W, FPS = 32, 48, 10


def smooth_frames(t: int, seed: int) -> np.ndarray:
    """Low-frequency RGB frames [t, H, W, 3] that change every step, so a lossy codec keeps them close."""
    y, x = np.mgrid[0:H, 0:W]
    k = np.arange(t)[:, None, None, None]
    c = np.arange(3)[None, None, None, :]
    v = 128 + 50 * np.sin(x[None, :, :, None] / 9.0 + 0.4 * k + c + seed) + 40 * np.cos(y[None, :, :, None] / 7.0 + 0.3 * k)
    return np.clip(v, 0, 255).astype(np.uint8)


def assert_frames_close(decoded: np.ndarray, original: np.ndarray) -> None:
    assert decoded.shape == original.shape and decoded.dtype == np.uint8
    err = np.abs(decoded.astype(np.int16) - original.astype(np.int16))
    assert err.mean() < 3.0, err.mean()
    # every decoded frame is nearest to its own original: no shift, drop or duplicate
    dist = np.abs(decoded[:, None].astype(np.float32) - original[None].astype(np.float32)).mean((2, 3, 4))
    assert (dist.argmin(1) == np.arange(len(original))).all()


def make_episodes(lengths, state_dim=4, action_dim=2, seed=0):
    rng = np.random.default_rng(seed)
    eps = []
    for e, t in enumerate(lengths):
        eps.append(dict(
            frames=smooth_frames(t, e),
            states=rng.normal(size=(t, state_dim)).astype(np.float32),
            actions=rng.uniform(-1, 1, size=(t, action_dim)).astype(np.float32),
            rewards=rng.normal(size=t).astype(np.float32),
            successes=np.arange(t) >= t - 2,
            instruction=["open the door", "close the drawer"][e % 2],
        ))
    return eps


def write(root: Path, eps, **kwargs) -> Path:
    with DatasetWriter(root, fps=FPS, state_dim=eps[0]["states"].shape[1], action_dim=eps[0]["actions"].shape[1],
                       image_size=(H, W), **kwargs) as w:
        for ep in eps:
            w.add_episode(**ep)
    return root


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    eps = make_episodes([6, 9, 4])
    return write(tmp_path_factory.mktemp("ds") / "demos", eps, robot_type="sawyer"), eps


# ---- round trip ----------------------------------------------------------------------------


def test_round_trip_episodes(written):
    root, eps = written
    ds = DemoDataset(root)
    assert ds.num_episodes == 3 and len(ds) == 19 and ds.fps == FPS
    assert ds.video_keys == ["observation.images.main"]
    assert ds.tasks == {0: "open the door", 1: "close the drawer"}
    assert [e.length for e in ds.episodes] == [6, 9, 4] and [e.start for e in ds.episodes] == [0, 6, 15]
    for i, ref in enumerate(eps):
        ep = ds.episode(i)
        t = len(ref["states"])
        assert ep["task"] == ref["instruction"]
        torch.testing.assert_close(ep["observation.state"], torch.from_numpy(ref["states"]), rtol=0, atol=0)
        torch.testing.assert_close(ep["action"], torch.from_numpy(ref["actions"]), rtol=0, atol=0)
        torch.testing.assert_close(ep["next.reward"], torch.from_numpy(ref["rewards"]), rtol=0, atol=0)
        assert ep["next.success"].dtype == torch.bool and ep["next.success"].tolist() == ref["successes"].tolist()
        assert ep["next.done"].tolist() == [False] * (t - 1) + [True]
        assert ep["frame_index"].tolist() == list(range(t)) and (ep["episode_index"] == i).all()
        torch.testing.assert_close(ep["timestamp"], torch.arange(t, dtype=torch.float32) / FPS)
        assert_frames_close(ep["observation.images.main"].numpy(), ref["frames"])
    assert ds.episode(2)["index"].tolist() == list(range(15, 19))


def test_metadata_files_follow_lerobot_v21(written):
    root, _ = written
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v2.1" and info["robot_type"] == "sawyer" and info["fps"] == FPS
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"], info["chunks_size"]) == (3, 19, 2, 1000)
    assert info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    assert info["video_path"] == "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
    video = info["features"]["observation.images.main"]
    assert video["dtype"] == "video" and video["shape"] == [H, W, 3]
    assert video["info"]["video.codec"] == "h264" and video["info"]["video.pix_fmt"] == "yuv420p"
    for key, dtype in [("next.reward", "float32"), ("next.done", "bool"), ("next.success", "bool"),
                       ("frame_index", "int64"), ("task_index", "int64"), ("timestamp", "float32")]:
        assert info["features"][key]["dtype"] == dtype and info["features"][key]["shape"] == [1]
    schema = pq.read_schema(root / "data/chunk-000/episode_000001.parquet")
    assert set(schema.names) == {k for k, f in info["features"].items() if f["dtype"] != "video"}
    assert schema.field("observation.state").type == pa.list_(pa.float32(), 4)
    assert (root / "videos/chunk-000/observation.images.main/episode_000002.mp4").is_file()
    episodes = [json.loads(line) for line in (root / "meta/episodes.jsonl").read_text().splitlines()]
    assert episodes[1] == {"episode_index": 1, "tasks": ["close the drawer"], "length": 9}
    stats = [json.loads(line) for line in (root / "meta/episodes_stats.jsonl").read_text().splitlines()]
    assert stats[0]["episode_index"] == 0 and stats[0]["stats"]["action"]["count"] == [6]
    assert np.asarray(stats[0]["stats"]["observation.images.main"]["mean"]).shape == (3, 1, 1)
    total = json.loads((root / "meta/stats.json").read_text())
    assert total["observation.state"]["count"] == [19]
    assert not list(root.rglob("*.tmp"))


def test_statistics_match_numpy(written):
    root, eps = written
    total = json.loads((root / "meta/stats.json").read_text())
    states = np.concatenate([e["states"] for e in eps]).astype(np.float64)
    np.testing.assert_allclose(total["observation.state"]["mean"], states.mean(0), rtol=1e-6)
    np.testing.assert_allclose(total["observation.state"]["std"], states.std(0), rtol=1e-6)
    np.testing.assert_allclose(total["observation.state"]["min"], states.min(0))
    frames = eps[1]["frames"].astype(np.float64) / 255
    image = json.loads((root / "meta/episodes_stats.jsonl").read_text().splitlines()[1])["stats"]["observation.images.main"]
    for key, ref in [("mean", frames.mean((0, 1, 2))), ("std", frames.std((0, 1, 2))), ("max", frames.max((0, 1, 2)))]:
        np.testing.assert_allclose(np.ravel(image[key]), ref, rtol=1e-9, atol=1e-12)
    assert image["count"] == [9]


def test_items_and_dataloader_batches(written):
    root, eps = written
    ds = DemoDataset(root, cache_episodes=1)
    item = ds[6]
    assert item["episode_index"].item() == 1 and item["frame_index"].item() == 0 and item["task"] == "close the drawer"
    assert ds[5]["next.done"].item() and not ds[6]["next.done"].item() and ds[-1]["index"].item() == 18
    assert item["observation.images.main"].shape == (H, W, 3) and item["observation.images.main"].dtype == torch.uint8
    with pytest.raises(IndexError):
        ds[19]
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2)
    batches = list(loader)
    assert len(batches) == 4
    b = batches[0]
    assert b["observation.state"].shape == (5, 4) and b["observation.state"].dtype == torch.float32
    assert b["action"].shape == (5, 2) and b["next.reward"].shape == (5,) and b["next.success"].dtype == torch.bool
    assert b["observation.images.main"].shape == (5, H, W, 3) and b["observation.images.main"].dtype == torch.uint8
    assert b["task"] == ["open the door"] * 5
    states = torch.cat([b["observation.state"] for b in batches])
    torch.testing.assert_close(states, torch.from_numpy(np.concatenate([e["states"] for e in eps])), rtol=0, atol=0)


def test_episode_shuffle_sampler_covers_every_frame_a_few_episodes_at_a_time(written):
    ds = DemoDataset(written[0])
    sampler = EpisodeShuffleSampler(ds, episodes_at_once=2, seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(len(ds))) and len(sampler) == len(ds)
    assert order != list(sampler)  # a new order each pass
    first = {int(np.searchsorted([0, 6, 15], i, side="right")) for i in order[:4]}
    assert len(first) <= 2
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, sampler=sampler)))
    assert batch["observation.images.main"].shape == (8, H, W, 3)


def test_av1_round_trip(tmp_path):
    eps = make_episodes([7])
    ds = DemoDataset(write(tmp_path / "av1", eps, codec="av1", crf=10))
    assert json.loads((tmp_path / "av1/meta/info.json").read_text())["features"]["observation.images.main"]["info"]["video.codec"] == "av1"
    assert_frames_close(ds.episode(0)["observation.images.main"].numpy(), eps[0]["frames"])


def test_writer_accepts_torch_tensors(tmp_path):
    ep = make_episodes([3])[0]
    with DatasetWriter(tmp_path / "t", fps=5, state_dim=4, action_dim=2, image_size=(H, W)) as w:
        w.add_episode(torch.from_numpy(ep["frames"]), torch.from_numpy(ep["states"]), torch.from_numpy(ep["actions"]),
                      torch.from_numpy(ep["rewards"]), torch.from_numpy(ep["successes"]), "reach")
    assert DemoDataset(tmp_path / "t")[2]["task"] == "reach"


# ---- hand-made LeRobot datasets ------------------------------------------------------------


def encode(path: Path, frames: np.ndarray, fps: int, codec: str = "mpeg4") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.bit_rate = 8_000_000
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            c.mux(s.encode(vf))
        c.mux(s.encode(None))


def jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_reads_a_lerobot_v21_dataset(tmp_path):
    # Laid out as LeRobot v2.1 writes it: variable-length list columns, CHW video shape (as in
    # datasets ported to v2.0), an extra camera, no reward/success columns, fps 15, mpeg4 video.
    root, fps = tmp_path / "lerobot_v21", 15
    lengths, tasks = [5, 8], ["Pick up the cube.", "Pick up the cube."]
    features = {
        "action": {"dtype": "float32", "shape": [6], "names": ["j0", "j1", "j2", "j3", "j4", "gripper"]},
        "observation.state": {"dtype": "float32", "shape": [6], "names": ["j0", "j1", "j2", "j3", "j4", "gripper"]},
        "observation.images.top": {"dtype": "video", "shape": [3, H, W], "names": ["channels", "height", "width"],
                                   "info": {"video.fps": 15.0, "video.codec": "mpeg4", "video.pix_fmt": "yuv420p",
                                            "video.is_depth_map": False, "has_audio": False}},
        "observation.images.wrist": {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channel"]},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    info = {"codebase_version": "v2.1", "robot_type": "so100", "total_episodes": 2, "total_frames": 13,
            "total_tasks": 1, "total_videos": 4, "total_chunks": 1, "chunks_size": 1000, "fps": fps,
            "splits": {"train": "0:2"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": features}
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    jsonl(root / "meta/tasks.jsonl", [{"task_index": 0, "task": "Pick up the cube."}])
    jsonl(root / "meta/episodes.jsonl", [{"episode_index": e, "tasks": [tasks[e]], "length": n} for e, n in enumerate(lengths)])
    jsonl(root / "meta/episodes_stats.jsonl", [{"episode_index": e, "stats": {}} for e in range(2)])
    rng = np.random.default_rng(1)
    states, frames, index = [], [], 0
    for e, n in enumerate(lengths):
        s = rng.normal(size=(n, 6)).astype(np.float32)
        states.append(s)
        pq.write_table(pa.table({
            "action": pa.array((s * 2).tolist(), pa.list_(pa.float32())),
            "observation.state": pa.array(s.tolist(), pa.list_(pa.float32())),
            "timestamp": pa.array(np.arange(n, dtype=np.float32) / fps),
            "frame_index": pa.array(np.arange(n)),
            "episode_index": pa.array(np.full(n, e)),
            "index": pa.array(index + np.arange(n)),
            "task_index": pa.array(np.zeros(n, np.int64)),
        }), _mkparent(root / f"data/chunk-000/episode_{e:06d}.parquet"))
        index += n
        f = smooth_frames(n, 10 + e)
        frames.append(f)
        encode(root / f"videos/chunk-000/observation.images.top/episode_{e:06d}.mp4", f, fps)
        encode(root / f"videos/chunk-000/observation.images.wrist/episode_{e:06d}.mp4", 255 - f, fps, "libx264")

    ds = DemoDataset(root)
    assert (len(ds), ds.num_episodes, ds.fps) == (13, 2, 15)
    assert ds.video_keys == ["observation.images.top", "observation.images.wrist"]
    ep = ds.episode(1)
    torch.testing.assert_close(ep["observation.state"], torch.from_numpy(states[1]), rtol=0, atol=0)
    torch.testing.assert_close(ep["action"], torch.from_numpy(states[1] * 2), rtol=0, atol=0)
    assert ep["task"] == "Pick up the cube." and "next.reward" not in ep
    assert_frames_close(ep["observation.images.top"].numpy(), frames[1])
    assert_frames_close(ep["observation.images.wrist"].numpy(), 255 - frames[1])
    item = ds[5]
    assert item["episode_index"].item() == 1 and item["observation.images.top"].shape == (H, W, 3)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=13)))
    assert batch["observation.state"].shape == (13, 6) and batch["index"].tolist() == list(range(13))


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_reads_a_lerobot_v30_dataset(tmp_path):
    # v3.0: two episodes concatenated in one parquet file and one mp4; episode metadata in parquet.
    root, fps, lengths = tmp_path / "lerobot_v30", 10, [4, 6]
    info = {"codebase_version": "v3.0", "robot_type": None, "total_episodes": 2, "total_frames": 10, "total_tasks": 2,
            "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 500, "fps": fps,
            "splits": {"train": "0:2"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": {
                "observation.state": {"dtype": "float32", "shape": [3], "names": None},
                "action": {"dtype": "float32", "shape": [2], "names": None},
                "observation.images.front": {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"]},
                "next.reward": {"dtype": "float32", "shape": [1], "names": None},
                "timestamp": {"dtype": "float32", "shape": [1], "names": None},
                "frame_index": {"dtype": "int64", "shape": [1], "names": None},
                "episode_index": {"dtype": "int64", "shape": [1], "names": None},
                "index": {"dtype": "int64", "shape": [1], "names": None},
                "task_index": {"dtype": "int64", "shape": [1], "names": None},
            }}
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info))
    pq.write_table(pa.table({"task": ["push the block", "stack the cups"], "task_index": [0, 1]}),
                   root / "meta/tasks.parquet")
    states = np.arange(30, dtype=np.float32).reshape(10, 3)
    frame_index = np.concatenate([np.arange(n) for n in lengths])
    pq.write_table(pa.table({
        "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(states.ravel()), 3),
        "action": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(20, np.float32)), 2),
        "next.reward": pa.array(np.linspace(0, 1, 10, dtype=np.float32)),
        "timestamp": pa.array(frame_index.astype(np.float32) / fps),
        "frame_index": pa.array(frame_index),
        "episode_index": pa.array(np.repeat([0, 1], lengths)),
        "index": pa.array(np.arange(10)),
        "task_index": pa.array(np.repeat([1, 0], lengths)),
    }), _mkparent(root / "data/chunk-000/file-000.parquet"))
    frames = smooth_frames(10, 5)
    encode(root / "videos/observation.images.front/chunk-000/file-000.mp4", frames, fps, "libx264")
    pq.write_table(pa.table({
        "episode_index": [0, 1], "tasks": [["stack the cups"], ["push the block"]], "length": lengths,
        "data/chunk_index": [0, 0], "data/file_index": [0, 0],
        "dataset_from_index": [0, 4], "dataset_to_index": [4, 10],
        "videos/observation.images.front/chunk_index": [0, 0], "videos/observation.images.front/file_index": [0, 0],
        "videos/observation.images.front/from_timestamp": [0.0, 0.4],
        "videos/observation.images.front/to_timestamp": [0.4, 1.0],
        "meta/episodes/chunk_index": [0, 0], "meta/episodes/file_index": [0, 0],
    }), _mkparent(root / "meta/episodes/chunk-000/file-000.parquet"))

    ds = DemoDataset(root)
    assert (len(ds), ds.num_episodes) == (10, 2) and ds.tasks == {0: "push the block", 1: "stack the cups"}
    ep = ds.episode(1)
    assert ep["task"] == "push the block" and ep["frame_index"].tolist() == list(range(6))
    torch.testing.assert_close(ep["observation.state"], torch.from_numpy(states[4:]), rtol=0, atol=0)
    assert_frames_close(ep["observation.images.front"].numpy(), frames[4:])
    assert_frames_close(ds.episode(0)["observation.images.front"].numpy(), frames[:4])
    assert ds[3]["task"] == "stack the cups" and ds[4]["frame_index"].item() == 0


# ---- bad input -----------------------------------------------------------------------------


@pytest.fixture()
def copy_of(written, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(written[0], dst)
    return dst


def test_missing_root_and_metadata(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DemoDataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="info.json not found.*not a LeRobot dataset"):
        DemoDataset(tmp_path / "empty")


def test_unfinalized_recording_is_not_a_dataset(tmp_path):
    w = DatasetWriter(tmp_path / "killed", fps=FPS, state_dim=4, action_dim=2, image_size=(H, W))
    w.add_episode(**make_episodes([3])[0])
    with pytest.raises(FileNotFoundError, match="interrupted before finalize"):
        DemoDataset(tmp_path / "killed")
    with pytest.raises(FileExistsError, match="overwrite"):
        DatasetWriter(tmp_path / "killed", fps=FPS, state_dim=4, action_dim=2, image_size=(H, W))
    DatasetWriter(tmp_path / "killed", fps=FPS, state_dim=4, action_dim=2, image_size=(H, W), overwrite=True)
    assert not any((tmp_path / "killed").iterdir())


@pytest.mark.parametrize("edit, error, match", [
    (lambda i: "{\"codebase_version\": \"v2.1\", \"fps\": 1", ValueError, r"info.json is not valid JSON"),
    (lambda i: json.dumps({**i, "fps": "fast"}), ValueError, r"'fps' must be a positive integer"),
    (lambda i: json.dumps({**i, "features": []}), ValueError, r"'features' must be a non-empty object"),
    (lambda i: json.dumps({**i, "codebase_version": "v1.6"}), ValueError, r"v1.6.*not supported.*convert_dataset_v1_to_v2"),
    (lambda i: json.dumps({**i, "codebase_version": "v4.0"}), ValueError, r"v4.0.*not supported"),
    (lambda i: json.dumps({**i, "total_frames": 7}), ValueError, r"total_frames=7 but the episodes add up to 19"),
    (lambda i: json.dumps({**i, "total_episodes": 5}), ValueError, r"lists 3 episodes but .* total_episodes=5"),
])
def test_malformed_info_json(copy_of, edit, error, match):
    path = copy_of / "meta/info.json"
    path.write_text(edit(json.loads(path.read_text())))
    with pytest.raises(error, match=match):
        DemoDataset(copy_of)


def test_truncated_metadata_lines(copy_of):
    path = copy_of / "meta/episodes.jsonl"
    path.write_text(path.read_text()[:-20])
    with pytest.raises(ValueError, match=r"episodes.jsonl, line 3 is not valid JSON"):
        DemoDataset(copy_of)


def test_truncated_parquet(copy_of):
    path = copy_of / "data/chunk-000/episode_000001.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    ds = DemoDataset(copy_of)
    ds.episode(0)
    with pytest.raises(ValueError, match=r"episode_000001.parquet is not a readable parquet file.*re-record"):
        ds.episode(1)


def test_parquet_missing_a_column(copy_of):
    path = copy_of / "data/chunk-000/episode_000000.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["action"]), path)
    with pytest.raises(ValueError, match=r"episode_000000.parquet lacks column\(s\) \['action'\]"):
        DemoDataset(copy_of)[0]


def test_missing_data_file(copy_of):
    (copy_of / "data/chunk-000/episode_000002.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"episode_000002.parquet not found"):
        DemoDataset(copy_of).episode(2)


def test_truncated_mp4(copy_of):
    path = copy_of / "videos/chunk-000/observation.images.main/episode_000001.mp4"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"episode_000001.mp4: cannot decode the video.*truncated or corrupt"):
        DemoDataset(copy_of).episode(1)


def test_video_frame_count_mismatch(copy_of):
    encode(copy_of / "videos/chunk-000/observation.images.main/episode_000000.mp4", smooth_frames(4, 0), FPS, "libx264")
    with pytest.raises(ValueError, match=r"episode_000000.mp4 has 4 frames but .*episode_000000.parquet has 6 rows"):
        DemoDataset(copy_of)[0]


# ---- writer input checks -------------------------------------------------------------------


def test_writer_rejects_bad_episodes(tmp_path):
    w = DatasetWriter(tmp_path / "w", fps=FPS, state_dim=4, action_dim=2, image_size=(H, W))
    ep = make_episodes([3])[0]
    with pytest.raises(ValueError, match=r"frames must be uint8 \[T, 32, 48, 3\]"):
        w.add_episode(**{**ep, "frames": ep["frames"][:, :16]})
    with pytest.raises(ValueError, match=r"states must have shape \[3, 4\]"):
        w.add_episode(**{**ep, "states": ep["states"][:2]})
    with pytest.raises(ValueError, match=r"actions\[1, 0\] is not finite"):
        w.add_episode(**{**ep, "actions": np.where(np.arange(6).reshape(3, 2) == 2, np.nan, ep["actions"])})
    with pytest.raises(TypeError, match="successes must be bool"):
        w.add_episode(**{**ep, "successes": np.full(3, 0.5)})
    with pytest.raises(ValueError, match="instruction"):
        w.add_episode(**{**ep, "instruction": ""})
    with pytest.raises(ValueError, match="no episodes were added"):
        w.finalize()
    w.add_episode(**ep)
    w.finalize()
    with pytest.raises(RuntimeError, match="finalized"):
        w.add_episode(**ep)


def test_writer_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="even"):
        DatasetWriter(tmp_path / "a", fps=FPS, state_dim=4, action_dim=2, image_size=(33, 48))
    with pytest.raises(ValueError, match="fps"):
        DatasetWriter(tmp_path / "a", fps=0, state_dim=4, action_dim=2)
    with pytest.raises(ValueError, match="codec"):
        DatasetWriter(tmp_path / "a", fps=FPS, state_dim=4, action_dim=2, codec="vp9")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not overwriting.*notes.txt"):
        DatasetWriter(tmp_path / "mine", fps=FPS, state_dim=4, action_dim=2, overwrite=True)
    assert (tmp_path / "mine/notes.txt").exists()


def _decode_in_child(path: str) -> None:
    from sim.dataset.video import decode_video

    frames, _ = decode_video(Path(path))
    assert frames.shape[0] == 12


def test_decoding_in_a_forked_child_after_the_parent_decoded(tmp_path):
    """DataLoader workers fork after the parent read a few items: the child's colour conversion
    must not wait on threads that only exist in the parent (it hung in CI once)."""
    import multiprocessing

    from sim.dataset.video import decode_video, encode_video

    rng = np.random.default_rng(0)
    path = tmp_path / "v.mp4"
    encode_video(path, rng.integers(0, 255, (12, 240, 320, 3), dtype=np.uint8), fps=10)
    decode_video(path)
    children = [multiprocessing.get_context("fork").Process(target=_decode_in_child, args=(str(path),))
                for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    hung = [c for c in children if c.is_alive()]
    for c in hung:
        c.kill()
    assert not hung, "decoding hung in a forked child"
    assert all(c.exitcode == 0 for c in children)

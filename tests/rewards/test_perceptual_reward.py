import numpy as np
import pytest
import torch

from embodied import ops
from embodied.rewards.features import (PixelFeatures, TimeContrastiveEncoder, _sample_pairs, clock_gaps, make_backbone,
                                       visual_progress)
from embodied.rewards.perceptual import PerceptualReward, load_demo_frames
from sim.record import RecordConfig, record


@pytest.fixture(scope="module")
def window_demos(tmp_path_factory):
    """Five scripted window-close demonstrations at 48 x 48 (sim.record, ~10 s)."""
    out = tmp_path_factory.mktemp("demos") / "window-close"
    record(RecordConfig(task="metaworld/window-close", episodes=5, out=str(out), num_envs=5,
                        render_size=[48, 48], crf=10), log=lambda *_: None)
    return load_demo_frames(out)


def _rank_corr(x: torch.Tensor) -> float:
    """Spearman correlation of x with time."""
    ranks = x.argsort().argsort().double()
    t = torch.arange(len(x), dtype=torch.float64)
    return float(torch.corrcoef(torch.stack([ranks, t]))[0, 1])


@pytest.mark.parametrize("backbone,args", [("tcn", {"iterations": 150, "image_size": 48}), ("pixels", {})])
def test_reward_ranks_later_steps_of_a_held_out_demo_higher(window_demos, backbone, args):
    reward = PerceptualReward(backbone, args, num_steps=4, log_space=False).fit(window_demos[:4], seed=0)
    held_out = window_demos[4]
    r = reward(held_out)
    assert r.shape == (len(held_out),) and r.dtype == torch.float32
    assert bool(((r > 0) & (r <= 1)).all())
    quarter = len(r) // 4
    assert r[-quarter:].mean() > 2 * r[:quarter].mean()
    assert _rank_corr(r) > 0.5
    # the log-space reward is the log of the same sum: same ranking, no longer bounded below by 0
    reward.log_space = True
    log_r = reward(held_out)
    assert bool((log_r <= 0).all())
    torch.testing.assert_close(log_r, r.log(), rtol=1e-4, atol=1e-4)
    assert log_r[-quarter:].mean() > log_r[:quarter].mean() + 0.5
    # every demo is split into 4 increasing steps
    assert all(len(b) == 4 and b == sorted(b) and b[0] == 0 for b in reward.boundaries)


def test_scores_match_the_gaussian_naive_bayes_formula(window_demos):
    reward = PerceptualReward("pixels", {"grid": 8}, num_steps=3, top_n=5, log_space=False).fit(window_demos[:3])
    frames = window_demos[3][::7]
    total, steps = reward.score_steps(frames)
    s = reward.state
    z = (PixelFeatures(8).encode(frames) - s["center"]) / s["scale"]
    expected = torch.stack([
        torch.exp(-0.5 * (((z[:, s["index"][g]] - s["mean"][g]) * s["inv_std"][g]) ** 2).mean(1)) for g in range(3)
    ], 1)
    torch.testing.assert_close(steps, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(total, (expected * torch.tensor([1, 2, 4]) / 7).sum(1), rtol=1e-4, atol=1e-6)
    reward.log_space = True
    log_total, log_steps = reward.score_steps(frames)
    torch.testing.assert_close(log_steps, expected.log(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(log_total, (expected * torch.tensor([1, 2, 4]) / 7).sum(1).log(), rtol=1e-4, atol=1e-4)


def test_fit_logs_how_many_features_each_step_keeps(window_demos):
    # top_n at or above the feature width keeps them all (no selection); the log says so
    for top_n, kept in ((5, 5), (1000, 3 * 8 * 8)):
        lines: list[str] = []
        reward = PerceptualReward("pixels", {"grid": 8}, num_steps=2, top_n=top_n)
        reward.fit(window_demos[:2], log=lines.append)
        assert reward.state is not None and reward.state["index"].shape == (2, kept)
        assert f"{kept} of {3 * 8 * 8} features per step" in lines[-1]


def _with_grey_corner(demo: torch.Tensor, level: int) -> torch.Tensor:
    out = demo.clone()
    out[:, :18, :18] = level  # wider than the resize filter: the top-left features see only this
    return out


@pytest.mark.parametrize("min_scale, bounded", [(PixelFeatures.min_scale, True), (1e-6, False)])
def test_a_feature_the_demos_never_moved_cannot_dominate_the_reward(window_demos, monkeypatch, min_scale, bounded):
    monkeypatch.setattr(PixelFeatures, "min_scale", min_scale)
    # every feature selected, the still corner's among them
    reward = PerceptualReward("pixels", {"grid": 8}, num_steps=4, top_n=3 * 8 * 8).fit(
        [_with_grey_corner(d, 100) for d in window_demos[:3]])
    # the corner 30 grey levels brighter: a change to notice, not a catastrophe
    drop = (reward(_with_grey_corner(window_demos[3], 100)) - reward(_with_grey_corner(window_demos[3], 130)))
    assert bool((drop > 0).all())
    if bounded:
        assert drop.max() < 10, drop.max()
    else:  # what the noise floor removes: z and the step's 1/std both divided by ~0
        assert drop.min() > 1e6, drop.min()


def test_save_and_load_round_trip(window_demos, tmp_path):
    reward = PerceptualReward("tcn", {"iterations": 20, "image_size": 32}, num_steps=3,
                              log_space=False).fit(window_demos[:3])
    path = reward.save(tmp_path / "r.safetensors")
    loaded = PerceptualReward.load(path)
    assert loaded.log_space is False
    frames = window_demos[4]
    torch.testing.assert_close(loaded(frames), reward(frames))
    assert loaded.boundaries == reward.boundaries


def test_tcn_fit_is_deterministic_for_a_seed(window_demos):
    a = TimeContrastiveEncoder(image_size=32, iterations=10)
    b = TimeContrastiveEncoder(image_size=32, iterations=10)
    a.fit(window_demos[:2], seed=3)
    b.fit(window_demos[:2], seed=3)
    torch.testing.assert_close(a.encode(window_demos[2]), b.encode(window_demos[2]))


def test_reward_uses_the_compiled_op(window_demos, monkeypatch):
    calls = []
    real = ops.perceptual_reward
    monkeypatch.setattr(ops, "perceptual_reward", lambda *a: calls.append(1) or real(*a))
    PerceptualReward("pixels", num_steps=2).fit(window_demos[:2])(window_demos[2][:4])
    assert calls


def test_min_length_left_unset_is_a_tenth_of_the_shortest_demo_or_one_kth_for_many_steps(window_demos):
    assert PerceptualReward("pixels", num_steps=4).min_length == pytest.approx(0.1)
    reward = PerceptualReward("pixels", num_steps=16)
    assert reward.min_length == pytest.approx(1 / 16)
    shortest = min(len(d) for d in window_demos)
    reward.fit(window_demos)
    for starts, demo in zip(reward.boundaries, window_demos):
        lengths = [b - a for a, b in zip(starts, starts[1:] + [len(demo)])]
        assert min(lengths) >= max(1, int(shortest / 16))
    with pytest.raises(ValueError, match=r"min_length .* \(0, 0.0625\], got 0.1; leave it unset"):
        PerceptualReward("pixels", num_steps=16, min_length=0.1)


def test_bad_inputs_give_clear_errors(window_demos, tmp_path):
    with pytest.raises(RuntimeError, match="not fitted"):
        PerceptualReward("pixels")(window_demos[0])
    reward = PerceptualReward("pixels", num_steps=2).fit(window_demos[:2])
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        reward(window_demos[0][0])
    with pytest.raises(TypeError, match="uint8"):
        reward(window_demos[0].float())
    with pytest.raises(ValueError, match="3 channels"):
        reward(torch.zeros(2, 8, 8, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="num_steps"):
        PerceptualReward("pixels", num_steps=0)
    with pytest.raises(TypeError, match="log_space must be a bool"):
        PerceptualReward("pixels", log_space="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown feature backbone"):
        PerceptualReward("resnet")
    with pytest.raises(ValueError, match="too few"):
        PerceptualReward("pixels", num_steps=4, min_length=0.25).fit([window_demos[0][:3]])
    with pytest.raises(ValueError, match="no demonstrations"):
        PerceptualReward("pixels").fit([])
    with pytest.raises(FileNotFoundError, match="sim.record"):
        PerceptualReward("pixels").fit(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no saved perceptual reward"):
        PerceptualReward.load(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="torch.save"):
        make_backbone("torchvision", arch="resnet18", weights=str(tmp_path / "resnet18.pth"))
    with pytest.raises(ValueError, match="local weights file"):
        make_backbone("torchvision", arch="resnet18")


def test_torchvision_backbone_from_a_local_file(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.save(torchvision.models.get_model("resnet18", weights=None).state_dict(), tmp_path / "r18.pth")
    feats = make_backbone("torchvision", arch="resnet18", weights=str(tmp_path / "r18.pth"), image_size=64)
    out = feats.encode(torch.from_numpy(np.random.default_rng(0).integers(0, 255, (3, 40, 40, 3), dtype=np.uint8)))
    assert out.shape == (3, 512) and torch.isfinite(out).all()


def test_open_clip_backbone(window_demos, tiny_clip_dir):
    reward = PerceptualReward("open_clip", {"model_name": f"local-dir:{tiny_clip_dir}", "pretrained": None},
                              num_steps=2, top_n=8).fit(window_demos[:2])
    r = reward(window_demos[2][:5])
    assert r.shape == (5,) and torch.isfinite(r).all()
    assert reward.features.encode(window_demos[2][:3]).shape == (3, 32)


def _moving_then_still(moving: int = 12, still: int = 12) -> torch.Tensor:
    """A bright square crossing a 32 x 32 frame, then the last frame held: float [L, 3, 32, 32]."""
    frames = torch.zeros(moving + still, 3, 32, 32)
    for t in range(moving + still):
        x = 2 * min(t, moving - 1)
        frames[t, :, 8:16, x:x + 8] = 1.0
    return frames


def test_visual_progress_stands_still_while_the_demo_does():
    clock = visual_progress(_moving_then_still())
    assert clock.dtype == torch.float64 and clock.shape == (24,)
    assert clock[0] == 0 and abs(float(clock[-1]) - 23) < 1e-9
    assert bool((clock.diff() >= 0).all())
    # the square moves at a constant speed, so the clock ticks evenly, then stops
    torch.testing.assert_close(clock[1:12].diff(), torch.full((10,), 23 / 11, dtype=torch.float64))
    assert bool((clock[11:] == clock[11]).all())
    # a demo that never changes has no visual clock: the frame index stands in
    torch.testing.assert_close(visual_progress(torch.zeros(5, 3, 32, 32)), torch.arange(5, dtype=torch.float64))


@pytest.mark.parametrize("clock", ["progress", "frames"])
def test_tcn_triplets_follow_the_clock(clock):
    gaps = [clock_gaps(_moving_then_still(), clock)]
    anchor = torch.full((2000,), 20)  # in the still end
    gen = torch.Generator().manual_seed(0)
    positive, negative = _sample_pairs(gaps, torch.zeros(2000, dtype=torch.long), anchor, 3, 0.25, gen)
    assert bool((gaps[0][20, positive] <= 3).all()) and bool((gaps[0][20, negative] >= 6).all())
    still_negatives = int((negative >= 11).sum())
    if clock == "progress":
        # every held frame is a positive of every other, never a negative
        assert set(positive.tolist()) >= set(range(11, 24)) and still_negatives == 0
    else:
        # the frame clock contrasts identical frames: the drift the network then learns to read
        assert still_negatives > 0


def test_tcn_rejects_an_unknown_clock():
    with pytest.raises(ValueError, match="clock must be one of"):
        TimeContrastiveEncoder(clock="wall")

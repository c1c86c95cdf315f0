"""CLIPReward against open_clip's own pipeline, on a tiny random open_clip model (no downloads)."""

import json
import math
import warnings

import huggingface_hub.constants
import numpy as np
import open_clip
import open_clip.factory
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import embodied.rewards.clip as clip_module
from embodied.rewards.clip import CLIPImageEncoder, CLIPReward

TINY = "embodied-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
GOAL = ["a humanoid robot kneeling", "a robot on its knees"]
BASELINE = ["a humanoid robot"]
CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module", autouse=True)
def tiny_model_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("open_clip_configs") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    yield
    # leave open_clip's global registry as it was
    open_clip.factory._MODEL_CONFIG_PATHS.remove(path)
    open_clip.factory._MODEL_CONFIGS.pop(TINY, None)


def make_reward(**kwargs) -> CLIPReward:
    torch.manual_seed(kwargs.pop("seed", 0))
    kwargs = {"model_name": TINY, "pretrained": None, "goal_prompts": GOAL, "baseline_prompts": BASELINE, **kwargs}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*random weights", category=UserWarning)
        return CLIPReward(**kwargs)


@pytest.fixture(scope="module")
def reward(tiny_model_config) -> CLIPReward:
    return make_reward()


def smooth_frames(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Rendered-like frames: coarse random colour fields upsampled, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 6, 6, generator=g)
    x = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    x = x + 0.05 * torch.rand(n, 3, h, w, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def open_clip_reward(reward: CLIPReward, frames: torch.Tensor, alpha: float) -> torch.Tensor:
    """VLM-RM computed the paper's way with open_clip itself: its PIL eval transform per frame,
    encode_image / encode_text, and the explicit D x D projection P, in float64."""
    _, _, preprocess = open_clip.create_model_and_transforms(TINY, pretrained=None)
    tokenizer = open_clip.get_tokenizer(TINY)
    model = reward.model
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.fromarray(f.numpy())) for f in frames])
        x = F.normalize(model.encode_image(pixels).double(), dim=-1)
        g = F.normalize(model.encode_text(tokenizer(GOAL)).double(), dim=-1).mean(0)
        b = F.normalize(model.encode_text(tokenizer(BASELINE)).double(), dim=-1).mean(0)
    d = g - b
    P = alpha * torch.outer(d, d) / (d @ d) + (1 - alpha) * torch.eye(d.shape[0], dtype=torch.float64)
    y = (x - g) @ P
    return 1 - 0.5 * (y * y).sum(-1)


@pytest.mark.parametrize("h, w, atol", [
    (32, 32, 1e-6),   # already the model's size: no resize, only float32 rounding
    (48, 64, 5e-5),   # short side resized, then centre-cropped
    (64, 48, 5e-5),
    (100, 37, 5e-5),  # taller than 2:1: Pillow resamples vertically first
    (20, 20, 5e-5),   # upsampled
])
def test_reward_matches_open_clip_pil_pipeline(reward, h, w, atol):
    # atol: the batched torch resize and PIL's differ by one grey level on < 1% of the pixels
    # (torch's and PIL's fixed-point filter weights round differently): rewards move by < 4e-5
    # here, while the frames' rewards spread over ~1e-2
    frames = smooth_frames(6, h, w, seed=h * w)
    got = reward(frames)
    assert got.dtype == torch.float32 and got.shape == (6,) and got.device == frames.device
    want = open_clip_reward(reward, frames, alpha=0.5)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=atol)
    assert want.std() > 10 * atol  # the frames do get different rewards


@pytest.mark.parametrize("image_size", [32, (32, 48), (40, 24)])
@pytest.mark.parametrize("mode", ["shortest", "longest", "squash"])
def test_preprocess_matches_open_clip_transform(reward, monkeypatch, image_size, mode):
    size = image_size if isinstance(image_size, tuple) else (image_size, image_size)
    monkeypatch.setattr(reward.encoder, "image_size", size)
    monkeypatch.setattr(reward.encoder, "resize_mode", mode)
    transform = open_clip.image_transform(image_size, is_train=False, resize_mode=mode)
    g = torch.Generator().manual_seed(len(mode) * size[1])
    for h, w in [(48, 64), (64, 48), (100, 37), (37, 100), (20, 20), (7, 90), size]:
        # black/white noise: the worst case for bicubic overshoot and its clipping
        frames = (torch.randint(0, 2, (2, h, w, 3), generator=g) * 255).to(torch.uint8)
        got = reward.preprocess(frames)
        want = torch.stack([transform(Image.fromarray(f.numpy())) for f in frames])
        assert got.shape == want.shape == (2, 3, *size)
        grey_levels = ((got - want) / reward.encoder._scale).abs()
        assert grey_levels.max() <= 2.01, (h, w, grey_levels.max())
        assert (grey_levels > 0.5).float().mean() < 0.05


@pytest.mark.parametrize("major, h, w, new_h, new_w, vertical_first", [
    (13, 100, 37, 86, 32, True),     # the height shrinks by more than twice the width's pixels
    (13, 300, 200, 100, 150, True),
    (13, 37, 100, 32, 86, False),
    (13, 64, 48, 42, 32, False),
    (13, 20, 20, 32, 32, False),     # upsampled
    (12, 100, 37, 86, 32, False),    # Pillow 12 and older: always horizontal first
    (11, 300, 200, 100, 150, False),
])
def test_resampling_order_follows_the_installed_pillow(monkeypatch, major, h, w, new_h, new_w, vertical_first):
    # the comparison above runs with the installed Pillow only; this pins the other versions' order
    monkeypatch.setattr(clip_module, "_PILLOW_MAJOR", major)
    assert clip_module._pillow_resamples_vertically_first(h, w, new_h, new_w) is vertical_first


def test_alpha_zero_is_one_minus_half_squared_distance_to_goal(reward):
    frames = smooth_frames(5, 40, 40, seed=1)
    r0 = make_reward(alpha=0.0)
    x = r0.embed_images(frames)
    torch.testing.assert_close(r0(frames), 1 - 0.5 * ((x - r0.goal) ** 2).sum(-1))
    torch.testing.assert_close(r0(frames).double(), open_clip_reward(r0, frames, alpha=0.0), rtol=0, atol=1e-4)


def test_text_means_are_not_renormalised(reward):
    tokenizer = open_clip.get_tokenizer(TINY)
    with torch.no_grad():
        text = F.normalize(reward.model.encode_text(tokenizer(GOAL)), dim=-1)
    torch.testing.assert_close(reward.goal, text.mean(0))
    assert reward.goal.norm() < 0.999 and reward.baseline.norm() == pytest.approx(1.0, abs=1e-5)
    assert reward.goal.dtype == reward.baseline.dtype == torch.float32 and reward.goal.shape == (32,)


def test_chunked_batches_equal_one_batch(reward):
    frames = smooth_frames(10, 48, 40, seed=2)
    chunked = make_reward(batch_size=3)
    torch.testing.assert_close(chunked(frames), reward(frames), rtol=0, atol=1e-6)
    torch.testing.assert_close(chunked.embed_images(frames), reward.embed_images(frames), rtol=0, atol=1e-6)


def test_text_is_embedded_once_at_construction(monkeypatch):
    calls = []
    encode_text = open_clip.model.CLIP.encode_text

    def counting(self, *args, **kwargs):
        calls.append(args[0].shape[0])
        return encode_text(self, *args, **kwargs)

    monkeypatch.setattr(open_clip.model.CLIP, "encode_text", counting)
    r = make_reward(batch_size=4)
    assert calls == [len(GOAL) + len(BASELINE)]
    for _ in range(3):
        r(smooth_frames(9, 32, 32))
    assert calls == [len(GOAL) + len(BASELINE)]


def test_model_is_frozen_and_in_eval_mode(reward):
    assert not reward.model.training
    assert not any(p.requires_grad for p in reward.model.parameters())
    assert reward.precision == "fp32" and reward.encoder.image_size == (32, 32)


def test_step_batch_dict_empty_batch_and_embeddings(reward):
    frames = smooth_frames(3, 36, 36, seed=3)
    torch.testing.assert_close(reward({"frames": frames, "obs": torch.zeros(3, 4)}), reward(frames))
    empty = reward(torch.zeros(0, 36, 36, 3, dtype=torch.uint8))
    assert empty.shape == (0,) and empty.dtype == torch.float32
    assert reward.embed_images(torch.zeros(0, 8, 8, 3, dtype=torch.uint8)).shape == (0, 32)
    x = reward.embed_images(frames)
    assert x.shape == (3, 32) and x.dtype == torch.float32
    torch.testing.assert_close(x.norm(dim=-1), torch.ones(3))
    assert reward.needs == frozenset({"frames"})


def test_image_encoder_alone(reward):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*random weights", category=UserWarning)
        encoder = CLIPImageEncoder(TINY, None, batch_size=2)
    assert encoder.embed_dim == 32 and encoder.device == torch.device("cpu")
    encoder.model.load_state_dict(reward.model.state_dict())
    frames = smooth_frames(5, 40, 30, seed=6)
    torch.testing.assert_close(encoder(frames), reward.embed_images(frames), rtol=0, atol=1e-6)
    assert encoder(torch.zeros(0, 40, 30, 3, dtype=torch.uint8)).shape == (0, 32)


def test_local_checkpoint_file_loads_its_weights(reward, tmp_path):
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(reward.model.state_dict(), path)
    loaded = CLIPReward(TINY, pretrained=str(path), goal_prompts=GOAL, baseline_prompts=BASELINE)
    torch.testing.assert_close(loaded.goal, reward.goal)
    frames = smooth_frames(4, 50, 50, seed=4)
    torch.testing.assert_close(loaded(frames), reward(frames))


def test_random_weights_warn():
    with pytest.warns(UserWarning, match="random weights.*meaningless"):
        CLIPReward(TINY, pretrained=None)


def test_missing_checkpoint_file_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "open_clip_pytorch_model.bin"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        CLIPReward(TINY, pretrained=str(missing))


def test_unknown_tag_names_model_tag_and_local_file_option():
    with pytest.raises(RuntimeError, match=r"'no_such_tag'.*'ViT-B-32'.*laion2b_s34b_b79k.*/path/to/"):
        CLIPReward("ViT-B-32", pretrained="no_such_tag")


def test_weights_unavailable_offline_raise_with_guidance(monkeypatch, tmp_path):
    # offline mode and an empty cache: fails at once (without it, huggingface_hub retries ~50 s)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"'ViT-B-32'.*'laion2b_s34b_b79k'.*pretrained='/path/to/"):
        CLIPReward("ViT-B-32", pretrained="laion2b_s34b_b79k")


def test_unknown_model_name_points_to_list_models():
    with pytest.raises(ValueError, match=r"'ViT-Q-99'.*open_clip.list_models\(\)"):
        CLIPReward("ViT-Q-99", pretrained=None)


@pytest.mark.parametrize("frames, error, match", [
    (torch.zeros(8, 8, 3, dtype=torch.uint8), ValueError, r"\[B, H, W, 3\]"),
    (torch.zeros(2, 8, 8, 4, dtype=torch.uint8), ValueError, "3 channels"),
    (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), ValueError, "3 channels"),
    (torch.zeros(2, 8, 8, 3), TypeError, "uint8"),
])
def test_bad_frames(reward, frames, error, match):
    with pytest.raises(error, match=match):
        reward(frames)
    with pytest.raises(error, match=match):
        reward({"frames": frames})
    with pytest.raises(error, match=match):
        reward.embed_images(frames)


def test_numpy_frames_are_refused(reward):
    with pytest.raises(TypeError, match="torch.Tensor"):
        reward({"frames": np.zeros((2, 8, 8, 3), np.uint8)})


@pytest.mark.parametrize("kwargs, error, match", [
    ({"goal_prompts": []}, ValueError, "goal_prompts is empty"),
    ({"baseline_prompts": ()}, ValueError, "baseline_prompts is empty"),
    ({"goal_prompts": "a robot kneeling"}, TypeError, r"single string.*\['a robot kneeling'\]"),
    ({"goal_prompts": ["a robot", 3]}, TypeError, r"goal_prompts\[1\] must be a string"),
    ({"baseline_prompts": ["  "]}, ValueError, "blank"),
    ({"alpha": -0.1}, ValueError, r"alpha must be a number in \[0, 1\]"),
    ({"alpha": 1.5}, ValueError, "alpha"),
    ({"alpha": math.nan}, ValueError, "alpha"),
    ({"alpha": "0.5"}, ValueError, "alpha"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 2.0}, ValueError, "batch_size"),
    ({"precision": "fp8"}, ValueError, "precision"),
    ({"goal_prompts": BASELINE}, ValueError, "identical embeddings.*alpha=0"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_reward(**kwargs)


def test_identical_prompts_are_fine_at_alpha_zero():
    r = make_reward(goal_prompts=BASELINE, alpha=0.0)
    assert torch.isfinite(r(smooth_frames(2, 32, 32))).all()


@pytest.mark.skipif(CUDA, reason="checks the error raised where no CUDA GPU is visible")
def test_cuda_device_without_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        make_reward(device="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="no CUDA GPU visible")
@pytest.mark.parametrize("precision", ["auto", "bf16", "fp32"])
def test_cuda_autocast_matches_cpu(reward, precision):
    r = make_reward(device="cuda", precision=precision)
    assert r.precision == ("fp16" if precision == "auto" else precision)
    r.model.load_state_dict(reward.model.state_dict())
    r.goal, r.baseline = reward.goal.cuda(), reward.baseline.cuda()
    frames = smooth_frames(70, 48, 64, seed=5)  # > batch_size 64: two chunks
    want = reward(frames)
    on_cpu = r(frames)  # CPU frames in, CPU rewards out
    assert on_cpu.device.type == "cpu" and on_cpu.dtype == torch.float32
    on_gpu = r(frames.cuda())
    assert on_gpu.device.type == "cuda"
    atol = 1e-4 if precision == "fp32" else 2e-2
    torch.testing.assert_close(on_cpu, want, rtol=0, atol=atol)
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=0, atol=1e-6)

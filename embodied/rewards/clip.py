"""VLM-RM: a CLIP model as a zero-shot reward from rendered frames (Rocamonde et al., 2024).

``CLIPReward(goal_prompts=["a humanoid robot kneeling"], baseline_prompts=["a humanoid robot"])``
embeds the prompts once, then scores uint8 frames ``[B, H, W, 3]`` with
``r = 1 - 1/2 |(x - g) P|^2`` (``embodied.ops.vlm_rm_reward``). ``CLIPImageEncoder`` holds the
open_clip model and embeds frames: preprocessed on the model's device, in batches, the way
open_clip's own evaluation transform does it (other reward models reuse it for features).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, cast

import open_clip
import PIL
import torch
import torch.nn.functional as F

from embodied import ops
from embodied.rewards.composite import FrameRewardTerm, RewardModelUnavailable, check_frames

_AUTOCAST: dict[str, torch.dtype | None] = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
_SCHEMAS = ("hf-hub:", "local-dir:")
#: the installed Pillow, whose resampling order open_clip's PIL transform follows
_PILLOW_MAJOR = int(PIL.__version__.split(".")[0])


class CLIPImageEncoder:
    """An open_clip model's image tower with open_clip's eval preprocessing, batched on the device.

    ``encoder(frames)`` maps uint8 frames ``[B, H, W, 3]`` (any device) to L2-normalised float32
    embeddings ``[B, D]`` on ``device``.

    Args:
        model_name: an open_clip architecture (``open_clip.list_models()``), or an
            ``hf-hub:org/repo`` / ``local-dir:/path`` source (then ``pretrained`` is ignored).
        pretrained: an open_clip pretrained tag (``open_clip.list_pretrained_tags_by_model(name)``),
            or the path of a local checkpoint file of that architecture (e.g. a downloaded
            ``open_clip_pytorch_model.bin``; OpenAI weights need the ``-quickgelu`` architecture),
            or None for random weights (tests and benchmarks only: the embeddings mean nothing).
            A tag is downloaded into the Hugging Face cache on first use; offline, set
            ``HF_HUB_OFFLINE=1`` so a missing tag fails at once instead of after the retries.
        device: where the model runs and frames are preprocessed.
        batch_size: frames per forward pass; larger batches are split into chunks of this size.
        precision: "auto" (fp16 autocast on CUDA, fp32 elsewhere), "fp32", or "fp16"/"bf16"
            autocast for the image tower. The weights stay fp32.

    Raises ValueError for an unknown model name or a bad argument, FileNotFoundError for a
    checkpoint path that does not exist, and RuntimeError naming the model and tag when the
    weights cannot be obtained (unknown tag, no network and not in the cache).
    """

    model: torch.nn.Module

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | os.PathLike[str] | None = "laion2b_s34b_b79k",
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        precision: str = "auto",
    ) -> None:
        who = type(self).__name__
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"{who}: batch_size must be an integer >= 1, got {batch_size!r}")
        if precision != "auto" and precision not in _AUTOCAST:
            raise ValueError(f"{who}: precision must be one of 'auto', 'fp32', 'fp16', 'bf16', got {precision!r}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"{who}: device {str(self.device)!r} was asked for but no CUDA GPU is visible")
        self.model_name, self.batch_size = model_name, batch_size
        self.precision = precision if precision != "auto" else "fp16" if self.device.type == "cuda" else "fp32"
        self.pretrained = None if pretrained is None else os.fspath(pretrained)

        self.model = _create_model(who, model_name, _load_check(who, model_name, self.pretrained), self.device)
        self.model.eval().requires_grad_(False)
        cfg = open_clip.get_model_preprocess_cfg(self.model)
        self.image_size: tuple[int, int] = _pair(cfg["size"])
        self.resize_mode: str = cfg.get("resize_mode", "shortest")
        if self.resize_mode not in ("shortest", "longest", "squash"):
            raise ValueError(f"{who}: open_clip resize_mode {self.resize_mode!r} of {model_name} is not supported "
                             "(only 'shortest', 'longest' and 'squash')")
        # open_clip's eval transform uses bilinear only when asked; anything else ("random") is bicubic
        self.interpolation = "bilinear" if cfg.get("interpolation") == "bilinear" else "bicubic"
        self.fill = float(cfg.get("fill_color", 0))  # grey level of the "longest" mode's padding
        mean, std = _channels(cfg["mean"], self.device), _channels(cfg["std"], self.device)
        # (x / 255 - mean) / std as one multiply-add on grey levels x
        self._scale, self._shift = 1 / (255 * std), -mean / std
        dim = getattr(getattr(self.model, "visual", None), "output_dim", None)
        self.embed_dim = int(dim) if dim else int(self(torch.zeros(1, *self.image_size, 3, dtype=torch.uint8)).shape[1])

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        frames = check_frames(frames, type(self).__name__)
        dtype = _AUTOCAST[self.precision]
        encode_image = _encoder(self.model, "encode_image")
        chunks = []
        with torch.no_grad():
            for start in range(0, frames.shape[0], self.batch_size):
                pixels = self.preprocess(frames[start:start + self.batch_size])
                with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    embeds = encode_image(pixels)
                chunks.append(F.normalize(embeds.float(), dim=-1))
        if not chunks:
            return torch.empty(0, self.embed_dim, dtype=torch.float32, device=self.device)
        return torch.cat(chunks)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """open_clip's eval transform, batched with torch ops: uint8 ``[B, H, W, 3]`` (any device)
        -> float32 ``[B, 3, h, w]`` on ``device``, normalised with the model's mean and std.

        Resize ("shortest" side to the model's size then a centre crop with torchvision's
        rounding, "longest" side then centre pad/crop, or "squash"), bicubic with antialiasing
        as PIL resamples uint8 images: one pass per axis, each rounded and clipped to 8-bit
        levels, in the installed Pillow's order. Agrees with open_clip's PIL transform to 1-2 grey
        levels on a few pixels; one joint 2-D pass would differ by up to ~25 levels on noisy
        frames, where bicubic overshoot is clipped between the passes. Then
        ``(x / 255 - mean) / std``.
        On the CPU the passes run on uint8 (torch's PIL-like kernel, 2-8x faster than float);
        elsewhere in float32, rounded after each pass.
        """
        # [B, 3, H, W] view of the channels-last frames: torch's uint8 CPU resampling wants that layout
        x = frames.to(self.device).permute(0, 3, 1, 2)
        if x.device.type != "cpu":
            x = x.float()
        h, w = x.shape[-2:]
        new_h, new_w = _resized_size(h, w, self.image_size, self.resize_mode)
        if _pillow_resamples_vertically_first(h, w, new_h, new_w):
            x = self._resample(self._resample(x, (new_h, w)), (new_h, new_w))
        else:
            x = self._resample(self._resample(x, (h, new_w)), (new_h, new_w))
        x = _center_crop_or_pad(x, self.image_size, self.fill)
        return torch.addcmul(self._shift, x.float(), self._scale)

    def _resample(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) == size:
            return x
        x = F.interpolate(x, size=size, mode=self.interpolation, antialias=True, align_corners=False)
        return x if x.dtype == torch.uint8 else x.round_().clamp_(0, 255)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model_name={self.model_name!r}, pretrained={self.pretrained!r}, "
                f"device={str(self.device)!r}, batch_size={self.batch_size}, precision={self.precision!r})")


class CLIPReward(FrameRewardTerm):
    """VLM-RM's goal-baseline regularised CLIP reward of rendered frames.

    Args:
        model_name, pretrained, device, batch_size, precision: the open_clip model and how it
            runs (see ``CLIPImageEncoder``; the text embeddings are computed in fp32).
        goal_prompts, baseline_prompts: the text of the goal and of the baseline (e.g. the
            same scene without the behaviour); each side is the mean of its prompts'
            L2-normalised embeddings, not renormalised, computed once here.
        alpha: in [0, 1]; 0 is cosine similarity to the goal up to a constant, 1 keeps only the
            goal - baseline direction.

    ``reward(frames)`` or ``reward({"frames": frames})`` with uint8 frames ``[B, H, W, 3]``
    returns float32 ``[B]`` on the frames' device (the frames go to ``device`` chunk by chunk).
    """

    goal: torch.Tensor
    baseline: torch.Tensor

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | os.PathLike[str] | None = "laion2b_s34b_b79k",
        goal_prompts: Sequence[str] = ("a humanoid robot kneeling",),
        baseline_prompts: Sequence[str] = ("a humanoid robot",),
        alpha: float = 0.5,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        precision: str = "auto",
    ) -> None:
        who = type(self).__name__
        goal_prompts = _check_prompts(who, "goal_prompts", goal_prompts)
        baseline_prompts = _check_prompts(who, "baseline_prompts", baseline_prompts)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"{who}: alpha must be a number in [0, 1], got {alpha!r}")
        self.alpha = float(alpha)
        self.encoder = CLIPImageEncoder(model_name, pretrained, device, batch_size, precision)
        try:
            tokenizer = open_clip.get_tokenizer(model_name)
        except Exception as exc:  # an HF tokenizer that is not in the local cache
            raise RewardModelUnavailable(f"{who}: could not load the tokenizer of {model_name!r} ({exc}); download it "
                               "beforehand into the Hugging Face cache (HF_HOME)") from exc
        with torch.no_grad():
            tokens = tokenizer(list(goal_prompts) + list(baseline_prompts)).to(self.device)
            text = F.normalize(_encoder(self.model, "encode_text")(tokens).float(), dim=-1)
        self.goal = text[: len(goal_prompts)].mean(0)
        self.baseline = text[len(goal_prompts):].mean(0)
        if self.alpha != 0 and torch.equal(self.goal, self.baseline):
            raise ValueError(f"{who}: goal_prompts and baseline_prompts have identical embeddings "
                             f"({list(goal_prompts)} vs {list(baseline_prompts)}), so the goal-baseline direction "
                             "is undefined; use baseline prompts that differ from the goal, or alpha=0")

    @property
    def model(self) -> torch.nn.Module:
        """The open_clip model (eval mode, frozen, on ``device``)."""
        return self.encoder.model

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def precision(self) -> str:
        return self.encoder.precision

    def score(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.encoder(frames)
        if x.shape[0] == 0:
            return torch.empty(0, dtype=torch.float32, device=frames.device)
        return ops.vlm_rm_reward(x, self.goal, self.baseline, self.alpha).to(frames.device)

    def embed_images(self, frames: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings float32 ``[B, D]`` (on ``device``) of uint8 frames ``[B, H, W, 3]``."""
        return self.encoder(frames)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """The model's input float32 ``[B, 3, h, w]`` for uint8 frames (``CLIPImageEncoder.preprocess``)."""
        return self.encoder.preprocess(frames)

    def __repr__(self) -> str:
        e = self.encoder
        return (f"{type(self).__name__}(model_name={e.model_name!r}, pretrained={e.pretrained!r}, alpha={self.alpha}, "
                f"device={str(e.device)!r}, batch_size={e.batch_size}, precision={e.precision!r})")


def _check_prompts(who: str, name: str, prompts: object) -> tuple[str, ...]:
    if isinstance(prompts, str):
        raise TypeError(f"{who}: {name} must be a list of strings, got the single string {prompts!r}; "
                        f"pass [{prompts!r}]")
    if not isinstance(prompts, Sequence):
        raise TypeError(f"{who}: {name} must be a list of strings, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError(f"{who}: {name} is empty; give at least one prompt")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"{who}: {name}[{i}] must be a string, got {type(p).__name__} {p!r}")
        if not p.strip():
            raise ValueError(f"{who}: {name}[{i}] is blank")
    return tuple(prompts)


def _load_check(who: str, model_name: str, pretrained: str | None) -> str | None:
    """Check the model name and that ``pretrained`` is a known tag or an existing file;
    return what open_clip's ``pretrained`` gets."""
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"{who}: model_name must be a non-empty open_clip model name, got {model_name!r}")
    if model_name.startswith(_SCHEMAS):
        return None
    if model_name not in open_clip.list_models():
        raise ValueError(f"{who}: unknown open_clip model {model_name!r}; open_clip.list_models() lists the "
                         "architectures (e.g. 'ViT-B-32', 'ViT-L-14', 'ViT-bigG-14'), and "
                         "open_clip.list_pretrained() the (model, tag) pairs with weights")
    if pretrained is None:
        warnings.warn(f"{who}: pretrained=None builds {model_name} with random weights: its embeddings and "
                      "rewards are meaningless (use it only for tests and benchmarks)", UserWarning, stacklevel=3)
        return None
    if open_clip.get_pretrained_cfg(model_name, pretrained):
        return pretrained
    if os.path.isfile(pretrained):
        return pretrained
    if os.sep in pretrained or os.path.splitext(pretrained)[1] in (".bin", ".pt", ".pth", ".safetensors"):
        raise FileNotFoundError(f"{who}: checkpoint file {pretrained!r} for {model_name} does not exist")
    tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
    raise RewardModelUnavailable(f"{who}: pretrained={pretrained!r} is neither a pretrained tag of open_clip model "
                       f"{model_name!r} (its tags: {tags}) nor an existing checkpoint file; to use a local "
                       "file pass its path, e.g. pretrained='/path/to/open_clip_pytorch_model.bin'")


def _create_model(who: str, model_name: str, pretrained: str | None, device: torch.device) -> torch.nn.Module:
    try:
        # pretrained_text=False: with random weights, do not fetch a Hugging Face text tower either
        model = open_clip.create_model(model_name, pretrained=pretrained, device=device, precision="fp32",
                                       pretrained_text=pretrained is not None)
    except Exception as exc:
        if pretrained is None and not model_name.startswith(_SCHEMAS):
            raise
        raise RewardModelUnavailable(
            f"{who}: could not obtain the weights of open_clip model {model_name!r} with pretrained="
            f"{pretrained!r} ({type(exc).__name__}: {exc}). Without network access, download the checkpoint "
            "beforehand (into the Hugging Face cache, HF_HOME, or anywhere) and pass its path, e.g. "
            "pretrained='/path/to/open_clip_pytorch_model.bin'; set HF_HUB_OFFLINE=1 to fail fast offline") from exc
    assert isinstance(model, torch.nn.Module)
    return model


def _encoder(model: torch.nn.Module, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    # open_clip is untyped: its CLIP's encode_image / encode_text are plain methods
    return cast(Callable[[torch.Tensor], torch.Tensor], getattr(model, name))


def _pair(size: Any) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size[-2:]
    return int(h), int(w)


def _channels(values: Any, device: torch.device) -> torch.Tensor:
    v = [float(values)] * 3 if isinstance(values, (int, float)) else [float(x) for x in values]
    return torch.tensor(v, dtype=torch.float32, device=device).view(1, 3, 1, 1)


def _pillow_resamples_vertically_first(h: int, w: int, new_h: int, new_w: int) -> bool:
    """The order of the installed Pillow's two resampling passes, which open_clip's transform
    follows. Pillow 13 goes vertical first when the height shrinks by more than twice as many
    pixels as the width; Pillow 12 and older always go horizontal first (both found by comparing
    both orders with each). The orders differ by up to ~25 grey levels on noisy frames."""
    return _PILLOW_MAJOR >= 13 and new_h < h and 2 * (w - new_w) < h - new_h


def _resized_size(h: int, w: int, target: tuple[int, int], mode: str) -> tuple[int, int]:
    """The size open_clip's eval transform resizes an ``h x w`` image to (before the crop)."""
    th, tw = target
    if mode == "squash":
        return th, tw
    if mode == "shortest" and th == tw:
        # torchvision Resize(int): the short side becomes th, the long side is truncated
        short, long = min(h, w), max(h, w)
        new_long = int(th * long / short)
        return (th, new_long) if h <= w else (new_long, th)
    # open_clip's ResizeKeepRatio (shortest edge for a non-square target, or longest edge)
    ratios = (h / th, w / tw)
    ratio = max(ratios) if mode == "longest" else min(ratios)
    return round(h / ratio), round(w / ratio)


def _center_crop_or_pad(x: torch.Tensor, size: tuple[int, int], fill: float) -> torch.Tensor:
    """torchvision's / open_clip's centre crop of ``[B, C, H, W]``, padding with ``fill`` first
    where the image is smaller than ``size``."""
    th, tw = size
    h, w = x.shape[-2:]
    if th > h or tw > w:
        dh, dw = max(th - h, 0), max(tw - w, 0)
        x = F.pad(x, (dw // 2, (dw + 1) // 2, dh // 2, (dh + 1) // 2), value=fill)
        h, w = x.shape[-2:]
    top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return x[..., top:top + th, left:left + tw]


__all__ = ["CLIPImageEncoder", "CLIPReward"]

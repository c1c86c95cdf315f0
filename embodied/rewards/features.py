"""Frame feature backbones for demonstration-based rewards.

Each backbone maps uint8 frames ``[B, H, W, 3]`` to float32 features ``[B, D]``:

* ``TimeContrastiveEncoder`` (``"tcn"``, the offline default): a small CNN trained on the
  demonstrations themselves with a single-view time-contrastive triplet loss (Sermanet et al.,
  TCN): frames close in time embed close, frames far apart embed apart, so the embedding
  tracks task progress and ignores what does not change over a demo.
* ``PixelFeatures`` (``"pixels"``): the frame downsampled to a small grid (no learning).
* ``TorchvisionFeatures`` (``"torchvision"``): globally pooled activations of a torchvision
  classification network loaded from a local weights file.
* ``OpenCLIPFeatures`` (``"open_clip"``): the normalised image embedding of an open_clip model.
"""

from __future__ import annotations

import abc
import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn


#: how ``TimeContrastiveEncoder`` measures the distance between two frames of a demo
CLOCKS = ("frames", "progress")


def frames_to_float(frames: torch.Tensor, size: int | None, device: torch.device | str) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> float ``[B, 3, size, size]`` in [0, 1] on ``device`` (area resize)."""
    x = frames.to(device).permute(0, 3, 1, 2).float().div_(255.0)
    if size is not None and tuple(x.shape[-2:]) != (size, size) and x.shape[0] > 0:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


class FrameFeatures(nn.Module, abc.ABC):
    """A frame encoder: ``encode(frames uint8 [B, H, W, 3]) -> float32 [B, D]``.

    ``fit(demos)`` trains it on the demonstration episodes (uint8 ``[L, H, W, 3]`` each) where
    it learns; pretrained backbones ignore it. ``config()`` returns the constructor arguments,
    so a saved reward model can rebuild its backbone.
    """

    name: str
    #: the noise of a feature as recorded (video compression), in feature units: the smallest
    #: spread z-normalisation divides by and a step's Gaussian may have, so a feature the demos
    #: never moved does not turn a new frame's change into a huge z
    min_scale: float = 1e-6

    def fit(self, demos: Sequence[torch.Tensor], seed: int = 0, log: Any = None) -> None:
        """Learn from demonstrations (a no-op for fixed backbones)."""

    @abc.abstractmethod
    def encode(self, frames: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def config(self) -> dict[str, Any]: ...

    @property
    def device(self) -> torch.device:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")


class PixelFeatures(FrameFeatures):
    """The frame resized to ``grid x grid`` RGB: ``3 * grid^2`` features."""

    name = "pixels"
    #: 4 grey levels: demos come back from H.264 with still pixels jittering by 1-2 levels
    min_scale = 4.0 / 255.0

    def __init__(self, grid: int = 16) -> None:
        super().__init__()
        if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
            raise ValueError(f"PixelFeatures: grid must be a positive int, got {grid!r}")
        self.grid = grid
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return frames_to_float(frames, self.grid, self.device).flatten(1)

    def config(self) -> dict[str, Any]:
        return {"grid": self.grid}


class _ConvNet(nn.Module):
    def __init__(self, image_size: int, width: int, embed_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = 3, image_size
        for k in range(4):
            out = width * (2 ** min(k, 2))
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.GroupNorm(8, out), nn.ReLU()]
            channels, size = out, math.ceil(size / 2)
        self.conv = nn.Sequential(*layers)
        # spatial softmax keeps where things are (a drawer's front, the gripper), which pooling loses
        self.keypoints = nn.Conv2d(channels, 32, 1)
        self.head = nn.Linear(64, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.keypoints(self.conv(x * 2.0 - 1.0))
        b, c, height, width = h.shape
        attn = h.flatten(2).softmax(-1).view(b, c, height, width)
        ys = torch.linspace(-1.0, 1.0, height, device=x.device)
        xs = torch.linspace(-1.0, 1.0, width, device=x.device)
        kx = (attn.sum(2) * xs).sum(-1)
        ky = (attn.sum(3) * ys).sum(-1)
        return self.head(torch.cat([kx, ky], 1))


class TimeContrastiveEncoder(FrameFeatures):
    """A small CNN with spatial-softmax keypoints, trained by ``fit`` with a time-contrastive loss.

    Triplets come from one demo: an anchor frame, a positive within ``positive_window`` frames of
    it and a negative at least ``negative_margin`` of the demo's length away; the loss is the
    triplet margin loss on L2-normalised embeddings. Frames are randomly shifted by up to 4
    pixels (padding by replication) while training, so the embedding tolerates the small
    differences between demo and policy frames.

    ``clock`` says how far apart two frames are. ``"frames"`` (default): their index difference
    (TCN's own). ``"progress"``: the visual change between them, i.e. the index a frame would
    have if the demo changed at a constant rate (``visual_progress``). With the frame clock, two
    frames of a demo's static end (the goal held) count as far apart, so the loss teaches the
    network to tell them apart by sub-pixel drift, and a policy holding the goal a little longer
    or differently than the demos looks far from the goal; with the progress clock they are
    positives of each other. PPO results with each are in the README.
    """

    name = "tcn"

    def __init__(self, image_size: int = 64, width: int = 16, embed_dim: int = 32, iterations: int = 400,
                 batch_size: int = 64, lr: float = 1e-3, positive_window: int = 3, negative_margin: float = 0.15,
                 margin: float = 0.2, clock: str = "frames") -> None:
        super().__init__()
        for key, value in (("image_size", image_size), ("width", width), ("embed_dim", embed_dim),
                           ("iterations", iterations), ("batch_size", batch_size), ("positive_window", positive_window)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "iterations" else 1):
                raise ValueError(f"TimeContrastiveEncoder: {key} must be a positive int, got {value!r}")
        if width % 8:
            raise ValueError(f"TimeContrastiveEncoder: width must be a multiple of 8 (group norm), got {width}")
        if not 0.0 < negative_margin < 1.0:
            raise ValueError(f"TimeContrastiveEncoder: negative_margin is a fraction of the demo length in (0, 1), "
                             f"got {negative_margin}")
        if clock not in CLOCKS:
            raise ValueError(f"TimeContrastiveEncoder: clock must be one of {CLOCKS}, got {clock!r}")
        self._config: dict[str, Any] = {"image_size": image_size, "width": width, "embed_dim": embed_dim,
                                        "iterations": iterations,
                        "batch_size": batch_size, "lr": lr, "positive_window": positive_window,
                        "negative_margin": negative_margin, "margin": margin, "clock": clock}
        self.image_size = image_size
        self.net = _ConvNet(image_size, width, embed_dim)

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        out = []
        was_training = self.training
        self.eval()
        with torch.no_grad():
            for chunk in frames.split(256):
                out.append(F.normalize(self.net(frames_to_float(chunk, self.image_size, self.device)), dim=1))
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self._config["embed_dim"], device=self.device)

    def fit(self, demos: Sequence[torch.Tensor], seed: int = 0, log: Any = None) -> None:
        cfg = self._config
        images = [frames_to_float(d, self.image_size, self.device) for d in demos]
        lengths = torch.tensor([len(d) for d in images])
        if bool((lengths < 3).any()):
            raise ValueError(f"TimeContrastiveEncoder.fit: every demo needs at least 3 frames, got lengths "
                             f"{lengths.tolist()}")
        gaps = [clock_gaps(im, cfg["clock"]) for im in images]
        gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net.apply(_reset_parameters)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg["lr"])
        self.train()
        for it in range(cfg["iterations"]):
            demo = torch.randint(len(images), (cfg["batch_size"],), generator=gen)
            anchor = (torch.rand(len(demo), generator=gen) * lengths[demo]).long()
            positive, negative = _sample_pairs(gaps, demo, anchor, cfg["positive_window"], cfg["negative_margin"], gen)
            batch = torch.stack([torch.stack([images[d][t] for d, t in zip(demo.tolist(), idx.tolist())])
                                 for idx in (anchor, positive, negative)])
            emb = F.normalize(self.net(_random_shift(batch.flatten(0, 1), gen)), dim=1).view(3, len(demo), -1)
            loss = F.triplet_margin_loss(emb[0], emb[1], emb[2], margin=cfg["margin"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if log is not None and (it % 250 == 0 or it == cfg["iterations"] - 1):
                log(f"time-contrastive embedding: iteration {it + 1}/{cfg['iterations']}, loss {loss.item():.4f}")
        self.eval()


def _reset_parameters(module: nn.Module) -> None:
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()


def visual_progress(images: torch.Tensor) -> torch.Tensor:
    """A demo's clock in frames, advancing with visual change: float64 ``[L]`` from 0 to L - 1.

    Frame t's value is ``(L - 1)`` times the fraction of the demo's total frame-to-frame change
    (mean absolute difference at 16 x 16) that has happened by t; static stretches keep one value.
    ``images``: float ``[L, 3, H, W]``. A demo that never changes falls back to the frame index.
    """
    small = F.interpolate(images, size=(16, 16), mode="area").double()
    step = (small[1:] - small[:-1]).abs().mean((1, 2, 3))
    total = float(step.sum())
    length = len(images)
    if total <= 0.0:
        return torch.arange(length, dtype=torch.float64)
    return torch.cat([step.new_zeros(1), step.cumsum(0)]) * ((length - 1) / total)


def clock_gaps(images: torch.Tensor, clock: str) -> torch.Tensor:
    """How far apart every two frames of a demo are on ``clock`` (``CLOCKS``): float64 ``[L, L]`` on
    the CPU, for float frames ``[L, 3, H, W]`` (a few hundred frames at most)."""
    ticks = visual_progress(images).cpu() if clock == "progress" else torch.arange(len(images), dtype=torch.float64)
    return (ticks[:, None] - ticks[None, :]).abs()


def _sample_pairs(gaps: Sequence[torch.Tensor], demo: torch.Tensor, anchor: torch.Tensor, positive_window: int,
                  negative_margin: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """For each (demo, anchor): a positive within ``positive_window`` of it on the demo's clock and a
    negative at least ``max(negative_margin * L, positive_window + 1)`` away, each drawn uniformly
    (the farthest frame where no frame is that far)."""
    longest = max(len(g) for g in gaps)
    rows = torch.stack([F.pad(gaps[d][a], (0, longest - len(gaps[d])), value=-1.0)
                        for d, a in zip(demo.tolist(), anchor.tolist())])
    valid = rows >= 0
    lengths = torch.tensor([len(gaps[d]) for d in demo.tolist()], dtype=torch.float64)
    far = (negative_margin * lengths).ceil().clamp_min(positive_window + 1)
    near = valid & (rows <= positive_window)  # the anchor itself at least
    away = valid & (rows >= far[:, None])
    farthest = F.one_hot(rows.argmax(1), longest).bool()
    away = torch.where(away.any(1, keepdim=True), away, farthest)
    positive = torch.multinomial(near.double(), 1, generator=gen).squeeze(1)
    negative = torch.multinomial(away.double(), 1, generator=gen).squeeze(1)
    return positive, negative


def _random_shift(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """DrQ-style augmentation: replicate-pad by ``pad`` and crop back at a random offset per image."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    rows = (dy.view(b, 1) + torch.arange(h)).to(x.device)
    cols = (dx.view(b, 1) + torch.arange(w)).to(x.device)
    return padded[torch.arange(b, device=x.device).view(b, 1, 1, 1), torch.arange(3, device=x.device).view(1, 3, 1, 1),
                  rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


class TorchvisionFeatures(FrameFeatures):
    """Globally pooled activations of ``torchvision.models.get_model(arch)`` with weights from a file.

    ``layer`` names the module whose output is pooled (default: the last one before the
    classifier, e.g. ``layer4`` of a ResNet); ImageNet mean/std normalisation at ``image_size``.
    """

    name = "torchvision"
    mean: torch.Tensor
    std: torch.Tensor
    _MEAN = (0.485, 0.456, 0.406)
    _STD = (0.229, 0.224, 0.225)

    def __init__(self, arch: str = "resnet18", weights: str | None = None, layer: str | None = None,
                 image_size: int = 224) -> None:
        super().__init__()
        import torchvision

        if arch not in torchvision.models.list_models():
            raise ValueError(f"TorchvisionFeatures: unknown arch {arch!r}; see torchvision.models.list_models()")
        if weights is None:
            raise ValueError(f"TorchvisionFeatures: {arch} needs a local weights file (weights=/path/to/{arch}.pth, "
                             "a state_dict saved with torch.save); nothing is downloaded at run time")
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"TorchvisionFeatures: weights file {path} not found; save a state_dict with "
                                    f"torch.save(torchvision.models.get_model({arch!r}, weights='DEFAULT').state_dict(),"
                                    f" {str(path)!r}) on a machine with network access")
        model = torchvision.models.get_model(arch, weights=None)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        children = dict(model.named_children())
        layer = layer or [n for n in children if n not in ("fc", "classifier", "heads", "avgpool")][-1]
        if layer not in children:
            raise ValueError(f"TorchvisionFeatures: {arch} has no top-level module {layer!r}; it has {list(children)}")
        keep = list(children)[: list(children).index(layer) + 1]
        self.body = nn.Sequential(*(children[n] for n in keep)).eval().requires_grad_(False)
        self._config = {"arch": arch, "weights": str(path), "layer": layer, "image_size": image_size}
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(self._MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self._STD).view(1, 3, 1, 1), persistent=False)

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = [self.body((frames_to_float(c, self.image_size, self.device) - self.mean) / self.std).mean((2, 3))
                   for c in frames.split(64)]
        return torch.cat(out).float() if out else torch.zeros(0, 0, device=self.device)


class OpenCLIPFeatures(FrameFeatures):
    """The L2-normalised image embedding of an open_clip model (see ``embodied.rewards.clip``)."""

    name = "open_clip"

    def __init__(self, model_name: str = "ViT-B-32", pretrained: str | None = "laion2b_s34b_b79k",
                 batch_size: int = 64, device: str | torch.device = "cpu") -> None:
        super().__init__()
        from embodied.rewards.clip import CLIPImageEncoder

        # the encoder keeps its own device (preprocessing constants, autocast), so it is built on
        # the reward's device rather than moved there by .to()
        self.encoder = CLIPImageEncoder(model_name, pretrained, device=device, batch_size=batch_size)
        self._config = {"model_name": model_name, "pretrained": pretrained, "batch_size": batch_size}

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoder(frames).float()


#: backbone name -> class
BACKBONES: dict[str, type[FrameFeatures]] = {
    cls.name: cls for cls in (TimeContrastiveEncoder, PixelFeatures, TorchvisionFeatures, OpenCLIPFeatures)
}


def make_backbone(name: str, **kwargs: Any) -> FrameFeatures:
    """Build backbone ``name`` (a key of ``BACKBONES``) with its keyword arguments."""
    if name not in BACKBONES:
        raise ValueError(f"unknown feature backbone {name!r}; choose one of {sorted(BACKBONES)}")
    try:
        return BACKBONES[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"feature backbone {name!r}: bad arguments {sorted(kwargs)} ({e})") from e

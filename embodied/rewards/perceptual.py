"""Perceptual rewards learned from a few demonstrations (Sermanet, Xu, Levine 2016).

``fit(demos)``:
  1. encode every demo frame with a feature backbone (``embodied.rewards.features``) and
     z-normalise the features over all demo frames;
  2. split each demo into K steps (``embodied.rewards.segmentation.segment``: exact dynamic
     programming on the within-step spread);
  3. per step, keep the ``top_n`` features scoring ``alpha |mu+ - mu-| - (sigma+ + sigma-)``
     (positives: the step's frames in every demo; negatives: all other frames).

``score(frames)``: each step's Gaussian (naive Bayes) score on its selected features,
``exp(-1/2 mean_j z_j^2)`` in (0, 1], combined as ``sum_g 2^g score_g / (2^K - 1)`` so later steps
give more reward; by default the log of that sum (``log_space``), computed by the compiled op
``embodied.ops.perceptual_reward``. Both rank frames alike; the log is the one RL can climb: off the
demonstrated path every likelihood rounds to 0 and the sum is flat, while its log keeps growing
towards the nearest step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors.torch import load_file, save_file

from embodied import ops
from embodied.rewards.composite import FrameRewardTerm, check_frames
from embodied.rewards.features import FrameFeatures, make_backbone
from embodied.rewards.segmentation import MIN_STD, segment, select_features, step_labels

_FORMAT = "embodied.perceptual_reward/1"


class PerceptualReward(FrameRewardTerm):
    """A reward for frames, learned from demonstrations by ``fit``: in (-inf, 0] (``log_space``,
    the default) or in (0, 1].

    Args:
        backbone: ``"tcn"`` (default: trained on the demos, offline), ``"pixels"``,
            ``"torchvision"`` or ``"open_clip"``, or a ``FrameFeatures`` instance.
        backbone_args: keyword arguments of the backbone (e.g. ``{"weights": "resnet18.pth"}``).
        num_steps: K, the steps each demo is split into.
        alpha, top_n: feature selection (the paper's 5 and 32).
        min_length: the fewest frames of a step, as a fraction of the shortest demo; ``None``:
            ``min(0.1, 1 / num_steps)``, so any K up to 30 fits without setting it.
        log_space: reward the log of the weighted step likelihoods instead of the likelihoods.
        device: where features and scores are computed.
    """

    def __init__(self, backbone: str | FrameFeatures = "tcn", backbone_args: dict[str, Any] | None = None,
                 num_steps: int = 4, alpha: float = 5.0, top_n: int = 32, min_length: float | None = None,
                 device: str | torch.device = "cpu", log_space: bool = True) -> None:
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= 30:
            raise ValueError(f"PerceptualReward: num_steps must be an int in [1, 30], got {num_steps!r}")
        if not alpha == alpha or alpha < 0:
            raise ValueError(f"PerceptualReward: alpha must be >= 0, got {alpha!r}")
        if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
            raise ValueError(f"PerceptualReward: top_n must be a positive int, got {top_n!r}")
        if min_length is None:
            min_length = min(0.1, 1.0 / num_steps)
        if not 0.0 < min_length <= 1.0 / num_steps:
            raise ValueError(f"PerceptualReward: min_length is a fraction of the demo length in (0, 1/num_steps] = "
                             f"(0, {1.0 / num_steps:.4g}], got {min_length!r}; leave it unset for min(0.1, 1/num_steps)")
        if not isinstance(log_space, bool):
            raise TypeError(f"PerceptualReward: log_space must be a bool, got {log_space!r}")
        self.log_space = log_space
        self.device = torch.device(device)
        args = dict(backbone_args or {})
        if backbone == "open_clip":
            args["device"] = self.device
        self.features = (backbone if isinstance(backbone, FrameFeatures)
                         else make_backbone(backbone, **args)).to(self.device)
        self.num_steps, self.alpha, self.top_n, self.min_length = num_steps, float(alpha), top_n, float(min_length)
        weights = torch.pow(2.0, torch.arange(num_steps, dtype=torch.float32))
        self.step_weights = (weights / weights.sum()).to(self.device)
        self.state: dict[str, torch.Tensor] | None = None
        #: start frame of every step in each demo, from the last ``fit``
        self.boundaries: list[list[int]] = []

    # ---- learning ---------------------------------------------------------------------------
    def fit(self, demos: Sequence[torch.Tensor] | str | Path, seed: int = 0,
            log: Callable[[str], None] | None = None) -> "PerceptualReward":
        """Learn the reward from demonstrations: uint8 frame tensors ``[L, H, W, 3]`` (one per demo,
        in time order) or the path of a LeRobot dataset recorded by ``python -m sim.record``."""
        episodes = load_demo_frames(demos) if isinstance(demos, (str, Path)) else list(demos)
        if not episodes:
            raise ValueError("PerceptualReward.fit: no demonstrations; record some with python -m sim.record "
                             "task=<task> episodes=5")
        for i, ep in enumerate(episodes):
            check_frames(ep, f"PerceptualReward.fit: demo {i}")
        shortest = min(len(ep) for ep in episodes)
        min_frames = max(1, int(self.min_length * shortest))
        if shortest < self.num_steps * min_frames or shortest < 3:
            raise ValueError(f"PerceptualReward.fit: the shortest demo has {shortest} frames, too few for "
                             f"{self.num_steps} steps; record longer demos or lower num_steps")
        self.features.fit(episodes, seed=seed, log=log)
        feats = [self.features.encode(ep).double() for ep in episodes]
        every = torch.cat(feats)
        center, scale = every.mean(0), every.std(0, unbiased=False).clamp_min(self.features.min_scale)
        z = [(f - center) / scale for f in feats]
        # a step's spread is at least the recording noise: identical demos (a deterministic expert,
        # fixed goals) would otherwise give Gaussians as sharp as the codec's rounding
        noise = (self.features.min_scale / scale).clamp_min(MIN_STD)
        self.boundaries = [segment(f.cpu(), self.num_steps, min_frames) for f in z]
        labels = torch.cat([step_labels(b, len(f)) for b, f in zip(self.boundaries, z)])
        index, mean, inv_std = select_features(torch.cat(z).cpu(), labels, self.num_steps, self.alpha, self.top_n,
                                                noise.cpu())
        state = {"center": center.float(), "scale": scale.float(), "index": index, "mean": mean, "inv_std": inv_std}
        self.state = {k: v.to(self.device) for k, v in state.items()}
        if log is not None:
            # top_n >= the feature width keeps every feature: worth seeing, since it turns the
            # paper's feature selection off (the TCN's default width is 32, the paper's top_n)
            log(f"perceptual reward: {len(episodes)} demos, {index.shape[1]} of {every.shape[1]} features "
                f"per step, steps start at {self.boundaries}")
        return self

    # ---- scoring ----------------------------------------------------------------------------
    def score(self, frames: torch.Tensor) -> torch.Tensor:
        return self._score_steps(frames)[0]

    def score_steps(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reward [B], per-step scores [B, K])`` of uint8 frames ``[B, H, W, 3]``."""
        return self._score_steps(check_frames(frames, type(self).__name__))

    def _score_steps(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = self._fitted()
        z = (self.features.encode(frames.to(self.device)).float() - state["center"]) / state["scale"]
        return ops.perceptual_reward(z.contiguous(), state["index"], state["mean"], state["inv_std"],
                                     self.step_weights, self.log_space)

    def _fitted(self) -> dict[str, torch.Tensor]:
        if self.state is None:
            raise RuntimeError("PerceptualReward is not fitted: call fit(demos) (a sim.record dataset path or "
                               "frame tensors) or load a saved one with PerceptualReward.load(path)")
        return self.state

    # ---- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted reward (backbone weights included) to ``path`` (a ``.safetensors`` file
        with a ``.json`` beside it); ``PerceptualReward.load(path)`` restores it."""
        state = self._fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"reward.{k}": v.detach().cpu().contiguous() for k, v in state.items()}
        tensors.update({f"backbone.{k}": v.detach().cpu().contiguous()
                        for k, v in self.features.state_dict().items()})
        meta = {"format": _FORMAT, "backbone": self.features.name, "backbone_args": self.features.config(),
                "num_steps": self.num_steps, "alpha": self.alpha, "top_n": self.top_n,
                "min_length": self.min_length, "log_space": self.log_space, "boundaries": self.boundaries}
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp))
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "PerceptualReward":
        path = Path(path)
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            raise FileNotFoundError(f"no saved perceptual reward at {path} (needs {path.name} and {meta_path.name}); "
                                    "fit one with PerceptualReward(...).fit(demos).save(path)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{meta_path} is not a saved perceptual reward (format {meta.get('format')!r})")
        # rewards saved before log_space existed scored likelihoods
        reward = cls(meta["backbone"], meta["backbone_args"], meta["num_steps"], meta["alpha"], meta["top_n"],
                     meta["min_length"], device, meta.get("log_space", False))
        tensors = load_file(str(path))
        reward.features.load_state_dict({k[len("backbone."):]: v for k, v in tensors.items()
                                         if k.startswith("backbone.")}, strict=False)
        reward.state = {k[len("reward."):]: v.to(reward.device) for k, v in tensors.items() if k.startswith("reward.")}
        reward.boundaries = meta["boundaries"]
        return reward


def load_demo_frames(root: str | Path, max_episodes: int | None = None, successful_only: bool = True,
                     camera: str | None = None, hold: int | None = None) -> list[torch.Tensor]:
    """Frames ``[L, H, W, 3]`` of the episodes of a LeRobot dataset (e.g. one ``sim.record`` wrote).

    ``successful_only`` keeps episodes whose ``next.success`` was ever true (all episodes when the
    dataset has no success column); ``max_episodes`` keeps the first that many of those.
    ``hold`` cuts each successful episode ``hold`` frames after its first success, so the demos
    end by showing the goal held for a while: without such frames the last step learned is the
    approach, and a policy holding the goal scores low; with a long static tail, the tail alone
    gets split into steps by pixel noise.
    """
    from sim.dataset import DemoDataset

    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"demonstrations {root} not found; record them with python -m sim.record "
                                f"task=<task> episodes=5 out={root}")
    data = DemoDataset(root)
    if not data.video_keys:
        raise ValueError(f"{root} has no camera stream; perceptual rewards learn from frames")
    key = f"observation.images.{camera}" if camera else data.video_keys[0]
    if key not in data.video_keys:
        raise ValueError(f"{root} has no camera {camera!r}; its cameras: {data.video_keys}")
    out: list[torch.Tensor] = []
    for info in data.episodes:
        if max_episodes is not None and len(out) >= max_episodes:
            break
        episode = data.episode(info.episode_index)
        if successful_only and "next.success" in episode and not bool(episode["next.success"].any()):
            continue
        frames = episode[key]
        if hold is not None and "next.success" in episode and bool(episode["next.success"].any()):
            first = int(episode["next.success"].to(torch.int64).argmax())
            frames = frames[: first + 1 + hold]
        out.append(frames)
    if not out:
        raise ValueError(f"{root} has no successful episode to learn from; record more (python -m sim.record) or "
                         "pass successful_only=False")
    return out

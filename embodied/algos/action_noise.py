"""Exploration noise for PPO's rollouts: white, as CleanRL samples it, or coloured in time."""

from __future__ import annotations

import math

import colorednoise
import numpy as np
import torch


def _library_variance(beta: float, period: int) -> float:
    """The variance of ``colorednoise.powerlaw_psd_gaussian``'s output, which it calls unit: its
    scale leaves out the sequence's random mean (the zero-frequency term, weighted as the lowest
    frequency), +3% for β = 0.5 and +10% for pink noise at 200 steps, +30% for brown."""
    f = np.fft.rfftfreq(period)
    f[0] = f[1]  # the library's low-frequency cutoff, 1 / period
    power = f ** -beta
    w2 = power[1:].copy()
    w2[-1] *= ((1 + period % 2) / 2) ** 2  # the library's correction of the frequency 1/2
    sigma2 = 4 * w2.sum() / period**2
    return float(1 + 2 * power[0] / period**2 / sigma2)


class ActionNoise:
    """Unit-variance noise ``ε`` ``[num_envs, act_dim]`` for the rollout's actions ``μ + σ ε``.

    ``beta = 0`` is white noise, independent at every step. ``beta > 0`` correlates each env's
    noise in time with a power spectrum ∝ 1/f^β (β = 1 is pink noise; Eberhard et al. 2023,
    "Pink Noise Is All You Need"; for PPO Hollenstein et al. 2024 found β ≈ 0.5 best): every env
    draws one sequence of ``period`` steps per episode, so its exploration wanders off the
    mean's path for many steps instead of jittering around it. Each step's marginal is still
    N(0, 1), so the policy's log-probabilities and PPO's ratios are computed as for white noise.
    """

    def __init__(self, beta: float, num_envs: int, act_dim: int, period: int,
                 generator: torch.Generator, device: torch.device | str = "cpu") -> None:
        if not (math.isfinite(beta) and 0.0 <= beta <= 2.0):
            raise ValueError(f"noise beta must be in [0, 2] (0 white, 1 pink, 2 brown), got {beta}")
        if num_envs < 1 or act_dim < 1:
            raise ValueError(f"num_envs and act_dim must be >= 1, got {num_envs} and {act_dim}")
        if period < 2:
            raise ValueError(f"noise period must be >= 2 steps (the longest correlation: the episode length), "
                             f"got {period}")
        self.beta, self.num_envs, self.act_dim, self.period = float(beta), num_envs, act_dim, period
        self.generator, self.device = generator, torch.device(device)
        self.scale = 1.0 / math.sqrt(_library_variance(self.beta, period))
        # per env: its sequence [act_dim, period] and the next step to read from it
        self.sequences = torch.zeros(num_envs, act_dim, period)
        self.position = torch.full((num_envs,), period, dtype=torch.long)

    def _draw(self, count: int) -> torch.Tensor:
        # the sequences' randomness comes from the run's seeded generator, so runs repeat
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        noise = colorednoise.powerlaw_psd_gaussian(self.beta, (count, self.act_dim, self.period),
                                                   random_state=np.random.default_rng(seed))
        return torch.from_numpy(noise * self.scale).float()

    def sample(self) -> torch.Tensor:
        """The next step's noise ``[num_envs, act_dim]`` (float32, on ``device``)."""
        spent = self.position >= self.period  # a new episode, or one longer than the period
        if spent.any():
            self.sequences[spent] = self._draw(int(spent.sum()))
            self.position[spent] = 0
        envs = torch.arange(self.num_envs)
        eps = self.sequences[envs, :, self.position]
        self.position += 1
        return eps.to(self.device)

    def episodes_ended(self, done: torch.Tensor) -> None:
        """Start a fresh sequence for the envs whose episode ``done`` ``[num_envs]`` ended."""
        if done.shape != (self.num_envs,) or done.dtype != torch.bool:
            raise ValueError(f"done must be a bool tensor [{self.num_envs}], got {done.dtype} {list(done.shape)}")
        self.position[done.cpu()] = self.period

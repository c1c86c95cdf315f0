"""Gaussian MLP actor-critic (CleanRL's ``ppo_continuous_action`` agent)."""

from __future__ import annotations

import math

import torch
from torch import nn

from embodied.ops import RunningNormalizer

_LOG_2PI = math.log(2 * math.pi)

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}


def _mlp(sizes: list[int], activation: str, orthogonal: bool, out_gain: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(n_in, n_out)
        last = i == len(sizes) - 2
        if orthogonal:
            nn.init.orthogonal_(linear.weight, out_gain if last else math.sqrt(2))
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class GaussianMLPPolicy(nn.Module):
    """Actor MLP -> mean of a diagonal Gaussian with a state-independent learned log-std;
    a separate critic MLP -> value. Observations pass through a running normaliser first.

    Actions are unbounded samples; the env clips them to its bounds (CleanRL's ``ClipAction``),
    and log-probabilities are of the unclipped sample.

    Shapes: ``obs [B, obs_dim]`` float32, ``action [B, act_dim]``, ``log_prob``/``value [B]``.
    """

    def __init__(self, obs_dim: int, act_dim: int, actor_hidden: list[int] | tuple[int, ...] = (64, 64),
                 critic_hidden: list[int] | tuple[int, ...] = (64, 64), activation: str = "tanh",
                 init_log_std: float = 0.0, orthogonal_init: bool = True,
                 normalize_obs: bool = True, clip_obs: float = 10.0) -> None:
        super().__init__()
        if obs_dim < 1 or act_dim < 1:
            raise ValueError(f"GaussianMLPPolicy: obs_dim and act_dim must be >= 1, got {obs_dim}, {act_dim}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"GaussianMLPPolicy: activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.obs_normalizer = RunningNormalizer(obs_dim, clip=clip_obs) if normalize_obs else None
        self.actor = _mlp([obs_dim, *actor_hidden, act_dim], activation, orthogonal_init, 0.01)
        self.critic = _mlp([obs_dim, *critic_hidden, 1], activation, orthogonal_init, 1.0)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def _check_obs(self, obs: torch.Tensor) -> None:
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"obs must be [B, {self.obs_dim}], got {list(obs.shape)}")
        if not obs.is_floating_point():
            raise TypeError(f"obs must be a float tensor, got {obs.dtype}")

    def normalize(self, obs: torch.Tensor, update: bool = False) -> torch.Tensor:
        """Normalised observations; ``update`` merges ``obs`` into the running statistics first."""
        self._check_obs(obs)
        if self.obs_normalizer is None:
            return obs
        return self.obs_normalizer(obs, update=update).to(obs.dtype)

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        """The action distribution at normalised observations ``obs``."""
        mean = self.actor(obs)
        return torch.distributions.Normal(mean, self.log_std.exp().expand_as(mean), validate_args=False)

    def _log_prob(self, mean: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        # the diagonal Gaussian's log-density written out: torch.distributions' generic
        # version costs more than the MLPs at these sizes
        z = (action - mean) * torch.exp(-self.log_std)
        return -0.5 * (z * z).sum(-1) - self.log_std.sum() - 0.5 * self.act_dim * _LOG_2PI

    def _entropy(self) -> torch.Tensor:
        return self.log_std.sum() + 0.5 * self.act_dim * (1.0 + _LOG_2PI)

    # `normalized=True`: obs already went through `normalize` (the learner stores normalised
    # observations, so an update sees exactly what the rollout's actions were sampled from).
    def _input(self, obs: torch.Tensor, normalized: bool) -> torch.Tensor:
        if normalized:
            self._check_obs(obs)
            return obs
        return self.normalize(obs)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False,
            normalized: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Observations -> (action, log_prob, value); the mean action when deterministic."""
        x = self._input(obs, normalized)
        mean = self.actor(x)
        action = mean if deterministic else mean + torch.randn_like(mean) * self.log_std.exp()
        return action, self._log_prob(mean, action), self.critic(x).squeeze(-1)

    def value(self, obs: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """Observations -> value ``[B]``."""
        return self.critic(self._input(obs, normalized)).squeeze(-1)

    def evaluate(self, obs: torch.Tensor, action: torch.Tensor,
                 normalized: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Observations and actions -> (log_prob, entropy, value), differentiable."""
        x = self._input(obs, normalized)
        if action.shape != (obs.shape[0], self.act_dim):
            raise ValueError(f"action must be [B, {self.act_dim}] = [{obs.shape[0]}, {self.act_dim}], "
                             f"got {list(action.shape)}")
        log_prob = self._log_prob(self.actor(x), action)
        return log_prob, self._entropy().expand_as(log_prob), self.critic(x).squeeze(-1)

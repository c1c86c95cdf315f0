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

    @property
    def obs_stats_ready(self) -> bool:
        """Whether the normaliser's statistics hold data (false before the first merge, and
        when observations are not normalised)."""
        return self.obs_normalizer is not None and float(self.obs_normalizer.count) >= 1.0

    @torch.no_grad()
    def merge_obs_stats(self, obs: torch.Tensor, preserve: bool = True) -> torch.Tensor:
        """Merge raw observations ``[B, obs_dim]`` into the normaliser's statistics.

        With ``preserve`` the first layers of actor and critic absorb the change, so the policy's
        mean, std and value at every observation are what they were: the statistics precondition
        learning but no longer move the policy by themselves. Without it a late drift of the
        statistics changes a policy that an annealed learning rate can no longer correct (a PPO
        run on door-close fell from 98% to 31% success in its last 30k steps, and its final
        actor with the earlier statistics still succeeded every time). A feature is preserved
        only where the old statistics normalised the whole batch inside the clip: elsewhere the
        old function saturated and there is nothing exact to keep. Returns the ``[obs_dim]``
        mask of preserved features.
        """
        self._check_obs(obs)
        norm = self.obs_normalizer
        if norm is None:
            raise RuntimeError("merge_obs_stats: this policy does not normalise observations (normalize_obs=False)")
        if obs.shape[0] < 1:
            raise ValueError("merge_obs_stats: obs is empty; pass at least one observation")
        if not torch.isfinite(obs).all():
            raise ValueError("merge_obs_stats: obs contains NaN or inf; the env returned a broken observation")
        ready = self.obs_stats_ready
        old_shift, old_scale = norm.shift_scale()
        inside = ((obs.double() - old_shift).abs() <= norm.clip * old_scale).all(0)
        norm(obs, update=True)
        mask = inside if preserve and ready else torch.zeros_like(inside)
        if mask.any():
            new_shift, new_scale = norm.shift_scale()
            # W (x - m) / s + b == W' (x - m') / s' + b'  with  W' = W s'/s,  b' = b + W (m' - m) / s
            ratio = torch.where(mask, new_scale / old_scale, 1.0)
            moved = torch.where(mask, (new_shift - old_shift) / old_scale, 0.0)
            for first in (self.actor[0], self.critic[0]):
                assert isinstance(first, nn.Linear)
                weight = first.weight.double()
                first.bias.add_((weight @ moved).to(first.bias.dtype))
                first.weight.copy_((weight * ratio).to(first.weight.dtype))
        return mask

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
    def act(self, obs: torch.Tensor, deterministic: bool = False, normalized: bool = False,
            noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Observations -> (action, log_prob, value); the mean action when deterministic.

        ``noise`` ``[B, act_dim]``: the standard-normal draw to use (time-correlated exploration,
        ``embodied.algos.action_noise``) instead of a fresh independent one.
        """
        x = self._input(obs, normalized)
        mean = self.actor(x)
        if noise is None:
            noise = torch.randn_like(mean)
        elif noise.shape != mean.shape or not noise.is_floating_point():
            raise ValueError(f"noise must be a float tensor shaped like the actions {list(mean.shape)}, "
                             f"got {noise.dtype} {list(noise.shape)}")
        action = mean if deterministic else mean + noise.to(mean.dtype) * self.log_std.exp()
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

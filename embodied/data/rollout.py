"""On-policy rollout storage, time-major ``[T, N]``, with advantages from ``embodied.ops.gae``."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from embodied import ops


class RolloutBuffer:
    """``num_steps`` x ``num_envs`` transitions of one rollout, preallocated once on ``device``.

    Per step ``t``: ``obs[t]`` (as the policy saw it, i.e. normalised), ``actions[t]``,
    ``log_probs[t]``, ``values[t]``, the training ``rewards[t]``, ``dones[t]`` (the episode ended
    at step t: terminated or truncated), and for time-limit truncation ``final_values[t]`` =
    V(final observation) where ``truncated[t]``.
    """

    def __init__(self, num_steps: int, num_envs: int, obs_dim: int, act_dim: int,
                 device: torch.device | str = "cpu") -> None:
        if min(num_steps, num_envs, obs_dim, act_dim) < 1:
            raise ValueError(f"RolloutBuffer: sizes must be >= 1, got T={num_steps}, N={num_envs}, "
                             f"obs_dim={obs_dim}, act_dim={act_dim}")
        T, N = num_steps, num_envs
        self.num_steps, self.num_envs = T, N
        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        self.obs = zeros(T, N, obs_dim)
        self.actions = zeros(T, N, act_dim)
        self.log_probs = zeros(T, N)
        self.values = zeros(T, N)
        self.rewards = zeros(T, N)
        self.dones = zeros(T, N, dtype=torch.bool)
        self.truncated = zeros(T, N, dtype=torch.bool)
        self.final_values = zeros(T, N)
        self.advantages = zeros(T, N)
        self.returns = zeros(T, N)
        self.step = 0

    def add(self, obs: torch.Tensor, actions: torch.Tensor, log_probs: torch.Tensor, values: torch.Tensor,
            rewards: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
            final_values: torch.Tensor | None = None) -> None:
        """Store step ``self.step``; ``final_values [N]`` is needed when any env was truncated."""
        if self.step >= self.num_steps:
            raise RuntimeError("RolloutBuffer is full: call compute_advantages and clear before adding more")
        t = self.step
        self.obs[t] = obs
        self.actions[t] = actions
        self.log_probs[t] = log_probs
        self.values[t] = values
        self.rewards[t] = rewards
        self.dones[t] = terminated | truncated
        self.truncated[t] = truncated
        if truncated.any():
            if final_values is None:
                raise ValueError("final_values (V of the final observation) are needed where truncated")
            self.final_values[t] = torch.where(truncated, final_values, 0.0)
        else:
            self.final_values[t] = 0.0
        self.step += 1

    def compute_advantages(self, next_value: torch.Tensor, gamma: float, lam: float) -> None:
        """GAE over the full buffer; truncated steps bootstrap from V(final observation)."""
        if self.step != self.num_steps:
            raise RuntimeError(f"RolloutBuffer holds {self.step} of {self.num_steps} steps")
        rewards = ops.bootstrap_truncated(self.rewards, self.truncated, self.final_values, gamma)
        ops.gae(rewards, self.values, self.dones, next_value, gamma, lam, out=(self.advantages, self.returns))

    def clear(self) -> None:
        self.step = 0

    def minibatches(self, num_minibatches: int, generator: torch.Generator | None = None
                    ) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffled minibatches of flattened transitions (one epoch)."""
        n = self.num_steps * self.num_envs
        if not 1 <= num_minibatches <= n // 2 or n % num_minibatches:
            raise ValueError(f"num_minibatches must divide the {n} transitions into minibatches of at least 2, "
                             f"got {num_minibatches}")
        flat = {
            "obs": self.obs.reshape(n, -1), "actions": self.actions.reshape(n, -1),
            "log_probs": self.log_probs.reshape(n), "values": self.values.reshape(n),
            "advantages": self.advantages.reshape(n), "returns": self.returns.reshape(n),
        }
        order = torch.randperm(n, generator=generator, device="cpu").to(self.obs.device)
        size = n // num_minibatches
        for start in range(0, size * num_minibatches, size):
            idx = order[start:start + size]
            yield {k: v[idx] for k, v in flat.items()}

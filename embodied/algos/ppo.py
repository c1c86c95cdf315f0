"""PPO's update (clipped surrogate, clipped value loss, entropy bonus, grad-norm clipping,
minibatch epochs), as in CleanRL's ``ppo_continuous_action``."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from embodied.data.rollout import RolloutBuffer
from embodied.policies.gaussian_mlp import GaussianMLPPolicy

#: averages gradients across data-parallel ranks (embodied.distributed); identity when alone
GradSync = Callable[[Iterable[nn.Parameter]], None]
#: the mean of a number over data-parallel ranks, so every rank takes the same early-stop decision
MeanSync = Callable[[float], float]


class PPO:
    """Updates ``policy`` from a full ``RolloutBuffer`` whose advantages are computed."""

    def __init__(self, policy: GaussianMLPPolicy, *, learning_rate: float = 3e-4, num_minibatches: int = 32,
                 update_epochs: int = 10, clip_coef: float = 0.2, clip_vloss: bool = True, ent_coef: float = 0.0,
                 vf_coef: float = 0.5, max_grad_norm: float = 0.5, target_kl: float | None = None,
                 norm_adv: bool = True, adam_eps: float = 1e-5, grad_sync: GradSync | None = None,
                 mean_sync: MeanSync | None = None, generator: torch.Generator | None = None) -> None:
        if learning_rate <= 0 or clip_coef <= 0 or max_grad_norm <= 0 or num_minibatches < 1 or update_epochs < 1:
            raise ValueError("PPO: learning_rate, clip_coef, max_grad_norm must be > 0 and num_minibatches, "
                             "update_epochs >= 1")
        self.policy = policy
        self.learning_rate = learning_rate
        self.num_minibatches, self.update_epochs = num_minibatches, update_epochs
        self.clip_coef, self.clip_vloss = clip_coef, clip_vloss
        self.ent_coef, self.vf_coef, self.max_grad_norm = ent_coef, vf_coef, max_grad_norm
        self.target_kl, self.norm_adv = target_kl, norm_adv
        self.grad_sync, self.mean_sync = grad_sync, mean_sync
        self.generator = generator
        # fused: one kernel for all parameters instead of a Python loop over them (the loop
        # costs more than the update itself for MLPs this small)
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=learning_rate, eps=adam_eps, fused=True)

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def update(self, buffer: RolloutBuffer) -> dict[str, float]:
        """``update_epochs`` passes of minibatch SGD; returns the losses and diagnostics."""
        sums: dict[str, float] = {}
        count = 0
        for _ in range(self.update_epochs):
            for mb in buffer.minibatches(self.num_minibatches, self.generator):
                stats = self._step(mb)
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
            # as CleanRL: stop after an epoch whose last minibatch moved the policy too far
            if self.target_kl is not None:
                kl = stats["approx_kl"] if self.mean_sync is None else self.mean_sync(stats["approx_kl"])
                if kl > self.target_kl:
                    break
        metrics = {k: v / count for k, v in sums.items()}
        values, returns = buffer.values.flatten(), buffer.returns.flatten()
        var = returns.var()
        metrics["explained_variance"] = float("nan") if var == 0 else float(1 - (returns - values).var() / var)
        metrics["learning_rate"] = self.optimizer.param_groups[0]["lr"]
        return metrics

    def _step(self, mb: dict[str, torch.Tensor]) -> dict[str, float]:
        log_prob, entropy, value = self.policy.evaluate(mb["obs"], mb["actions"], normalized=True)
        log_ratio = log_prob - mb["log_probs"]
        ratio = log_ratio.exp()
        adv = mb["advantages"]
        if self.norm_adv:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - self.clip_coef, 1 + self.clip_coef)).mean()
        if self.clip_vloss:
            v_clipped = mb["values"] + (value - mb["values"]).clamp(-self.clip_coef, self.clip_coef)
            v_loss = 0.5 * torch.max((value - mb["returns"]) ** 2, (v_clipped - mb["returns"]) ** 2).mean()
        else:
            v_loss = 0.5 * ((value - mb["returns"]) ** 2).mean()
        ent = entropy.mean()
        loss = pg_loss - self.ent_coef * ent + self.vf_coef * v_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_sync is not None:
            self.grad_sync(self.policy.parameters())
        grad_norm = nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm, foreach=True)
        self.optimizer.step()
        with torch.no_grad():
            approx_kl = ((ratio - 1) - log_ratio).mean()
            clipfrac = ((ratio - 1).abs() > self.clip_coef).float().mean()
            stats = torch.stack([pg_loss, v_loss, ent, approx_kl, clipfrac, grad_norm.to(pg_loss.dtype)]).tolist()
        return dict(zip(("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "grad_norm"), stats))

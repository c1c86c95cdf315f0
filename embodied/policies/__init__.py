"""Policies: ``act(obs) -> (action, log_prob, value)`` and ``evaluate(obs, action)``, with their
observation normalisation inside them so it is saved, loaded and deployed with the weights."""

from embodied.policies.gaussian_mlp import GaussianMLPPolicy

__all__ = ["GaussianMLPPolicy"]

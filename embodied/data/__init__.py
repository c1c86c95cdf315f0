"""Learner-side data: the on-policy rollout storage."""

from embodied.data.rollout import RolloutBuffer

__all__ = ["RolloutBuffer"]

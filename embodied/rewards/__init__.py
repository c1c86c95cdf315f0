"""Reward terms and their weighted composite.

A term is a small class: it declares the fields of a step it needs and maps a batch of those to
one reward per env. ``CompositeReward`` holds the weights (as mujoco_playground's
``reward_config.scales`` does) and returns the weighted sum and every term, for logging.
"""

from embodied.rewards.composite import (
    REWARD_TERMS,
    CompositeReward,
    EnvReward,
    FrameRewardTerm,
    RewardTerm,
    SuccessReward,
    check_frames,
)

__all__ = ["REWARD_TERMS", "CompositeReward", "EnvReward", "FrameRewardTerm", "RewardTerm", "SuccessReward", "check_frames"]

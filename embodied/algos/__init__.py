"""Learning algorithms; each takes typed keyword arguments with defaults."""

from embodied.algos.ppo import PPO

__all__ = ["PPO"]

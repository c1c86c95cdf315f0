"""Batched simulation environments (MuJoCo, Meta-World, gymnasium, IsaacGym)."""

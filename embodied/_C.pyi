"""The compiled extension; importing it registers torch.ops.embodied.*."""

compiled_backends: list[str]

import torch

def mujoco_step_batch(
    step_fn: int,
    post_fn: int,
    envs: torch.Tensor,
    ctrl: torch.Tensor,
    substeps: int,
    gather_ptrs: torch.Tensor,
    gather_lens: torch.Tensor,
    out: torch.Tensor,
    num_threads: int,
) -> None: ...

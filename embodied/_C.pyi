"""The compiled extension; importing it registers torch.ops.embodied.*."""

compiled_backends: list[str]

"""Moving small CPU tensors to a GPU without stopping the host.

A run draws its random numbers (cameras, lights, timesteps, noise) from one CPU generator, so a run is the same
run on any device. A plain ``tensor.to("cuda")`` of such a tensor copies from pageable memory, and PyTorch then
waits for the copy, which waits behind every kernel already queued: a host sync in the middle of a step, after
which the GPU idles while the host queues the next kernels. Copied from pinned (page-locked) memory with
``non_blocking=True``, the copy is queued in order like a kernel and the host goes on. PyTorch's pinned-memory
allocator keeps the page-locked block until the copy has been done, so the CPU tensor may be dropped at once.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["to_device"]


def to_device(x: Tensor, device: torch.device | str, dtype: torch.dtype | None = None) -> Tensor:
    """``x.to(device, dtype)``; a CPU -> CUDA copy is queued from pinned memory without a host sync."""
    device = torch.device(device)
    if dtype is not None and x.dtype != dtype:
        x = x.to(dtype)  # on the side that holds x
    if device.type != "cuda" or x.device.type != "cpu":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)

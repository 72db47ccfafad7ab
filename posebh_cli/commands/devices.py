"""The one rule for `--device` across commands: the given device, else cuda when available, else cpu."""
from __future__ import annotations

from posebh_cli.errors import PosebhError


def resolve_device(device: str | None) -> str:
    """`device` checked (a CUDA device needs a visible GPU), or the best available one when None."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PosebhError(f"--device {device}: no CUDA device is available here; use --device cpu")
    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise PosebhError(f"--device: {device!r} is not a device (cpu, cuda, cuda:1, ...)") from None
    return device


__all__ = ["resolve_device"]

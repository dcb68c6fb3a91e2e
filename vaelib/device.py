"""The device (CPU or GPU): chosen once, by :func:`get_device`, and passed along."""

from __future__ import annotations

import torch

from vaelib.errors import DeviceError


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """CUDA when present (or ``prefer``, e.g. ``"cpu"``), else the CPU.
    Raises :class:`~vaelib.errors.DeviceError` for a device this machine does not have."""
    if not prefer:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(prefer)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {prefer!r}; use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{prefer!r} was asked for, but this machine has no CUDA device; use cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"{prefer!r} was asked for, but this machine has {torch.cuda.device_count()} "
                          "CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"vaelib runs on cpu or cuda, not {prefer!r}")
    return device

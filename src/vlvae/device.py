"""The one device choice of every command that computes outside training (``--device``).

``evaluate``, ``compare``, ``sample``, ``serve`` and ``reproduce``'s evaluation run their models on
the device :func:`resolve_device` names; training stages keep Lightning's ``accelerator`` and
``devices`` keys of the run's config. A device that this machine does not have is refused in one
line before anything is read or written.

>>> resolve_device("cpu")
device(type='cpu')
>>> resolve_device("tpu")
Traceback (most recent call last):
...
vlvae.errors.VLVAEError: --device must be auto, cpu, cuda or cuda:N (N a GPU's index), got 'tpu'
"""

from __future__ import annotations

import contextlib
import re

import torch

from vlvae.errors import VLVAEError

__all__ = ["AUTO", "DEVICE_CHOICES", "resolve_device", "device_name", "fork_rng"]

#: The default of every ``--device``: CUDA when torch sees a GPU, else the CPU.
AUTO = "auto"
#: The forms ``--device`` takes, for help texts.
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


def resolve_device(spec: str | torch.device | None = AUTO, option: str = "--device") -> torch.device:
    """The torch device that ``spec`` names on this machine, or one line saying why there is none.

    Args:
        spec: ``auto`` (``cuda:0`` when torch sees a CUDA GPU, else ``cpu``; None means the same),
            ``cpu``, ``cuda`` (``cuda:0``) or ``cuda:N``; a :class:`torch.device` of those kinds.
        option: how messages name the choice.

    Returns:
        ``cpu`` or ``cuda:N``, always with its index for CUDA (``torch.random.fork_rng`` needs it).

    Raises:
        VLVAEError: another form, CUDA without a GPU that torch can use, or an index beyond the GPUs.
    """
    if spec is None:
        spec = AUTO
    text = str(spec).strip().lower()
    if text == AUTO:
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = _CUDA.match(text)
    if match is None:
        raise VLVAEError(f"{option} must be {DEVICE_CHOICES} (N a GPU's index), got {str(spec)!r}")
    index = int(match.group(1) or 0)
    if not torch.cuda.is_available():
        why = (
            f"this torch ({torch.__version__}) is built without CUDA"
            if torch.version.cuda is None
            else "torch sees no CUDA GPU on this machine (no GPU, no driver, or CUDA_VISIBLE_DEVICES empty)"
        )
        raise VLVAEError(f"{option} {text}: {why}; use --device cpu (or auto, which falls back to the CPU)")
    count = torch.cuda.device_count()
    if index >= count:
        raise VLVAEError(
            f"{option} {text}: this machine has {count} CUDA GPU{'s' if count != 1 else ''} "
            f"(cuda:0 to cuda:{count - 1}); choose one of them"
        )
    return torch.device("cuda", index)


def device_name(device: torch.device) -> str:
    """What a report records of a device: ``cpu``, or ``cuda:N (the GPU's name)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


@contextlib.contextmanager
def fork_rng(device: torch.device):
    """torch's global random state of the CPU and of ``device`` (when a GPU) put back on leaving."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield

"""What every run records next to its outputs: versions, git commit and the machine.

The machine matters for two things a reader compares across runs: wall-clock times (the same
2-core preset has taken 40 and 68 minutes on different days) and the last digits of a result
(runs of one commit and seed have differed in them between days; a different processor, whose
kernels sum floats in another order, is one candidate cause).
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

__all__ = ["package_versions", "git_commit", "machine_info", "run_info"]

_PACKAGES = ("vlvae", "torch", "numpy", "lightning", "zuko", "omegaconf", "pillow", "matplotlib")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide a run's numbers."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    """The commit of the vlvae checkout (with '+dirty' for uncommitted changes), or 'unknown'."""
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def cpu_model() -> str:
    """The processor's name: Linux's ``/proc/cpuinfo`` "model name", else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict:
    """The machine a run used: processor, logical cores, torch's threads and any CUDA devices."""
    cuda = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_devices": cuda,
        "system": platform.platform(),
    }


def run_info() -> dict:
    """Versions, commit and machine, as recorded in manifests and run directories."""
    return {"versions": package_versions(), "git_commit": git_commit(), "machine": machine_info()}

"""What every run records next to its outputs: versions, git commit and the machine.

The machine matters for two things a reader compares across runs: wall-clock times (the same
2-core classifier, trained alike, took 10.6, 18.8 and 13.7 minutes on three days) and the weights
a run trains (the same training code and seed have given stage 1s 4 points apart on different
days; the machine is one candidate cause, not isolated).
"""

from __future__ import annotations

import functools
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


@functools.cache
def git_commit() -> str:
    """The commit of the vlvae checkout (with '+dirty' for uncommitted changes to tracked files), or
    'unknown'; read once per process, so every record a process writes names the code it started
    with, not a commit made while it ran (a long ``reproduce`` beside ongoing work)."""
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
    """The processor's name: Linux's ``/proc/cpuinfo`` "model name", else what ``platform`` says
    (its processor, else its machine type), else ``"unknown"``. A virtual machine may show a
    masked name (e.g. only the vendor)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    for name in (platform.processor(), platform.machine()):
        if name and name.strip().lower() != "unknown":
            return name.strip()
    return "unknown"


def _usable_cores() -> int | None:
    """Logical cores this process may run on (its affinity where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _cuda_devices() -> list[str]:
    """Names of the visible CUDA devices; ``["unavailable"]`` where the driver cannot be asked (a
    record must never fail the run it describes)."""
    try:
        if not torch.cuda.is_available():
            return []
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - any driver error: the record says so instead
        return ["unavailable"]


def machine_info() -> dict:
    """The machine a run used: processor, its vector instruction level as torch's CPU kernels see it
    (e.g. AVX512), usable logical cores, torch's threads, any CUDA devices and the system."""
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - older or unusual builds: not worth failing a run for
        capability = "unknown"
    return {
        "cpu": cpu_model(),
        "cpu_capability": capability,
        "cpu_count": _usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "cuda_devices": _cuda_devices(),
        "system": platform.platform(),
    }


def run_info(machine: bool = True) -> dict:
    """Versions and commit, as recorded in manifests and run directories, and with ``machine`` the
    machine (:func:`machine_info`). Data sets leave the machine out: their manifest's sha256 is
    their fingerprint, which must not change with the threads or devices they were built with."""
    info = {"versions": package_versions(), "git_commit": git_commit()}
    if machine:
        info["machine"] = machine_info()
    return info

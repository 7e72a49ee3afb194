"""Test-session settings and fixtures shared by every test."""

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vlvae.cli import main
from vlvae.datasets.two_objects.build import TwoObjectsSettings, generate_two_objects


@pytest.fixture(scope="session")
def benchmark_script():
    """``load(name)``: the module of ``benchmarks/NAME.py`` (the benchmarks are scripts, not a package)."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def tiny_data_settings():
    """The settings of the tiny Two Objects data set shared by the training and hardening tests."""
    return TwoObjectsSettings(n=64, size=16, zoom=2.0, supersample=1, val_fraction=0.25)


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_data_settings):
    """A tiny Two Objects data set, one per test module that asks for it."""
    out = tmp_path_factory.mktemp("tiny") / "data"
    generate_two_objects(tiny_data_settings, out, workers=1, progress=False)
    return out


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One torch thread for the whole session (module fixtures included): the tensors here are
    tiny, and two OpenMP threads on a busy 2-core machine made them up to 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_HOLDER = textwrap.dedent("""
    import sys, time
    from vlvae.locking import folder_lock
    with folder_lock(sys.argv[1], sys.argv[2]):
        print("locked", flush=True)
        time.sleep(120)
""")


class Holder:
    """A child process that holds a folder's lock until it is killed."""

    def __init__(self, folder, command="vlvae train vlvae"):
        self.process = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(folder), command], stdout=subprocess.PIPE, text=True
        )
        line = self.process.stdout.readline()
        assert line.strip() == "locked", "the holder did not take the lock"

    @property
    def pid(self):
        return self.process.pid

    def kill(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process.stdout.close()


@pytest.fixture
def holder_of():
    """``holder_of(folder, command)`` starts a child process holding ``folder``'s write lock (killed at
    the end)."""
    holders = []

    def start(folder, command="vlvae train vlvae"):
        holders.append(Holder(folder, command))
        return holders[-1]

    yield start
    for h in holders:
        h.kill()


@pytest.fixture
def vlvae(monkeypatch, capsys):
    """``vlvae(*args)`` runs the command line in this process: (exit code, stdout, stderr)."""

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["vlvae", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:  # a success may or may not exit through SystemExit(0)
            code = 0 if exc.code is None else exc.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run

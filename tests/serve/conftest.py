"""A tiny trained run (with its classifier and report) and a live server on it, shared by the serve tests."""

import csv
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image

from vlvae.datasets import preset
from vlvae.datasets.captions.build import import_captions
from vlvae.datasets.celeba.build import build_celeba
from vlvae.inference import Inference
from vlvae.recipes.reproduce import reproduce
from vlvae.serve import create_app
from vlvae.training.run import fit_vlvae, train_text_posterior

_DATA_TESTS = str(Path(__file__).resolve().parents[1] / "data")
if _DATA_TESTS not in sys.path:
    sys.path.insert(0, _DATA_TESTS)

from celeba_fixture import make_celeba_fixture  # noqa: E402  (tests/data is on the path only from here)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The folder of `vlvae reproduce --preset tiny`: data/, classifier/, run/ (with report.md)."""
    out = tmp_path_factory.mktemp("serve") / "tiny"
    reproduce(out, "tiny", workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def inference(tiny):
    return Inference.open(tiny / "run", tiny / "classifier")


def _start(app):
    """(server, thread, socket, base URL) of uvicorn serving ``app`` on a free loopback port, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    return server, thread, sock, f"http://127.0.0.1:{port}"


def _stop(server, thread, sock):
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="session")
def partial_run(tiny, tmp_path_factory):
    """A copy of the tiny run with only the VLVAE and q_Agg trained (no q_True, no prior, no report)."""
    run = tmp_path_factory.mktemp("partial") / "run"
    run.mkdir()
    for name in ("config.yaml", "run.json"):
        shutil.copy(tiny / "run" / name, run / name)
    for stage in ("stage1", "q_agg"):
        (run / stage).mkdir()
        for name in ("weights.safetensors", "metrics.json"):
            shutil.copy(tiny / "run" / stage / name, run / stage / name)
    return run


@pytest.fixture(scope="session")
def served(inference):
    """Base URL of uvicorn serving the tiny run on a free loopback port, in a thread of this process."""
    server, thread, sock, url = _start(create_app(inference))
    yield url
    _stop(server, thread, sock)


@pytest.fixture
def serve_app():
    """``serve_app(app)`` -> the base URL of uvicorn serving ``app`` on loopback until the test ends."""
    started = []

    def serve(app):
        started.append(_start(app))
        return started[-1][-1]

    yield serve
    for server, thread, sock, _ in started:
        _stop(server, thread, sock)


@pytest.fixture(scope="session")
def celeba_run(tmp_path_factory):
    """A CelebA run (a generated miniature CelebA) with only the VLVAE and q_Agg trained, a few steps each."""
    base = tmp_path_factory.mktemp("serve_celeba")
    source = make_celeba_fixture(base / "celeba", n=40)["root"]
    build_celeba(source, base / "data", workers=1, progress=False)
    fit_vlvae(base / "data", base / "run", preset("celeba-tiny"), progress=False)
    train_text_posterior(base / "run", "agg", progress=False)
    return base / "run"


@pytest.fixture(scope="session")
def imported_run(tmp_path_factory):
    """A run on an imported data set of free captions (40 PNG squares with two captions each), with only
    the VLVAE and q_Agg trained, a few steps each."""

    base = tmp_path_factory.mktemp("serve_imported")
    (base / "images").mkdir()
    rows, rng = [], np.random.default_rng(0)
    for i in range(40):
        colour = ("red", "green", "blue")[i % 3]
        image = np.full((16, 16, 3), 128, np.uint8)
        image[4:12, 4:12, (0, 1, 2)[i % 3]] = 255
        image += rng.integers(0, 3, image.shape, dtype=np.uint8)
        Image.fromarray(image).save(base / "images" / f"{i}.png")
        rows += [(f"{i}.png", f"A {colour} square."), (f"{i}.png", f"{colour} square in the middle")]
    with open(base / "captions.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption"), *rows])
    import_captions(
        base / "images", base / "captions.csv", base / "data", size=16, val=0.2, test=0, progress=False
    )
    fit_vlvae(base / "data", base / "run", preset("tiny"), progress=False)
    train_text_posterior(base / "run", "agg", progress=False)
    return base / "run"

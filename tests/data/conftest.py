"""Shared fixtures of the data tests."""

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from celeba_fixture import make_celeba_fixture  # noqa: E402


@pytest.fixture(scope="session")
def celeba_source(tmp_path_factory):
    """A read-only miniature CelebA download (40 images, flat layout); copy it before changing it."""
    return make_celeba_fixture(tmp_path_factory.mktemp("celeba_source"))


@pytest.fixture
def celeba_copy(tmp_path):
    """A fresh miniature CelebA download that a test may damage."""
    return make_celeba_fixture(tmp_path / "celeba")

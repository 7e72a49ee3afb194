"""Every docstring example of the package runs as written (each module with a ``>>>``).

The examples see the names of :mod:`vlvae.models` and ``torch``, with torch seeded with 0.
"""

import doctest
import importlib
from pathlib import Path

import pytest
import torch

import vlvae.models

SRC = Path(__file__).resolve().parents[1] / "src"
MODULES = sorted(
    ".".join(path.relative_to(SRC).with_suffix("").parts)
    for path in (SRC / "vlvae").rglob("*.py")
    if ">>>" in path.read_text()
)


def test_the_examples_are_found():
    assert {"vlvae.models.multimodal", "vlvae.training.schedule", "vlvae.models.vlvae"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    torch.manual_seed(0)
    names = {**vars(vlvae.models), "torch": torch}
    result = doctest.testmod(module, extraglobs=names, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0

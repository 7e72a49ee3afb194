"""The docstring examples of vlvae.models run as written."""

import doctest
import importlib

import pytest
import torch

import vlvae.models

MODULES = ["likelihoods", "image", "text", "shared", "flows", "posteriors", "vlvae", "classifier"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"vlvae.models.{name}")
    torch.manual_seed(0)
    names = {**vars(vlvae.models), "torch": torch}
    result = doctest.testmod(module, extraglobs=names, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0

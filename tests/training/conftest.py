"""A tiny Two Objects data set shared by the training tests (one per test module)."""

import pytest

from vlvae.data.two_objects import TwoObjectsSettings, generate_two_objects


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "data"
    generate_two_objects(TwoObjectsSettings(n=64, size=16, zoom=2.0, supersample=1, val_fraction=0.25), out,
                         workers=1, progress=False)
    return out

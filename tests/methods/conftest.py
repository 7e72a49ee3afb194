"""One tiny reproduce with every registered method, shared by the methods' tests."""

import pytest

from vlvae.methods import method_names
from vlvae.recipes.reproduce import reproduce


@pytest.fixture(scope="session")
def compared(tmp_path_factory):
    """``reproduce --preset tiny --methods <every registered method>``: the paper's pipeline in ``run/``,
    each other method's stage 1 and stages 2-3 in ``methods/<name>/``, and ``compare.json``."""
    out = tmp_path_factory.mktemp("methods") / "tiny"
    reproduce(out, "tiny", workers=1, progress=False, methods=method_names())
    return out

"""The built-in data sets' bytes did not move when they became packages: a tiny build of each gives
the sha256 recorded from the generator before the move (commit 5cba647).

The manifest is left out (it records versions and the time); every other file is compared: the
images, the per-image records and the vocabulary. The test splits came later (issue 19):

* Two Objects draws its test split from random streams of its own, so train and validation kept
  their bytes; the test split's are those of its first build.
* CelebA's ``paper`` split now divides what was validation into validation (first half) and test
  (second half): train kept its bytes, and validation followed by test is, image for image and record
  for record, the validation split of before.
"""

import hashlib
import io
import json

import numpy as np
import pytest
from celeba_fixture import make_celeba_fixture

from vlvae.data.format import load_images, read_records
from vlvae.datasets.celeba.build import build_celeba
from vlvae.datasets.two_objects.build import TwoObjectsSettings, generate_two_objects
from vlvae.io import atomic_write_json

#: sha256 of each file of the tiny builds below, made with the code of commit 5cba647.
BEFORE = {
    "two_objects": {
        "test/images.npy": "c5d3fd9cb6d5b873277a04e606b9a051ddee8e32b39d8e2383e5a427c2c94149",
        "test/scenes.json": "e2df10273553da2aa3ee4c074fb5ad9c661ad754445cffe61d0cd22c297f252a",
        "train/images.npy": "5f0ca90484abd2315ea6272aadc9ad1fd9cf9d03f20a8e31ff8d0bcf19938dd1",
        "train/scenes.json": "3c34127b10ae630ccf7c80756e51462e9d162feb305c371d07572ab522e88046",
        "val/images.npy": "8d6093396fc571dfe73476a2243746579e6476657176f31636fd5a93e0f6573e",
        "val/scenes.json": "17d87604140b4dfe9d2176ac9ee008b7f975ae51fcc6bc9ead733e58716d4d66",
        "vocab.json": "090a5000abc3fdcd1b5c86a53b2fad8acf45d4ae169428000a33b3fb15572fad",
    },
    "celeba": {
        "train/images.npy": "54cc7c1c3296df9d73a435df9ff358a800ded56fd5f08e03cd639e08c629dd49",
        "train/scenes.json": "6964566c5b570a94ab0ebe323eeb67c669df8098d87cd69d3b3447f4183951c3",
        "val/images.npy": "6a3098ee5b8f99c86465abc53026529347299a27893f82ab9a14d347f99a9b85",
        "val/scenes.json": "623723519e9ddd4715f89ae0ae9df2e791198b17ae4f7433feb0850d2f79c396",
        "vocab.json": "3bc947da2d89e8d33e04fc131d72b2ecb56c707ba0f6170ab356f4e4652ec30d",
    },
}


def _hashes(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_a_tiny_build_has_the_bytes_of_before_the_move(name, tmp_path):
    out = tmp_path / "data"
    if name == "two_objects":
        settings = TwoObjectsSettings(n=40, size=24, zoom=1.6, supersample=1, chunk_size=16)
        generate_two_objects(settings, out, workers=1, progress=False)
        assert _hashes(out) == BEFORE[name]
        return
    source = make_celeba_fixture(tmp_path / "source")
    build_celeba(source["root"], out, chunk_size=16, workers=1, progress=False)
    now = _hashes(out)
    for kept in ("train/images.npy", "train/scenes.json", "vocab.json"):
        assert now[kept] == BEFORE[name][kept]
    # The validation split of before, rebuilt from today's validation and test splits.
    images = np.concatenate([load_images(out, "val"), load_images(out, "test")])
    buffer = io.BytesIO()
    np.save(buffer, images)
    assert hashlib.sha256(buffer.getvalue()).hexdigest() == BEFORE[name]["val/images.npy"]
    records = read_records(out, "val") + read_records(out, "test")
    info = json.loads((out / "val" / "scenes.json").read_text())["info"]
    atomic_write_json(tmp_path / "old_val.json", {"info": info, "scenes": records})
    assert (
        hashlib.sha256((tmp_path / "old_val.json").read_bytes()).hexdigest()
        == BEFORE[name]["val/scenes.json"]
    )

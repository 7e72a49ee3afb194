"""The Two Objects generator: format, determinism, resumability, visibility and bad input."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from vlvae.data.format import load_images, read_manifest, read_records, read_vocabulary
from vlvae.datasets import verify as verify_dataset
from vlvae.datasets.two_objects import build as to
from vlvae.datasets.two_objects.build import TwoObjectsSettings, generate_two_objects, min_pixels
from vlvae.datasets.two_objects.render import render_scenes
from vlvae.datasets.two_objects.scene import scene_from_record, true_texts
from vlvae.errors import VLVAEError
from vlvae.io import sha256_file

SMALL = dict(n=40, size=24, zoom=1.6, supersample=1, chunk_size=16)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_objects") / "data"
    generate_two_objects(TwoObjectsSettings(**SMALL), out, workers=1, progress=False)
    return out


def test_format_round_trip(built):
    manifest = read_manifest(built)
    assert manifest["counts"] == {"train": 36, "val": 4, "test": 4}  # test: 10 % more, streams of its own
    assert manifest["zoom"] == 1.6 and manifest["seed"] == 0 and manifest["image_size"] == 24
    for split, n in (("train", 36), ("val", 4), ("test", 4)):
        images = np.load(built / split / "images.npy", mmap_mode="r")
        assert images.dtype == np.uint8 and images.shape == (n, 24, 24, 3)
        scenes = json.loads((built / split / "scenes.json").read_text())
        assert set(scenes) == {"info", "scenes"} and len(scenes["scenes"]) == n
        assert manifest["sha256"][f"{split}/images.npy"] == sha256_file(built / split / "images.npy")
    rec = read_records(built, "train")[0]
    for key in ("shape", "color", "size", "material", "3d_coords", "rotation", "pixel_coords"):
        assert key in rec["objects"][0]
    for key in ("relationships", "directions", "camera", "lights", "text", "texts"):
        assert key in rec
    vocab = read_vocabulary(built)
    assert vocab.slot_names[4] == "R" and len(vocab.slots) == 9
    assert not (built / ".partial").exists()


def test_every_text_true_and_complete(built):
    for split in ("train", "val", "test"):
        for rec in read_records(built, split):
            truth = {tuple(t) for t in true_texts(scene_from_record(rec))}
            assert len(rec["texts"]) == 4 and {tuple(t) for t in rec["texts"]} == truth
            assert tuple(rec["text"]) in truth
    assert verify_dataset(built)["texts_checked"] == 176


def test_visibility_on_rendered_masks(built):
    """Each object covers at least CLEVR's scaled minimum, counted on per-object masks of a re-render
    (the renderer's own masks; test_render.py checks them against an independent pinhole camera)."""
    records = read_records(built, "train")[:12]
    scenes = [scene_from_record(r) for r in records]
    out = render_scenes(scenes, 24, zoom=1.6, supersample=1, return_masks=True)
    counts = out.masks.sum(axis=(2, 3))
    assert (counts >= min_pixels(24)).all()
    assert (counts == np.array([r["object_pixels"] for r in records])).all()
    stored = load_images(built, "train")[:12]
    assert np.array_equal(out.images, stored)


def test_min_pixels_scales_with_area():
    assert min_pixels(480) > min_pixels(112) > min_pixels(64)
    assert min_pixels(112) == 17  # 200 px at 480 x 320 is 16.33 px at 112 x 112, rounded up


def test_same_seed_identical_bytes_different_seed_differs(built, tmp_path):
    again = tmp_path / "again"
    generate_two_objects(TwoObjectsSettings(**SMALL), again, workers=2, progress=False)
    for split in ("train", "val"):
        for name in ("images.npy", "scenes.json"):
            assert sha256_file(again / split / name) == sha256_file(built / split / name)
    other = tmp_path / "other"
    generate_two_objects(TwoObjectsSettings(**{**SMALL, "seed": 1}), other, workers=1, progress=False)
    assert sha256_file(other / "train/images.npy") != sha256_file(built / "train/images.npy")


def test_killed_run_resumes_to_identical_bytes(built, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    real = to._render_chunk
    calls = []

    def dies_after_two(job):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(job[1])
        return real(job)

    monkeypatch.setattr(to, "_render_chunk", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        generate_two_objects(TwoObjectsSettings(**SMALL), out, workers=1, progress=False)
    assert not (out / "manifest.json").exists()
    assert len(list((out / ".partial").glob("chunk_*.json"))) == 2
    monkeypatch.setattr(to, "_render_chunk", real)
    generate_two_objects(TwoObjectsSettings(**SMALL), out, workers=1, progress=False)
    for split in ("train", "val"):
        assert sha256_file(out / split / "images.npy") == sha256_file(built / split / "images.npy")


def test_finished_set_is_not_rebuilt(built, monkeypatch):
    before = (built / "manifest.json").stat().st_mtime_ns
    monkeypatch.setattr(to, "_render_chunk", lambda job: pytest.fail("rendered again"))
    generate_two_objects(TwoObjectsSettings(**SMALL), built, workers=1, progress=False)
    assert (built / "manifest.json").stat().st_mtime_ns == before


def test_other_settings_need_overwrite(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    with pytest.raises(VLVAEError, match="other settings.*--overwrite"):
        generate_two_objects(TwoObjectsSettings(**{**SMALL, "seed": 5}), copy, workers=1, progress=False)
    verify_dataset(copy)  # untouched
    generate_two_objects(
        TwoObjectsSettings(**{**SMALL, "seed": 5}), copy, workers=1, overwrite=True, progress=False
    )
    assert read_manifest(copy)["seed"] == 5
    verify_dataset(copy)


def test_one_object_variant(tmp_path):
    out = tmp_path / "one"
    generate_two_objects(
        TwoObjectsSettings.one_object(n=20, size=16, zoom=1.5, supersample=1), out, workers=1, progress=False
    )
    vocab = read_vocabulary(out)
    assert vocab.words == ("small", "large", "red", "blue")
    for rec in read_records(out, "train"):
        (obj,) = rec["objects"]
        assert rec["text"] == [obj["size"], obj["color"]] and obj["color"] in ("blue", "red")
        assert obj["shape"] == "sphere" and obj["material"] == "rubber"
    assert read_manifest(out)["text_length"] == 2


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(n=0), "--n must be a positive"),
        (dict(n=-3), "--n must be a positive"),
        (dict(size=8), "--size must be at least 16"),
        (dict(colours=("red", "pink")), "unknown colour 'pink'"),
        (dict(sizes=("huge",)), "unknown size 'huge'"),
        (dict(val_fraction=1.5), "--val-fraction"),
    ],
)
def test_bad_settings_fail_before_writing(tmp_path, kwargs, fragment):
    with pytest.raises(VLVAEError, match=fragment):
        generate_two_objects(TwoObjectsSettings(**{**SMALL, **kwargs}), tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(VLVAEError, match="cannot (write to|create)"):
        generate_two_objects(TwoObjectsSettings(**SMALL), blocker / "data", progress=False)


def test_foreign_folder_is_refused_and_left_alone(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(VLVAEError, match="not a vlvae data set"):
        generate_two_objects(TwoObjectsSettings(**SMALL), foreign, progress=False)
    assert sorted(p.name for p in foreign.iterdir()) == ["holiday.jpg"]


def test_verify_detects_corruption(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    images = np.load(copy / "train/images.npy")
    images[0, 0, 0, 0] ^= 1
    np.save(copy / "train/images.npy", images)
    with pytest.raises(VLVAEError, match="checksum"):
        verify_dataset(copy)
    # A false text, with checksums skipped, is caught by the relation check.
    shutil.rmtree(copy)
    shutil.copytree(built, copy)
    scenes = json.loads((copy / "val/scenes.json").read_text())
    text = scenes["scenes"][0]["text"]
    text[4] = {"left": "right", "right": "left", "front": "behind", "behind": "front"}[text[4]]
    (copy / "val/scenes.json").write_text(json.dumps(scenes))
    with pytest.raises(VLVAEError, match="not true of its scene"):
        verify_dataset(copy, checksums=False)
    with pytest.raises(VLVAEError, match="not a finished vlvae data set"):
        verify_dataset(tmp_path)


def test_cli_errors_are_one_line(tmp_path):
    exe = [sys.executable, "-m", "vlvae.cli"]
    r = subprocess.run(
        exe + ["data", "two-objects", "--out", str(tmp_path / "d"), "--n", "0"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and r.stderr.strip().startswith("error: --n must be a positive")
    assert "Traceback" not in r.stderr
    r = subprocess.run(exe + ["data", "verify", str(tmp_path / "missing")], capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_corrupt_manifest_in_output_is_reported_not_overwritten(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    (copy / "manifest.json").write_text("{ truncated")
    with pytest.raises(VLVAEError, match="manifest.json is corrupt"):
        generate_two_objects(TwoObjectsSettings(**SMALL), copy, workers=1, progress=False)
    assert (copy / "manifest.json").read_text() == "{ truncated"
    assert sha256_file(copy / "train/images.npy") == sha256_file(built / "train/images.npy")

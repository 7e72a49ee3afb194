"""Hostile input (issue 20 items 4-8): every case is refused in one line, ``error: ...`` with exit code 2,
before the command writes anything, and the corrected command then works in the same folder.

1. numbers: non-finite or overflowing config values, huge step counts, seeds and k;
2. data sets checked whole before a run folder is written (a broken data set, then the good one);
3. broken files: images.npy against its manifest, scenes without text, the manifest's image_size,
   stage metrics.json, run.json, config.yaml, non-finite weights;
4. paths and usage: names over 255 bytes, symbolic link loops, ``--out ""``, ``sample --out x.jpg``,
   ``--steps abc``; the attribute classifier on the one-object data set.

Commands run through ``vlvae.cli.main`` (what the ``vlvae`` executable runs).
"""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import vlvae.cli as cli
from vlvae.config import apply_overrides, preset
from vlvae.datasets.two_objects.build import TwoObjectsSettings, generate_two_objects
from vlvae.errors import VLVAEError
from vlvae.inference import Inference
from vlvae.runs import STAGE1, load_prior, load_vlvae, stage_dir
from vlvae.training.run import fit_vlvae

TINY = ("--preset", "tiny", "--no-progress")


def one_error_line(result, *fragments):
    code, _, err = result
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
        if p.name != ".lock"
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    """A run whose stage 1 is trained (2 steps), to break copies of."""
    run = tmp_path_factory.mktemp("trained") / "run"

    fit_vlvae(data, run, apply_overrides(preset("tiny"), ["stage1.steps=2"]), progress=False)
    return run


@pytest.fixture
def run_copy(tmp_path, trained, data):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    return run


def broken_copy(data, folder, how):
    """A copy of the data set, broken as ``how`` says."""
    shutil.copytree(data, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    if how == "images count":
        images = np.load(folder / "train" / "images.npy")
        np.save(folder / "train" / "images.npy", images[:-3])
    elif how == "no text":
        scenes = json.loads((folder / "train" / "scenes.json").read_text())
        del scenes["scenes"][5]["text"]
        (folder / "train" / "scenes.json").write_text(json.dumps(scenes))
    elif how.startswith("image_size"):
        value = {"image_size missing": None, "image_size text": "sixteen", "image_size wrong": 32}[how]
        if value is None:
            del manifest["image_size"]
        else:
            manifest["image_size"] = value
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


DATA_CASES = {
    "images count": "holds 45 images, but",
    "no text": "scene 5 has no text",
    "image_size missing": "has no image_size",
    "image_size text": "has image_size 'sixteen', not a positive integer",
    "image_size wrong": "holds 16 x 16 images, but",
}


# ----------------------------------------------------------------------------- 1. numbers


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (["--set", "model.logvar_min=nan"], "'model.logvar_min' must be in [-30, 30], got nan"),
        (["--set", "model.logvar_max=inf"], "'model.logvar_max' must be in [-30, 30], got inf"),
        (["--set", "vlvae.w_x=1e308"], "'stage1.w_x' must be at most 10000"),
        (["--set", "stage1.w_y=inf"], "'stage1.w_y' must be at most 10000"),
        (["--steps", "99999999999999999999999999999"], "'stage1.steps' must be at most 1,000,000,000"),
        (["--set", "vlvae.steps=1e3_0"], "'stage1.steps' must be at most 1,000,000,000"),
        (["--set", "model.beta_concentration=1e308"], "'model.beta_concentration' must be at most"),
        (["--set", "data.zoom=1e308"], "'data.zoom' must be at most"),
        (["--set", "vlvae.max_minutes=1e308"], "'stage1.max_minutes' must be at most"),
        (["--max-minutes", "inf"], "'stage1.max_minutes' must be at most"),
        (["--set", "evaluation.k=100000000000"], "'evaluation.k' must be at most 100,000"),
        (["--method", "jmvae", "--set", "method.alpha=1e300"], "'method.alpha' must be at most"),
        (["--set", "vlvae.steps=inf"], "'stage1.steps' needs an integer"),
    ],
)
def test_numbers_are_finite_and_bounded_before_anything_is_written(vlvae, data, tmp_path, bad, fragment):
    out = tmp_path / "run"
    one_error_line(vlvae("train", "vlvae", "--data", data, "--out", out, *TINY, *bad), fragment)
    assert not out.exists()
    code, stdout, err = vlvae("train", "vlvae", "--data", data, "--out", out, *TINY, "--steps", "1")
    assert code == 0, err


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["sample", "--seed", "99999999999999999999999"], "--seed must be in [0, 4294967295]"),
        (["sample", "--seed", "-1"], "--seed must be in [0, 4294967295], got -1"),
        (["evaluate", "--k", "100000000000"], "--k must be at most 100,000"),
        (["evaluate", "--text-k", "100000000000"], "--text-k must be at most 100,000"),
        (["evaluate", "--seeds", "10000000"], "--seeds must be at most 1,000"),
    ],
)
def test_sampling_and_evaluation_options_are_bounded(vlvae, run_copy, tmp_path, args, fragment):
    command, *rest = args
    where = ["--out", tmp_path / "s.png"] if command == "sample" else ["--classifier", tmp_path / "cls"]
    before = snapshot(run_copy)
    one_error_line(vlvae(command, "--run", run_copy, *where, *rest), fragment)
    assert snapshot(run_copy) == before and not (tmp_path / "s.png").exists()


def test_inference_refuses_a_seed_out_of_range(run_copy):
    inference = Inference.open(run_copy)
    with pytest.raises(VLVAEError, match=r"seed must be in \[0, 4294967295\]"):
        inference.from_prior("standard", 2, seed=2**70)
    with pytest.raises(VLVAEError, match=r"seed must be in"):
        inference.from_text(inference.decode_texts(torch.zeros(1, 9, dtype=torch.long))[0], "agg", 1, -5)


def test_non_finite_weights_are_refused_by_tensor_and_file(vlvae, run_copy, tmp_path):

    path = stage_dir(run_copy, STAGE1) / "weights.safetensors"
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    state = load_file(str(path))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(path), metadata=metadata)
    one_error_line(
        vlvae("sample", "--run", run_copy, "--out", tmp_path / "s.png"), str(path), "non-finite", repr(name)
    )
    assert not (tmp_path / "s.png").exists()
    with pytest.raises(VLVAEError, match="non-finite values"):  # evaluate and serve load it so too
        load_vlvae(run_copy)


# ----------------------------------------------------------------------------- 2-3. data sets


@pytest.mark.parametrize("how", sorted(DATA_CASES))
def test_a_broken_data_set_is_refused_before_the_run_folder_is_written(vlvae, data, tmp_path, how):
    broken = broken_copy(data, tmp_path / "broken", how)
    out = tmp_path / "run"
    out.mkdir()
    one_error_line(
        vlvae("train", "vlvae", "--data", broken, "--out", out, *TINY, "--steps", "1"), DATA_CASES[how]
    )
    assert list(out.iterdir()) == []
    classifier = tmp_path / "classifier"
    one_error_line(
        vlvae("train", "classifier", "--data", broken, "--out", classifier, *TINY), DATA_CASES[how]
    )
    assert not classifier.exists()
    # the corrected command, in the same folder
    code, stdout, err = vlvae("train", "vlvae", "--data", data, "--out", out, *TINY, "--steps", "1")
    assert code == 0, err


@pytest.mark.parametrize("how", ["images count", "no text", "image_size text"])
def test_a_run_whose_data_broke_is_refused_by_its_readers(vlvae, run_copy, data, tmp_path, how):
    broken = broken_copy(data, tmp_path / "broken", how)
    info = json.loads((run_copy / "run.json").read_text())
    info["data"] = info["data_absolute"] = str(broken)  # the run's one data set broke in place
    (run_copy / "run.json").write_text(json.dumps(info))
    before = snapshot(run_copy)
    one_error_line(vlvae("sample", "--run", run_copy, "--out", tmp_path / "s.png"), DATA_CASES[how])
    one_error_line(vlvae("train", "prior", "--run", run_copy, "--no-progress"), DATA_CASES[how])
    assert snapshot(run_copy) == before


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "is corrupt"),
        ("[1, 2]", "holds a JSON list, not a stage's metrics"),
        (json.dumps({"weights_tag": "aggregate_prior", "steps": 2}), "describes a aggregate_prior stage"),
    ],
)
def test_a_broken_stage_metrics_json_is_refused(vlvae, run_copy, tmp_path, content, fragment):
    (stage_dir(run_copy, STAGE1) / "metrics.json").write_text(content)
    before = snapshot(run_copy)
    one_error_line(vlvae("sample", "--run", run_copy, "--out", tmp_path / "s.png"), fragment, "retrain it")
    one_error_line(vlvae("train", "prior", "--run", run_copy, "--no-progress"), fragment)
    assert snapshot(run_copy) == before


def test_a_broken_stage_2_metrics_json_makes_the_stage_missing(run_copy, tmp_path):
    folder = stage_dir(run_copy, "prior")
    folder.mkdir()
    (folder / "metrics.json").write_text("[]")
    with pytest.raises(VLVAEError, match="holds a JSON list"):
        load_prior(run_copy)


@pytest.mark.parametrize(
    "content, fragment",
    [("{not json", "is corrupt"), ("[1, 2]", "holds a JSON list, not a stage's metrics")],
)
def test_training_over_a_broken_stage_metrics_json_is_refused(vlvae, run_copy, content, fragment):
    """A finished stage is never retrained: its metrics.json is read, and a broken one is one line."""
    folder = stage_dir(run_copy, "prior")
    folder.mkdir()
    (folder / "metrics.json").write_text(content)
    before = snapshot(run_copy)
    one_error_line(vlvae("train", "prior", "--run", run_copy, "--no-progress"), fragment)
    assert snapshot(run_copy) == before


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("[]", "holds a JSON list, not an object"),
        (json.dumps({"seed": 0}), "does not name the data folder"),
    ],
)
def test_a_broken_run_json_is_refused(vlvae, run_copy, data, tmp_path, content, fragment):
    (run_copy / "run.json").write_text(content)
    before = snapshot(run_copy)
    one_error_line(vlvae("sample", "--run", run_copy, "--out", tmp_path / "s.png"), fragment)
    one_error_line(vlvae("train", "prior", "--run", run_copy, "--no-progress"), fragment)
    one_error_line(
        vlvae("train", "vlvae", "--data", data, "--out", run_copy, *TINY, "--steps", "2"), fragment
    )
    assert snapshot(run_copy) == before


@pytest.mark.parametrize(
    "content, fragment", [("", "is empty"), ("- 1\n- 2\n", "holds a list, not a configuration")]
)
def test_an_empty_config_yaml_is_refused_as_such(vlvae, run_copy, tmp_path, content, fragment):
    (run_copy / "config.yaml").write_text(content)
    line = one_error_line(vlvae("sample", "--run", run_copy, "--out", tmp_path / "s.png"), fragment)
    assert "px" not in line


def test_the_attribute_classifier_refuses_the_one_object_data_set(vlvae, tmp_path, data):
    one = tmp_path / "one"
    settings = TwoObjectsSettings(
        n=16, size=16, zoom=2.0, supersample=1, val_fraction=0.25, objects=1, colours=("blue", "red")
    )
    generate_two_objects(settings, one, workers=1, progress=False)
    out = tmp_path / "classifier"
    one_error_line(
        vlvae("train", "classifier", "--data", one, "--out", out, *TINY), "one-object data set", "two-objects"
    )
    assert not out.exists()


# ----------------------------------------------------------------------------- 4. paths and usage


def test_paths_no_command_can_use(vlvae, data, run_copy, tmp_path, monkeypatch):
    long = tmp_path / ("a" * 300) / "run"
    one_error_line(
        vlvae("train", "vlvae", "--data", data, "--out", long, *TINY), "is 300 bytes, more than the 255"
    )
    one_error_line(vlvae("sample", "--run", run_copy, "--out", tmp_path / ("b" * 300 + ".png")), "255")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for out in (tmp_path / "loop", tmp_path / "loop" / "run"):
        one_error_line(vlvae("train", "vlvae", "--data", data, "--out", out, *TINY), "loops")
    one_error_line(vlvae("sample", "--run", run_copy, "--out", tmp_path / "loop" / "s.png"), "loops")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    one_error_line(vlvae("train", "vlvae", "--data", data, "--out", "", *TINY), "'--out'", "is empty")
    one_error_line(vlvae("data", "two-objects", "--out", "", "--n", "8"), "'--out'", "is empty")
    assert snapshot(tmp_path) == before


def test_sample_refuses_a_suffix_it_would_not_write(vlvae, run_copy, tmp_path):
    one_error_line(
        vlvae("sample", "--run", run_copy, "--out", tmp_path / "x.jpg"), "does not end in .png", "x.png"
    )
    assert not (tmp_path / "x.jpg").exists()
    code, _, err = vlvae("sample", "--run", run_copy, "--out", tmp_path / "x.png", "--n", "1")
    assert code == 0, err
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--steps", "abc"], "Invalid value for '--steps'"),
        (["--nosuch"], "No such option"),
    ],
)
def test_usage_errors_are_one_line(vlvae, data, tmp_path, args, fragment):
    result = vlvae("train", "vlvae", "--data", data, "--out", tmp_path / "run", *args)
    one_error_line(result, fragment, "vlvae train vlvae --help")
    assert not (tmp_path / "run").exists()


def test_ctrl_c_outside_a_fit_is_one_line(vlvae, data, monkeypatch, tmp_path):
    """typer turns a KeyboardInterrupt into exit 130 without a word; main names it (a fit's own
    interruption line is tested in tests/training/test_nonfinite_training.py)."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "check_dataset", interrupted)
    code, _, err = vlvae("train", "vlvae", "--data", data, "--out", tmp_path / "run", *TINY)
    assert code == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted"), err

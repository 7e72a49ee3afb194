"""Bad input at the edges (issue 10): each case gives one line, a non-zero exit, and writes or loses nothing.

1. unusable output paths (a file, under a file, /proc, /sys, immutable, a folder for a file);
2. a classifier made for other data (image size, data set kind, vocabulary);
3. out-of-range options and --set values, refused before anything is written;
4. --steps 0;
5. sample --n over the limit;
6. two data builds into one folder;
7. two trainings into one run folder;
8. evaluate's metrics.json and report.md always from one evaluation (here a unit test of the
   write order; tests/evaluation/test_evaluation.py kills a real evaluation between the writes),
   and stale temporary files of killed writes removed by the next writer.

Commands run through ``vlvae.cli.main`` itself (what the ``vlvae`` executable runs), so the
tests see the printed line and the exit code.
"""

import hashlib
import json
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from vlvae.cli import app
from vlvae.config import PRESETS, apply_overrides, preset
from vlvae.data.format import read_manifest
from vlvae.datasets.two_objects.build import generate_two_objects
from vlvae.errors import VLVAEError
from vlvae.evaluation import driver as report
from vlvae.evaluation.judge import check_classifier_fits
from vlvae.generate import MAX_SAMPLES, check_sample_count
from vlvae.runs import check_run_data, init_run, open_run
from vlvae.training.judges import classifier_info, training_settings


def one_error_line(code, err, *fragments):
    """The command failed with exit code 2 and printed exactly one line, ``error: ...``, with the
    fragments."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(folder):
    """Every file below ``folder`` with its sha256 (to show that nothing was written or lost)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def run_folder(tmp_path, data):
    """A run folder made by `vlvae train vlvae` up to its config (nothing trained)."""
    run = tmp_path / "run"
    init_run(run, data, preset("tiny"))
    return run


def make_classifier(folder, data, **changes):
    """A classifier folder's classifier.json for ``data`` (no weights: the checks come first)."""
    folder.mkdir(parents=True)
    cfg = preset("tiny")
    info = classifier_info(
        data, read_manifest(data), classifier=training_settings(cfg.classifier), preset="tiny"
    )
    info.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del info[key]
    (folder / "classifier.json").write_text(json.dumps(info))
    return folder


def _chattr(flag, path):
    try:
        return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.fixture
def immutable(tmp_path):
    """``immutable(folder)`` makes a folder immutable (root cannot write either); undone at the end."""
    made = []

    def make(folder):
        folder.mkdir(parents=True, exist_ok=True)
        if not _chattr("+i", folder):
            pytest.skip("chattr +i is not supported here")
        made.append(folder)
        return folder

    yield make
    for folder in made:
        _chattr("-i", folder)


# ----------------------------------------------------------------------------- 1. output paths


@pytest.mark.parametrize(
    "where, fragment",
    [
        ("file", "exists and is a file, not a folder"),
        ("below a file", "is a file, not a folder"),
        ("/proc", "lies under /proc, a system pseudo-filesystem"),
        ("/sys", "lies under /sys, a system pseudo-filesystem"),
    ],
)
def test_train_refuses_an_unusable_out(vlvae, data, tmp_path, where, fragment):
    blocker = tmp_path / "file"
    blocker.write_text("precious")
    out = {
        "file": blocker,
        "below a file": blocker / "run",
        "/proc": "/proc/vlvae-test/run",
        "/sys": "/sys/vlvae-test",
    }[where]
    code, _, err = vlvae("train", "vlvae", "--data", data, "--out", out, "--preset", "tiny", "--no-progress")
    line = one_error_line(code, err, str(out), fragment, "--out")
    assert "Traceback" not in line
    assert blocker.read_text() == "precious" and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_other_commands_refuse_an_out_below_a_file(vlvae, data, run_folder, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for args in (
        ["train", "classifier", "--data", data, "--preset", "tiny"],
        ["data", "two-objects", "--n", "64", "--size", "16"],
        ["reproduce", "--preset", "tiny"],
        ["figure", "latent2d", "--data", data, "--preset", "tiny"],
        ["data", "preview", data],
    ):
        code, _, err = vlvae(*args, "--out", blocker / "x")
        one_error_line(code, err, f"{blocker} is a file, not a folder")
    code, _, err = vlvae("sample", "--run", run_folder, "--out", blocker / "s.png")
    one_error_line(code, err, f"{blocker} is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "run"]


def test_train_refuses_an_immutable_out(vlvae, data, immutable, tmp_path):
    out = immutable(tmp_path / "locked")
    code, _, err = vlvae("train", "vlvae", "--data", data, "--out", out, "--preset", "tiny", "--no-progress")
    one_error_line(code, err, f"cannot write to run folder {out}", "--out")


def test_sample_refuses_a_folder_as_out(vlvae, run_folder, tmp_path):
    before = snapshot(tmp_path)
    code, _, err = vlvae("sample", "--run", run_folder, "--out", tmp_path)
    one_error_line(code, err, f"image file {tmp_path} is a folder", "give a file name for --out")
    assert snapshot(tmp_path) == before


def test_sample_into_a_new_folder_writes_nothing_when_the_run_is_bad(vlvae, tmp_path):
    """The output's folder is made only when the image is written: a refused sample leaves no folder."""
    before = snapshot(tmp_path)
    code, _, err = vlvae(
        "sample", "--run", tmp_path / "no-run", "--out", tmp_path / "new" / "deeper" / "s.png"
    )
    one_error_line(code, err, "not a vlvae run folder")
    assert snapshot(tmp_path) == before and not (tmp_path / "new").exists()


def test_sample_refuses_an_out_below_a_file(vlvae, run_folder, tmp_path):
    (tmp_path / "file").write_text("x")
    code, _, err = vlvae("sample", "--run", run_folder, "--out", tmp_path / "file" / "sub" / "s.png")
    one_error_line(code, err, "is a file, not a folder")
    assert not (tmp_path / "file" / "sub").exists()


def test_evaluate_refuses_a_run_it_cannot_write(vlvae, data, run_folder, tmp_path, immutable):
    classifier = make_classifier(tmp_path / "classifier", data)
    (run_folder / "figures").write_text("not a folder")
    before = snapshot(tmp_path)
    code, _, err = vlvae("evaluate", "--run", run_folder, "--classifier", classifier)
    one_error_line(code, err, f"figures folder {run_folder / 'figures'} exists and is a file")
    assert snapshot(tmp_path) == before
    (run_folder / "figures").unlink()
    immutable(run_folder)
    code, _, err = vlvae("evaluate", "--run", run_folder, "--classifier", classifier)
    one_error_line(code, err, f"cannot write to run folder {run_folder}", "make it writable, or copy the run")


# ----------------------------------------------------------------------------- 2. classifier provenance


def test_evaluate_and_train_refuse_a_classifier_of_another_image_size(vlvae, data, run_folder, tmp_path):
    classifier = make_classifier(tmp_path / "classifier", data, image_size=32)
    code, _, err = vlvae("evaluate", "--run", run_folder, "--classifier", classifier)
    one_error_line(
        code,
        err,
        f"the classifier in {classifier} was trained on 32 px images, the data of "
        f"{run_folder} has 16 px; train a classifier on this data set: "
        f"vlvae train classifier --data {data} --out {classifier}-16px",
    )
    out = tmp_path / "new-run"
    code, _, err = vlvae(
        "train", "vlvae", "--data", data, "--out", out, "--preset", "tiny", "--classifier", classifier
    )
    one_error_line(code, err, "was trained on 32 px images, the data set")
    assert not out.exists()


@pytest.mark.parametrize(
    "changes, fragment",
    [
        (dict(kind="celeba_classifier", dataset="celeba"), "was trained on CelebA data, the data set"),
        (dict(vocab_sha256="0" * 64), "was trained with another vocabulary (vocab.json)"),
    ],
)
def test_a_classifier_of_another_data_set_or_vocabulary_is_refused(data, tmp_path, changes, fragment):
    classifier = make_classifier(tmp_path / "classifier", data, **changes)
    with pytest.raises(VLVAEError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        check_classifier_fits(classifier, data)


def test_a_classifier_from_before_provenance_is_accepted(data, tmp_path):
    classifier = make_classifier(tmp_path / "classifier", data, dataset=None, vocab_sha256=None)
    assert "vocab_sha256" not in check_classifier_fits(classifier, data)


def test_run_json_records_the_vocabulary_and_consumers_check_it(data, run_folder, tmp_path):
    cfg, info = open_run(run_folder)
    assert info["dataset"] == "two_objects" and len(info["vocab_sha256"]) == 64
    assert check_run_data(run_folder, cfg, info) == data
    with pytest.raises(VLVAEError, match="vocabulary of .* differs from the one"):
        check_run_data(run_folder, cfg, {**info, "vocab_sha256": "0" * 64})
    cfg.model.image_size = 32
    with pytest.raises(VLVAEError, match="was trained on 32 px images, but its data set .* has 16 px"):
        check_run_data(run_folder, cfg, info)


# ----------------------------------------------------------------------------- 3-4. ranges, --steps


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (["--steps", "-5"], "configuration key 'stage1.steps' must be at least 1, got -5"),
        (["--steps", "0"], "configuration key 'stage1.steps' must be at least 1, got 0"),
        (["--set", "vlvae.batch_size=0"], "configuration key 'stage1.batch_size' must be at least 1, got 0"),
        (["--set", "vlvae.lr=-1e-3"], "configuration key 'stage1.lr' must be greater than 0, got -0.001"),
        (
            ["--set", "vlvae.lr_schedule=linear"],
            "configuration key 'stage1.lr_schedule' must be one of exponential, cosine, got 'linear'",
        ),
    ],
)
def test_out_of_range_options_are_refused_before_writing(vlvae, data, tmp_path, bad, fragment):
    out = tmp_path / "run"
    code, _, err = vlvae(
        "train", "vlvae", "--data", data, "--out", out, "--preset", "tiny", "--no-progress", *bad
    )
    one_error_line(code, err, fragment)
    assert not out.exists()


def test_a_refused_start_leaves_the_folder_usable(vlvae, data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    code, _, err = vlvae(
        "train",
        "vlvae",
        "--data",
        data,
        "--out",
        out,
        "--preset",
        "tiny",
        "--no-progress",
        "--set",
        "vlvae.batch_size=0",
    )
    one_error_line(code, err, "'stage1.batch_size' must be at least 1")
    assert list(out.iterdir()) == []
    code, stdout, err = vlvae(
        "train", "vlvae", "--data", data, "--out", out, "--preset", "tiny", "--no-progress", "--steps", "2"
    )
    assert code == 0, err
    assert "VLVAE: 2 steps" in stdout
    assert (out / "stage1" / "metrics.json").is_file() and not (out / ".lock").exists()


def test_presets_pass_validation_and_every_range_is_named():
    for name in PRESETS:
        preset(name)
    for override, fragment in (
        ("evaluation.k=0", "'evaluation.k' must be at least 1"),
        ("data.val_fraction=1", "'data.val_fraction' must be in (0, 1)"),
        ("vlvae.lr_decay=1.5", "'stage1.lr_decay' must be in (0, 1]"),
        ("classifier.norm=layer", "'classifier.norm' must be one of batch, group"),
        ("text_posterior.kind=mixture", "'text_posterior.posterior_family' must be one of flow"),
        ("precision=12-bits", "'precision' must be one of"),
        ("devices=0", "'devices' must be at least 1"),
        ("vlvae.w_x=nan", "'stage1.w_x' must be greater than 0, got nan"),
    ):
        with pytest.raises(VLVAEError) as exc:
            apply_overrides(preset("tiny"), [override])
        assert fragment in str(exc.value)


# ----------------------------------------------------------------------------- 5. sample --n


def test_sample_n_is_capped(vlvae, run_folder, tmp_path):
    out = tmp_path / "s.png"
    code, _, err = vlvae("sample", "--run", run_folder, "--out", out, "--n", "100000")
    one_error_line(code, err, f"--n must be between 1 and {MAX_SAMPLES}", "got 100000")
    assert not out.exists()
    with pytest.raises(VLVAEError, match=f"between 1 and {MAX_SAMPLES}"):
        check_sample_count(MAX_SAMPLES + 1)
    check_sample_count(MAX_SAMPLES)


def test_sample_help_states_the_limit():
    result = CliRunner().invoke(app, ["sample", "--help"])
    assert result.exit_code == 0 and f"1 to {MAX_SAMPLES}" in result.output


# ----------------------------------------------------------------------------- 6-7. one writer per folder


def test_second_data_build_into_a_folder_is_refused(vlvae, tmp_path, holder_of):
    out = tmp_path / "data"
    (out / ".partial").mkdir(parents=True)
    (out / ".partial" / "settings.json").write_text("{}")
    (out / ".partial" / "chunk_00000.json").write_text("[]")
    before = snapshot(out)
    holder = holder_of(out, "vlvae data two-objects")
    code, _, err = vlvae(
        "data", "two-objects", "--out", out, "--n", "64", "--size", "16", "--workers", "1", "--no-progress"
    )
    one_error_line(
        code,
        err,
        f"{out} is being written by process {holder.pid} (vlvae data two-objects, started",
        "wait for it or choose another folder",
    )
    assert {k: v for k, v in snapshot(out).items() if k != ".lock"} == before


def test_second_training_into_a_run_folder_is_refused(vlvae, data, run_folder, holder_of):
    before = snapshot(run_folder)
    holder = holder_of(run_folder, "vlvae train vlvae")
    code, _, err = vlvae(
        "train", "vlvae", "--data", data, "--out", run_folder, "--preset", "tiny", "--no-progress"
    )
    one_error_line(code, err, f"{run_folder} is being written by process {holder.pid} (vlvae train vlvae")
    code, _, err = vlvae("train", "prior", "--run", run_folder, "--no-progress")
    one_error_line(code, err, f"{run_folder} is being written by process {holder.pid}")
    assert {k: v for k, v in snapshot(run_folder).items() if k != ".lock"} == before


# ------------------------------------------------------------------------- 8. whole evaluations, stale files


def test_metrics_are_written_after_the_old_report_is_gone(tmp_path, monkeypatch):
    (tmp_path / "metrics.json").write_text('{"evaluation_id": "old"}')
    (tmp_path / "report.md").write_text("old report of the old metrics")

    def killed(path, text):
        raise KeyboardInterrupt  # killed between the two writes

    monkeypatch.setattr(report, "atomic_write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        report._write_pair(tmp_path / "metrics.json", {"evaluation_id": "new"}, tmp_path / "report.md", "new")
    assert json.loads((tmp_path / "metrics.json").read_text())["evaluation_id"] == "new"
    assert not (tmp_path / "report.md").exists()


def test_stale_temporaries_of_a_killed_build_are_removed_on_rerun(data, tiny_data_settings, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    before = snapshot(copy)
    stale = [copy / ".manifest.json.a1b2c3d4.tmp", copy / "train" / ".images.npy.zz_9y8x7.tmp"]
    for p in stale:
        p.write_bytes(b"half-written")
    generate_two_objects(tiny_data_settings, copy, workers=1, progress=False)  # finished: nothing to do
    assert snapshot(copy) == before

"""Opening a checkpoint runs nothing of it, and --resume takes only the stage's own (issue 20, item 1).

A crafted pickle planted as a stage's ``last.ckpt`` is refused by ``vlvae train vlvae --resume``
with one line naming the file and the fix, before anything of it runs (the payload, shown live
with a plain ``pickle.load``, creates a marker file). Lightning's own read goes through the same
``weights_only`` loader. A checkpoint of another stage, replicate or of a classifier is refused
with one line naming what it belongs to.

Commands run through ``vlvae.cli.main``, so the tests see the printed line and the exit code.
"""

import io
import pickle
import shutil
import sys

import pytest
import torch

from vlvae.cli import main
from vlvae.config import preset
from vlvae.errors import VLVAEError
from vlvae.runs import init_run, stage_seed
from vlvae.training.checkpoints import STAMP_KEY, AtomicCheckpointIO, read_checkpoint, stage_stamp


def one_error_line(code, err, *fragments):
    """Exit code 2 and exactly one printed line, ``error: ...``, holding every fragment."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


class Payload:
    """Unpickling this creates ``marker`` (what an attacker's code would do, harmlessly)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted_checkpoint(path, marker, fmt):
    """A file at ``path`` that looks like a Lightning checkpoint and runs code when unpickled."""
    checkpoint = {"global_step": 3, "state_dict": {}, "callbacks": Payload(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "torch":
        torch.save(checkpoint, path)
    else:
        path.write_bytes(pickle.dumps(checkpoint))
    return path


@pytest.mark.parametrize("fmt", ["torch", "pickle"])
@pytest.mark.parametrize("folder", ["stage1", "vlvae"])  # vlvae/: run folders from before stage1/
def test_a_crafted_checkpoint_runs_nothing(vlvae, data, tmp_path, fmt, folder):
    run = tmp_path / "run"
    init_run(run, data, preset("tiny"))
    marker = tmp_path / "pwned"
    ckpt = crafted_checkpoint(run / folder / "last.ckpt", marker, fmt)

    # The payload is live: a plain unpickling of the same bytes runs it.
    live = tmp_path / "live"
    crafted_checkpoint(tmp_path / "copy.ckpt", live, fmt)
    copy = tmp_path / "copy.ckpt"
    unpickled = torch.load(copy, weights_only=False) if fmt == "torch" else pickle.loads(copy.read_bytes())
    unpickled["callbacks"].close()
    assert live.exists()

    code, _, err = vlvae(
        "train", "vlvae", "--data", data, "--out", run, "--preset", "tiny", "--no-progress", "--resume"
    )
    # A pickled global (torch's format) is named as such; a bare pickle of a newer protocol is refused
    # at its first instruction.
    said = "could run code" if fmt == "torch" else "is not a readable checkpoint"
    line = one_error_line(code, err, str(ckpt), said, f"delete {ckpt}")
    assert "Traceback" not in line
    assert not marker.exists(), "opening the checkpoint ran its code"
    assert ckpt.is_file() and not (run / folder / "metrics.json").exists()


def test_lightnings_read_is_weights_only_too(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = crafted_checkpoint(tmp_path / "last.ckpt", marker, "torch")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        AtomicCheckpointIO().load_checkpoint(ckpt, weights_only=False)  # asked for False: still True
    assert not marker.exists()


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda b: b[: len(b) // 2], "is not a readable checkpoint"),
        (lambda b: b"not a checkpoint at all", "is not a readable checkpoint"),
    ],
)
def test_a_damaged_checkpoint_is_one_line(tmp_path, damage, fragment):
    buffer = io.BytesIO()
    torch.save({"global_step": 1, "state_dict": {}}, buffer)
    path = tmp_path / "last.ckpt"
    path.write_bytes(damage(buffer.getvalue()))
    with pytest.raises(VLVAEError) as exc:
        read_checkpoint(path, stage_stamp("stage1", "vlvae", 0), torch.nn.Linear(1, 1))
    message = str(exc.value)
    assert fragment in message and "\n" not in message and f"delete {path}" in message


# ----------------------------------------------------------------------------- another stage's checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    """A tiny run (stage 1 and q_True, their last.ckpt kept) and a tiny classifier folder."""
    base = tmp_path_factory.mktemp("trained")
    run, classifier = base / "run", base / "classifier"
    argv = sys.argv
    try:
        for args in (
            ["train", "vlvae", "--data", data, "--out", run, "--preset", "tiny", "--no-progress"],
            ["train", "text-posterior", "--run", run, "--objective", "true", "--no-progress"],
            ["train", "classifier", "--data", data, "--out", classifier, "--preset", "tiny", "--no-progress"],
        ):
            sys.argv = ["vlvae", *map(str, args)]
            try:
                main()
            except SystemExit as exc:
                assert exc.code in (0, None)
    finally:
        sys.argv = argv
    assert (run / "stage1" / "last.ckpt").is_file() and (run / "q_true" / "last.ckpt").is_file()
    assert (classifier / "last.ckpt").is_file()
    return run, classifier


def unfinished_copy(trained, tmp_path, stage):
    """A copy of the trained run whose ``stage`` is unfinished again (its metrics.json and weights gone)."""
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    (run / stage / "metrics.json").unlink()
    (run / stage / "weights.safetensors").unlink()
    return run


def _unstamped(path, out):
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint[STAMP_KEY]
    torch.save(checkpoint, out)


@pytest.mark.parametrize(
    "source, target, command, fragments",
    [
        ("run/stage1", "q_true", "q_true", ["a checkpoint of stage stage1 (vlvae)", "not of stage q_true"]),
        (
            "run/q_true",
            "stage1",
            "stage1",
            ["a checkpoint of stage q_true (text_posterior)", "not of stage stage1"],
        ),
        (
            "classifier",
            "stage1",
            "stage1",
            ["a checkpoint of the attribute_classifier", "not of stage stage1"],
        ),
        ("run/q_true", "q_true.r1", "q_true.r1", ["with seed", "another replicate"]),
        ("unstamped run/stage1", "q_true", "q_true", ["the weights of stage 1 or a classifier"]),
        (
            "unstamped classifier",
            "stage1",
            "stage1",
            ["the weights of stage 1 or a classifier", "do not fit"],
        ),
    ],
)
def test_another_fits_checkpoint_is_refused(
    vlvae, data, trained, tmp_path, source, target, command, fragments
):
    stage = target if target != "q_true.r1" else "q_true"
    run = unfinished_copy(trained, tmp_path, "stage1" if target == "stage1" else stage)
    if target == "q_true.r1":  # replicate 1, never started: its folder holds replicate 0's checkpoint
        (run / target).mkdir()
    where = {"run": trained[0], "classifier": trained[1]}
    name = source.removeprefix("unstamped ")
    origin = where[name.split("/")[0]].joinpath(*name.split("/")[1:]) / "last.ckpt"
    ckpt = run / target / "last.ckpt"
    if source.startswith("unstamped"):
        _unstamped(origin, ckpt)
    else:
        shutil.copyfile(origin, ckpt)
    before = ckpt.read_bytes()
    if command == "stage1":
        args = ["train", "vlvae", "--data", data, "--out", run, "--preset", "tiny"]
    else:
        args = ["train", "text-posterior", "--run", run, "--objective", "true"]
        args += ["--replicates", "2"] if command == "q_true.r1" else []
    code, _, err = vlvae(*args, "--no-progress", "--resume")
    one_error_line(code, err, str(ckpt), *fragments)
    assert ckpt.read_bytes() == before and not (run / target / "metrics.json").exists()


def test_the_stages_own_checkpoint_resumes(vlvae, data, trained, tmp_path):
    run = unfinished_copy(trained, tmp_path, "q_true")
    code, stdout, err = vlvae(
        "train", "text-posterior", "--run", run, "--objective", "true", "--no-progress", "--resume"
    )
    assert code == 0, err
    assert (run / "q_true" / "metrics.json").is_file()
    checkpoint = torch.load(run / "q_true" / "last.ckpt", weights_only=True)
    seed = stage_seed(preset("tiny").seed, "q_true", 0)
    assert checkpoint[STAMP_KEY] == {"stage": "q_true", "weights_tag": "text_posterior", "seed": seed}


def test_the_classifiers_own_checkpoint_resumes(vlvae, data, trained, tmp_path):
    classifier = tmp_path / "classifier"
    shutil.copytree(trained[1], classifier)
    (classifier / "metrics.json").unlink()
    (classifier / "weights.safetensors").unlink()
    code, stdout, err = vlvae(
        "train",
        "classifier",
        "--data",
        data,
        "--out",
        classifier,
        "--preset",
        "tiny",
        "--no-progress",
        "--resume",
    )
    assert code == 0, err
    assert "classifier accuracy on real validation data" in stdout and (classifier / "metrics.json").is_file()
    assert (
        torch.load(classifier / "last.ckpt", weights_only=True)[STAMP_KEY]["stage"] == "attribute_classifier"
    )

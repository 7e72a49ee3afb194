"""`vlvae figure runs`: the same texts through several runs, each image what the run itself gives."""

import shutil

import numpy as np
import pytest
from PIL import Image

import vlvae.recipes.across_runs as across
from vlvae.errors import VLVAEError
from vlvae.inference import Inference


def test_the_figure_is_written_with_every_run_and_kind(vlvae, tiny, tmp_path):
    out = tmp_path / "runs.png"
    code, stdout, err = vlvae(
        "figure", "runs", "--run", f"a={tiny / 'run'}", "--run", f"b={tiny / 'run'}",
        "--classifier", tiny / "classifier", "--out", out, "--n", 2,
    )  # fmt: skip
    assert code == 0, err
    assert f"wrote {out}" in stdout
    width, height = Image.open(out).size
    assert width > 7 * 150 and height > 2 * 150  # 7 columns (data + 2 runs × 3 kinds), 2 rows, upsampled


def test_each_image_is_the_runs_own_reconstruction_and_sample(tiny, tmp_path, monkeypatch):
    drawn = {}

    def capture(x, y, vocab, runs, out, cell=1.9):
        drawn.update(x=x, y=y, runs=runs)
        return out

    monkeypatch.setattr(across, "figure_across_runs", capture)
    across.run_across_runs(
        [("a", tiny / "run"), ("b", tiny / "run")], tmp_path / "f.png", tiny / "classifier", 3, 5
    )
    # Independent of the recipe: the run opened on its own, its validation images, its own calls.
    inference = Inference.open(tiny / "run", tiny / "classifier")
    images = np.stack([inference.validation_example(i)[0] for i in range(3)])
    texts = [inference.validation_example(i)[1] for i in range(3)]
    assert list(drawn["runs"]) == ["a", "b"] and list(drawn["runs"]["a"]) == [
        "reconstruction",
        "q_agg",
        "q_true",
    ]
    rec = inference.reconstruct(images)
    got, _, scores = drawn["runs"]["a"]["reconstruction"]
    assert np.array_equal(np.rint(got.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8), rec.images)
    for i, text in enumerate(texts):
        assert scores[i] == pytest.approx(float(inference.judge(rec.images[i], text)[0]))
        for kind, name in (("q_agg", "agg"), ("q_true", "true")):
            sample = inference.from_text(text, name, n=1, seed=5)
            got, decoded, scores_k = drawn["runs"]["a"][kind]
            assert np.array_equal(
                np.rint(got[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8), sample.images[0]
            )
            assert decoded[i] == sample.texts[0] and scores_k[i] == pytest.approx(
                float(sample.correctness[0])
            )
    # The same run twice: the same images in both groups.
    for kind in ("reconstruction", "q_agg", "q_true"):
        assert np.array_equal(drawn["runs"]["a"][kind][0].numpy(), drawn["runs"]["b"][kind][0].numpy())


def test_a_run_without_q_true_shows_the_others(tiny, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(tiny / "run", copy / "run", ignore=shutil.ignore_patterns("*.ckpt", "logs"))
    shutil.copytree(tiny / "data", copy / "data")
    shutil.rmtree(copy / "run" / "q_true")
    drawn = {}
    monkeypatch.setattr(across, "figure_across_runs", lambda x, y, v, runs, out: drawn.update(runs) or out)
    across.run_across_runs([("full", tiny / "run"), ("partial", copy / "run")], tmp_path / "f.png", n=1)
    assert list(drawn["full"]) == ["reconstruction", "q_agg", "q_true"]
    assert list(drawn["partial"]) == ["reconstruction", "q_agg"]
    assert drawn["full"]["q_agg"][2] is None  # no judge: no correctness


def test_run_labels_are_parsed_and_refused_when_ambiguous(tmp_path):
    assert across.parse_labelled_runs(["cpu=runs/cpu/run", "x=/a/b"]) == [
        ("cpu", across.Path("runs/cpu/run")),
        ("x", across.Path("/a/b")),
    ]
    assert across.parse_labelled_runs([str(tmp_path / "quick" / "run")])[0][0] == "quick"
    with pytest.raises(VLVAEError, match="labels must differ"):
        across.parse_labelled_runs(["a=x", "a=y"])
    with pytest.raises(VLVAEError, match="LABEL=RUN_FOLDER"):
        across.parse_labelled_runs(["=x"])


def test_too_many_examples_are_refused_before_anything_is_opened(tmp_path):
    with pytest.raises(VLVAEError, match="--n must be between 1 and 16"):
        across.run_across_runs([("a", tmp_path / "missing")], tmp_path / "f.png", n=40)

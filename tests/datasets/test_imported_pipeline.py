"""Everything downstream on an imported data set: a user's folder of images with free captions goes
through ``vlvae data import`` and ``vlvae reproduce --data D --preset tiny``; then ``verify``,
``preview``, ``sample --text`` with words the model never saw, and the page's API with free text."""

import csv
import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from vlvae.cli import app
from vlvae.data.format import read_vocabulary
from vlvae.inference import Inference
from vlvae.runs import load_vlvae, open_run
from vlvae.serve import create_app

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """A folder of 60 PNG images (a coloured square on a grey ground, left or right) with two free
    captions each and two bad rows, imported and run through the tiny pipeline from the CLI."""
    base = tmp_path_factory.mktemp("imported")
    rng = np.random.default_rng(0)
    (base / "images").mkdir()
    rows = []
    for i in range(60):
        colour, side = rng.choice(list(COLOURS)), rng.choice(["left", "right"])
        image = np.full((20, 20, 3), 128, np.uint8)
        lo = 2 if side == "left" else 10
        image[6:14, lo : lo + 8] = COLOURS[colour]
        Image.fromarray(image).save(base / "images" / f"{i}.png")
        rows += [(f"{i}.png", f"A {colour.upper()} square, on the {side}!"), (f"{i}.png", f"{colour} {side}")]
    rows += [("gone.png", "a red square"), ("0.png", "  ")]
    with open(base / "captions.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption"), *rows])
    runner = CliRunner()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = runner.invoke(
            app,
            [
                "data", "import", "--images", str(base / "images"), "--captions", str(base / "captions.csv"),
                "--out", str(base / "D"), "--size", "16", "--val", "0.2", "--test", "0.1", "--no-progress",
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        result = runner.invoke(
            app, ["reproduce", "--data", str(base / "D"), "--preset", "tiny", "--out", str(base / "R")]
        )
        assert result.exit_code == 0, result.output
    finally:
        torch.set_num_threads(threads)
    return base


def test_the_report_is_scored_by_the_caption_judge_and_lists_the_skipped_items(imported):
    metrics = json.loads((imported / "R" / "run" / "metrics.json").read_text())
    assert metrics["dataset"] == "captions"
    assert metrics["classifier"]["judge"] == "caption judge"
    assert {"ceiling", "floor"} <= set(metrics["classifier"]) and metrics["classifier"]["ceiling"]
    report = (imported / "R" / "run" / "report.md").read_text()
    for fragment in ("Table 1", "Table 2", "Table 3", "caption judge", "gone.png", "1 empty caption"):
        assert fragment in report
    manifest = json.loads((imported / "D" / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 42, "val": 12, "test": 6}
    assert manifest["skipped"]["missing_image"]["examples"] == ["gone.png"]


def test_verify_and_preview_read_an_imported_set(imported):
    runner = CliRunner()
    result = runner.invoke(app, ["data", "verify", str(imported / "D")])
    assert result.exit_code == 0 and "'test': 6" in result.output
    result = runner.invoke(app, ["data", "preview", str(imported / "D"), "--out", str(imported / "p.png")])
    assert result.exit_code == 0 and (imported / "p.png").stat().st_size > 0


def test_sample_takes_any_words_and_names_the_unknown_ones(imported):
    out = imported / "sample.png"
    result = CliRunner().invoke(
        app,
        ["sample", "--run", str(imported / "R" / "run"), "--out", str(out), "--text", "A red zebra, left!"],
    )
    assert result.exit_code == 0, result.output
    assert "'zebra'" in result.output and "'<unk>'" in result.output and "'red'" not in result.output
    assert out.stat().st_size > 0


def test_the_page_api_takes_free_text_and_flags_unknown_words(imported):
    inference = Inference.open(imported / "R" / "run", imported / "R" / "classifier")
    client = TestClient(create_app(inference))
    vocab = client.get("/api/vocab").json()
    assert vocab["layout"] == "free" and vocab["end"] == "<end>"
    answer = client.get("/api/text", params={"text": "Blue square, on the RIGHT; zebra", "n": 2}).json()
    assert answer["unknown_words"] == [";", "zebra"]
    assert answer["text"] == "blue square , on the right ; zebra"
    for column in answer["columns"]:
        assert len(column["samples"]) == 2
        # decoded texts stop at their end word: the end word is never shown
        assert all("<end>" not in sample["caption"] for sample in column["samples"])


def test_the_run_reads_a_text_up_to_its_end_word(imported):
    """The run's model knows the end word (docs/design.md §11): log p(y|z) is the sum over the slots up
    to and including the first end word, the same whatever fills the slots after it."""
    run = imported / "R" / "run"
    cfg, _ = open_run(run)
    vocab = read_vocabulary(imported / "D")
    assert cfg.model.end_index == vocab.end_index == vocab.index["<end>"]
    model = load_vlvae(run, cfg).eval()
    y = torch.tensor([vocab.encode_padded(["red", "square"], cfg.model.text_length)])
    filled = y.clone()
    filled[0, 3:] = vocab.index["blue"]  # after the end word (slot 2)
    z = torch.randn(5, 1, cfg.model.latent_dim)
    with torch.no_grad():
        base, after = model.log_py(y, z), model.log_py(filled, z)
        log_probs = model._text_logits(z, y).log_softmax(-1)
    assert torch.equal(base, after)
    by_hand = sum(log_probs[:, 0, t, int(y[0, t])] for t in range(3))
    assert torch.allclose(base[:, 0], by_hand, atol=1e-5)
    changed = y.clone()
    changed[0, 1] = vocab.index["blue"]  # a word of the text
    with torch.no_grad():
        assert not torch.equal(model.log_py(changed, z), base)

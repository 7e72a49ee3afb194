"""Correctness, likelihood tables, the report and `vlvae reproduce` on the tiny preset."""

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from vlvae import runinfo
from vlvae.config import PRESETS, load_config
from vlvae.data.dataset import ImageTextDataset
from vlvae.datasets.two_objects.judge import (
    ATTRIBUTE_SLOTS,
    TwoObjectsClassifierData,
    TwoObjectsScorer,
    load_classifier,
    real_accuracy,
)
from vlvae.datasets.two_objects.words import two_objects_vocabulary
from vlvae.errors import VLVAEError
from vlvae.evaluation import driver, registry
from vlvae.evaluation.driver import current_evaluation, evaluate_run, read_metrics
from vlvae.evaluation.metrics import (
    correctness_tables,
    likelihood_tables,
    paired_differences,
    summarise,
    validation_batch,
)
from vlvae.evaluation.report import render_report
from vlvae.generate import sample_from_prior, sample_from_text
from vlvae.recipes.reproduce import TIMINGS, _Clock, adopt_judges, reproduce
from vlvae.runs import finished_replicates, load_prior, load_text_posterior, load_vlvae, open_run
from vlvae.seeds import caption_judge_seed, classifier_seed


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "tiny"
    metrics = reproduce(out, "tiny", workers=1, progress=False)
    return out, metrics


def _all_texts(root, n):
    """Real validation images, each paired with every one of its true texts."""
    data = TwoObjectsClassifierData(root, "val", all_texts=True)
    base = data.base
    images, texts = [], []
    for i in range(min(n, len(base))):
        for t in base.records[i]["texts"]:
            images.append(base[i]["image"])
            texts.append(base.vocab.encode(t))
    return torch.stack(images).float() / 255, torch.tensor(texts)


def test_correctness_of_real_images_equals_classifier_accuracy(pipeline):
    out, _ = pipeline
    model, metrics = load_classifier(out / "classifier")
    vocab = ImageTextDataset(out / "data", "val").vocab
    x, y = _all_texts(out / "data", 16)
    scores = TwoObjectsScorer(model, vocab).score(x, y)
    expected = real_accuracy(model, out / "data", "val", limit=16)["overall"]
    assert scores.mean().item() == pytest.approx(expected, abs=1e-6)
    assert metrics["real_accuracy"]["overall"] == pytest.approx(
        real_accuracy(model, out / "data", "val")["overall"], abs=1e-6
    )


def test_correctness_of_random_texts_is_chance(pipeline):
    """Texts drawn independently of the images match by chance: mean over slots of 1/|slot|."""
    out, _ = pipeline
    model, _ = load_classifier(out / "classifier")
    vocab = ImageTextDataset(out / "data", "val").vocab
    x, _ = _all_texts(out / "data", 16)
    g = torch.Generator().manual_seed(0)
    reps = 40
    xs = x.repeat(reps, 1, 1, 1)
    texts = torch.stack(
        [
            torch.tensor([vocab.index[s[int(torch.randint(len(s), (), generator=g))]] for s in vocab.slots])
            for _ in range(len(xs))
        ]
    )
    chance = np.mean([1 / len(vocab.slots[s]) for s in ATTRIBUTE_SLOTS])
    scores = TwoObjectsScorer(model, vocab).score(xs, texts)
    stderr = scores.std().item() / len(scores) ** 0.5
    assert abs(scores.mean().item() - chance) < 4 * stderr + 0.01


def test_scorer_hand_case():
    """A stub classifier that always predicts slot class 0: correctness counts slot-0 words."""
    vocab = two_objects_vocabulary()

    class AlwaysFirst(torch.nn.Module):
        def forward(self, x, relation):
            return [
                torch.zeros(len(x), len(vocab.slots[s])).index_fill_(1, torch.tensor([0]), 1.0)
                for s in ATTRIBUTE_SLOTS
            ]

    scorer = TwoObjectsScorer(AlwaysFirst(), vocab)
    texts = torch.tensor(
        [
            vocab.encode("small cyan rubber sphere left small cyan rubber sphere"),  # every word first: 8/8
            vocab.encode("large cyan metal sphere right small red rubber cube"),  # 4 of 8
            vocab.encode("large red metal cube front large red metal cube"),  # 0 of 8
            vocab.encode("small cyan rubber sphere small small cyan rubber sphere"),  # no relation word: 0
        ]
    )
    scores = scorer.score(torch.zeros(4, 3, 8, 8), texts)
    assert scores.tolist() == [1.0, 0.5, 0.0, 0.0]


def test_summarise_against_numpy():
    runs = [np.array([1.0, 0.0, 0.5]), np.array([0.5, 0.5, 1.0])]
    s = summarise(runs)
    assert s["mean"] == pytest.approx(0.5833333, abs=1e-6)
    assert s["std_over_seeds"] == pytest.approx(np.std([0.5, 2 / 3], ddof=1))
    # Over the examples' means over seeds (0.75, 0.25, 0.75), not the 6 pooled values.
    assert s["stderr_over_examples"] == pytest.approx(np.std([0.75, 0.25, 0.75], ddof=1) / np.sqrt(3))
    assert s["mc_stderr"] == pytest.approx(np.std([0.5, 2 / 3], ddof=1) / np.sqrt(2))


def test_report_and_metrics(pipeline):
    out, metrics = pipeline
    report = (out / "run" / "report.md").read_text()
    for fragment in (
        "Table 1",
        "Table 2",
        "72.75",
        "87.01",
        "65.62",
        "83.81",
        "log p(x|y)",
        "log p(y)",
        "Classifier accuracy on real validation images",
    ):
        assert fragment in report
    saved = json.loads((out / "run" / "metrics.json").read_text())
    assert set(saved["correctness"]["conditional"]) == {"q_true", "q_agg"}
    assert set(saved["correctness"]["prior"]) == {"standard", "learned"}
    lk = saved["likelihood"]
    k = saved["settings"]["k"]
    assert saved["replicates"] == 1 and "one training run" in report
    assert lk["text_k"] == [1, saved["settings"]["text_k"]] == [1, 10]
    for table in ("log_p_x_given_y", "log_p_x", "log_p_y"):
        k = 10 if table == "log_p_y" else saved["settings"]["k"]
        for per_k in lk[table].values():
            assert set(per_k) == {"k=1", f"k={k}"}
            # The importance-weighted bound is at least the k = 1 bound on average (same examples).
            assert per_k[f"k={k}"]["mean"] >= per_k["k=1"]["mean"] - 3 * per_k["k=1"]["stderr"]
    for name, path in saved["figures"].items():
        assert (out / "run" / path).stat().st_size > 1000, name
    assert "stopping" in saved["figures"]
    # Table 3: every source scored against the aggregate of all training images, the reference row
    # (the aggregate's own samples) in a hole at about the percentile by construction
    landing = saved["landing"]["marginal"]
    assert set(landing["sources"]) == {"q_true", "q_agg", "standard", "learned"}
    assert landing["n_components"] == len(ImageTextDataset(out / "data", "train"))
    assert landing["reference"]["hole_fraction"]["mean"] <= 0.02
    for fragment in ("Table 3", "in a hole", "when each fit stopped", "log p(y), k=10"):
        assert fragment in report
    assert set(saved["stages"]) == {"q_true", "q_agg", "prior"}


def _copy_pipeline(out, to):
    """A copy of a reproduce folder whose run points at the copy's data."""
    shutil.copytree(out, to)
    info = json.loads((to / "run" / "run.json").read_text())
    info["data"] = str((to / "data").resolve())
    (to / "run" / "run.json").write_text(json.dumps(info))
    return to


def test_vlvae_replicates_are_summarised_over_runs(pipeline, tmp_path):
    """--vlvae-replicates 2 trains a second VLVAE with another seed; summary.md gives the spread over both."""
    out, first = pipeline
    copy = _copy_pipeline(out, tmp_path / "tiny")
    summary = reproduce(copy, "tiny", workers=1, progress=False, vlvae_replicates=2)
    assert (
        load_config(copy / "run.r1" / "config.yaml").seed
        == load_config(copy / "run" / "config.yaml").seed + 1_000_000
    )
    second = json.loads((copy / "run.r1" / "metrics.json").read_text())
    s = summary["correctness"]["conditional"]["q_agg"]
    values = [
        first["correctness"]["conditional"]["q_agg"]["mean"],
        second["correctness"]["conditional"]["q_agg"]["mean"],
    ]
    assert s["replicates"] == 2 and s["per_replicate"] == pytest.approx(values)
    assert s["std_over_replicates"] == pytest.approx(np.std(values, ddof=1))
    text = (copy / "summary.md").read_text()
    assert "2 independently trained VLVAE (q(z|x)) models" in text and "run.r1/report.md" in text
    steps = json.loads((copy / TIMINGS).read_text())["steps"]
    for key in ("run.r1/stage1", "run.r1/q_true", "run.r1/q_agg", "run.r1/prior", "run.r1/evaluation"):
        assert steps[key]["how"] == "ran" and steps[key]["seconds"] > 0, key
    assert json.loads((copy / "summary.json").read_text())["vlvae_replicates"] == 2


def test_replicates_are_trained_with_their_own_seeds_and_reported_as_spread(pipeline, tmp_path):
    """--replicates 2 on a finished run trains only replicate 1 of stages 2-3 and reports the spread."""
    out, _ = pipeline
    copy = _copy_pipeline(out, tmp_path / "tiny")
    metrics = reproduce(copy, "tiny", workers=1, progress=False, replicates=2)
    run = copy / "run"
    assert finished_replicates(run) == 2
    for stage in ("q_true", "q_agg", "prior"):
        assert (run / f"{stage}.r1" / "metrics.json").is_file()
        assert not (run / f"{stage}.r2").exists()
    a, b = load_text_posterior(run, "agg", replicate=0), load_text_posterior(run, "agg", replicate=1)
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    # replicate 0 is untouched: the same weights as the original run's
    original = load_text_posterior(out / "run", "agg")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), original.parameters()))
    s = metrics["correctness"]["conditional"]["q_agg"]
    assert s["replicates"] == 2 and len(s["per_replicate"]) == 2
    assert s["mean"] == pytest.approx(np.mean(s["per_replicate"]))
    assert s["std_over_replicates"] == pytest.approx(np.std(s["per_replicate"], ddof=1))
    # N(0, I) is not trained: with the same sampling seeds its replicates agree exactly
    assert metrics["correctness"]["prior"]["standard"]["std_over_replicates"] == 0.0
    report = (run / "report.md").read_text()
    assert "2 training replicates" in report
    assert [row["replicate"] for row in metrics["stages"]["q_true"]] == [0, 1]


def test_reproduce_skips_finished_stages(pipeline, capsys, monkeypatch):
    out, _ = pipeline
    # Another commit than the one that evaluated the fixture: its evaluation is not current.
    monkeypatch.setattr(runinfo, "git_commit", lambda: "1" * 40)
    first = json.loads((out / TIMINGS).read_text())["steps"]
    trained = ["caption_judge", "classifier", "run/stage1", "run/q_true", "run/q_agg", "run/prior"]
    assert list(first) == ["data", *trained, "run/evaluation"]
    assert all(step["how"] == "ran" and step["seconds"] > 0 for step in first.values())
    for key in trained:  # each step's clock holds its stage's own training time, and more
        own = json.loads((out / key / "metrics.json").read_text())["seconds_this_session"]
        assert first[key]["seconds"] >= own
    reproduce(out, "tiny", workers=1, progress=False)
    printed = capsys.readouterr().out
    # data, the caption judge, the classifier, stage 1, q_True, q_Agg, the prior
    assert printed.count("already done") == 7
    # Steps found finished keep the seconds of the session that ran them; the evaluation ran again.
    again = json.loads((out / TIMINGS).read_text())["steps"]
    assert {k: v for k, v in again.items() if k != "run/evaluation"} == {
        k: v for k, v in first.items() if k != "run/evaluation"
    }
    table = printed[printed.index("where the time went") :].splitlines()
    total = sum(step["seconds"] for step in again.values())
    assert table[len(again) + 1] == f"  {'total of the timed steps':<28} {total / 60:7.1f} min"
    for line, step in zip(table[1:], again.values()):
        assert line.startswith(f"  {step['label']:<28} {step['seconds'] / 60:7.1f} min")


def _kept(printed: str) -> bool:
    """Whether a reproduce printed that it kept its run's evaluation (found it current)."""
    assert "evaluation" in printed
    return "(its metrics.json is current)" in printed


def _resave_changed(weights) -> None:
    """Add 1 to the first tensor of a safetensors file, its header's metadata kept."""
    tensors = load_file(weights)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1.0
    with open(weights, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    save_file(tensors, weights, metadata=header.get("__metadata__"))


def test_reproduce_keeps_an_evaluation_only_while_it_would_come_out_the_same(
    pipeline, tmp_path, monkeypatch, capsys
):
    """A finished evaluation is kept when the same code (a clean checkout's commit, the same package
    versions and machine) would read the same weights with the same judges, settings, replicates and
    device, its report and figures present; anything else evaluates again."""
    out, _ = pipeline
    copy = _copy_pipeline(out, tmp_path / "tiny")
    run, cls, cap = copy / "run", copy / "classifier", copy / "caption_judge"
    commit = ["2" * 40]
    monkeypatch.setattr(runinfo, "git_commit", lambda: commit[0])

    def evaluation_id() -> str:
        return json.loads((run / "metrics.json").read_text())["evaluation_id"]

    def again() -> bool:
        """reproduce once more: whether it kept the evaluation (checked against the file's id)."""
        before = evaluation_id()
        returned = reproduce(copy, "tiny", workers=1, progress=False)
        kept = _kept(capsys.readouterr().out)
        assert (evaluation_id() == before) is kept and returned["evaluation_id"] == evaluation_id()
        return kept

    def current(**given) -> bool:
        found = current_evaluation(run, given.pop("classifier", cls), **{"caption_judge": cap, **given})
        return found is not None

    assert not current()  # the copy's metrics name the original's judges, and another commit
    assert not again()
    first = json.loads((run / "metrics.json").read_text())
    assert again() and again()
    assert json.loads((run / "metrics.json").read_text()) == first
    steps = json.loads((copy / TIMINGS).read_text())["steps"]
    assert steps["run/evaluation"]["how"] == "ran" and steps["run/evaluation"]["seconds"] > 0
    # The same folders spelled another way are the same judges.
    monkeypatch.chdir(copy)
    assert current(classifier=Path("classifier"), caption_judge=Path("caption_judge").absolute())
    # Each thing evaluate_run would read or do differently, one at a time.
    moved = tmp_path / "judge_elsewhere"
    shutil.copytree(cls, moved)
    assert not current(classifier=moved)  # the same weights, another folder
    assert not current(caption_judge=None) and not current(replicates=2)
    for other in ("3" * 40, commit[0] + "+dirty", "unknown"):
        monkeypatch.setattr(runinfo, "git_commit", lambda other=other: other)
        assert not current()
    monkeypatch.setattr(runinfo, "git_commit", lambda: commit[0])
    assert current()
    versions, machine = runinfo.package_versions(), runinfo.machine_info()
    with monkeypatch.context() as m:
        m.setattr(runinfo, "package_versions", lambda: {**versions, "torch": "0"})
        assert not current()
    with monkeypatch.context() as m:
        m.setattr(runinfo, "machine_info", lambda: {**machine, "cpu": "another"})
        assert not current()
    with monkeypatch.context() as m:
        m.setattr(driver, "device_name", lambda device: "cuda:0 (another)")
        assert not current()
    figure = run / first["figures"]["reconstructions"]
    kept_figure = figure.read_bytes()
    figure.unlink()
    assert not current()
    figure.write_bytes(kept_figure)
    report = (run / "report.md").read_text()
    (run / "report.md").write_text(report.replace(first["evaluation_id"], "0" * 32))
    assert not current()
    (run / "report.md").write_text(report)
    assert current()
    # Evaluated by hand with other options: other settings, no figures, another accuracy threshold.
    judged = json.loads((cls / "metrics.json").read_text())
    lower = judged["real_accuracy"]["overall"] / 2  # met, and not the judge's own threshold
    assert lower != judged.get("min_accuracy", 0.9)
    for options in ({"examples": 4}, {"figures": False}, {"min_accuracy": lower}):
        evaluate_run(run, cls, progress=False, caption_judge=cap, **options)
        assert not current(), options
    assert not again() and again()
    _resave_changed(run / "q_agg" / "weights.safetensors")
    assert not current()
    assert not again() and again()


def test_evaluate_names_the_missing_stage(pipeline, tmp_path):

    out, _ = pipeline
    run = tmp_path / "run"
    shutil.copytree(out / "run", run)
    shutil.rmtree(run / "prior")
    with pytest.raises(VLVAEError, match="vlvae train prior --run"):
        evaluate_run(run, out / "classifier", figures=False, progress=False)
    with pytest.raises(VLVAEError, match="vlvae train classifier"):
        evaluate_run(out / "run", tmp_path / "no_classifier", figures=False, progress=False)


def test_evaluate_refuses_a_weak_classifier(pipeline):
    out, _ = pipeline
    with pytest.raises(VLVAEError, match="below the 100% needed"):
        evaluate_run(out / "run", out / "classifier", min_accuracy=1.0, figures=False, progress=False)


def test_report_and_metrics_share_an_evaluation_id_and_a_kill_between_them_leaves_no_stale_report(
    pipeline, tmp_path, monkeypatch
):
    """Issue 10, case 8: report.md is always rendered from the metrics.json beside it; stale temporary
    files of earlier killed writes are removed by the next evaluation."""

    out, _ = pipeline
    run = tmp_path / "run"
    shutil.copytree(out / "run", run)
    (run / "figures").mkdir(exist_ok=True)
    stale = [run / ".metrics.json.k7_x2a9q.tmp", run / "figures" / ".fig3_reconstructions.png.abcd1234.tmp"]
    for p in stale:
        p.write_text("left by a killed write")
    metrics = evaluate_run(run, out / "classifier", figures=False, progress=False)
    assert not any(p.exists() for p in stale)
    first = json.loads((run / "metrics.json").read_text())["evaluation_id"]
    assert first == metrics["evaluation_id"] and len(first) == 32
    assert first in (run / "report.md").read_text().strip().splitlines()[-1]

    write_text = driver.atomic_write_text

    def killed_before_the_report(path, text):
        if Path(path).name == "report.md":
            raise KeyboardInterrupt  # the process dies between the two writes
        write_text(path, text)

    monkeypatch.setattr(driver, "atomic_write_text", killed_before_the_report)
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(run, out / "classifier", figures=False, progress=False)
    assert json.loads((run / "metrics.json").read_text())["evaluation_id"] != first
    assert not (run / "report.md").exists(), "an old report.md must not outlive its metrics.json"
    assert not (run / ".lock").exists()


def test_sample_from_text_and_prior(pipeline):
    out, _ = pipeline
    text = "small red metal cube left large blue rubber sphere"
    images, texts = sample_from_text(out / "run", text, "agg", n=3)
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.uint8 and len(texts) == 3
    again, _ = sample_from_text(out / "run", text, "agg", n=3)
    assert np.array_equal(images, again)  # seeded
    images, texts = sample_from_prior(out / "run", "learned", n=5)
    assert images.shape[0] == 5 and all(len(t.split()) == 9 for t in texts)
    with pytest.raises(VLVAEError, match="unknown word.*'pink'"):
        sample_from_text(out / "run", "small pink metal cube left large blue rubber sphere", "agg")
    with pytest.raises(VLVAEError, match="has 3 words"):
        sample_from_text(out / "run", "small red cube", "true")


def test_sample_command_writes_png(pipeline, tmp_path):
    out, _ = pipeline
    png = tmp_path / "s.png"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlvae.cli",
            "sample",
            "--run",
            str(out / "run"),
            "--text",
            "small red metal cube left large blue rubber sphere",
            "--posterior",
            "true",
            "--n",
            "2",
            "--out",
            str(png),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paired_differences_against_numpy():
    a, b = np.array([1.0, 2.0, 4.0]), np.array([0.5, 2.5, 1.0])
    d = paired_differences({"q_agg": a, "q_true": b})["q_agg - q_true"]
    assert d["mean"] == pytest.approx((a - b).mean())
    assert d["stderr"] == pytest.approx((a - b).std(ddof=1) / np.sqrt(3))


def test_paired_differences_of_a_model_with_itself_are_exactly_zero(pipeline):
    """Pairs line up example by example: the same q in both roles differs by exactly 0 everywhere."""
    out, _ = pipeline
    run = out / "run"
    model, q, prior = load_vlvae(run), load_text_posterior(run, "agg"), load_prior(run)
    data = ImageTextDataset(out / "data", "val")
    x, y = validation_batch(data, 8)
    same = {"q_agg": q, "q_true": q}
    lk = likelihood_tables(model, x, y, same, {"standard": prior, "learned": prior}, k=3, micro_batch=2)
    for kk, tables in lk["differences"].items():
        for table in tables.values():
            for d in table.values():
                assert d == {"mean": 0.0, "stderr": 0.0}, kk
    model_c, _ = load_classifier(out / "classifier")
    c = correctness_tables(
        model,
        {"paper": TwoObjectsScorer(model_c, data.vocab).score},
        x,
        y,
        same,
        {"standard": prior, "learned": prior},
        seeds=2,
    )["paper"]
    assert c["differences"]["q_agg - q_true"] == {"mean": 0.0, "stderr": 0.0}
    assert "Paired differences" in (run / "report.md").read_text()


def test_the_tables_score_the_test_split(pipeline):
    """Nothing trains, stops or tunes on the test split: the tables score its first examples, whatever
    early stopping read on validation, and say so."""
    out, metrics = pipeline
    assert metrics["settings"]["split"] == "test"
    test = ImageTextDataset(out / "data", "test")
    assert metrics["settings"]["examples"] == min(len(test), metrics["settings"]["examples_requested"])
    assert (
        metrics["settings"]["examples_capped_from"] is None
        or len(test) < metrics["settings"]["examples_requested"]
    )
    assert (
        "**test split** (nothing trained, stopped or tuned on it)" in (out / "run" / "report.md").read_text()
    )


def test_scored_examples_never_include_those_early_stopping_chose_weights_on(pipeline, tmp_path):
    """A data set without a test split is scored on validation: with patience, stages 2-3 select
    weights on the last validation examples; the tables then score at most the examples before them."""

    out, _ = pipeline
    copy = _copy_pipeline(out, tmp_path / "tiny")
    # The data set as built before test splits existed.
    manifest = json.loads((copy / "data" / "manifest.json").read_text())
    del manifest["counts"]["test"]
    manifest["sha256"] = {k: v for k, v in manifest["sha256"].items() if not k.startswith("test/")}
    (copy / "data" / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(copy / "data" / "test")
    info = json.loads((copy / "run" / "run.json").read_text())  # a run made before fingerprints too
    del info["data_fingerprint"]
    (copy / "run" / "run.json").write_text(json.dumps(info))
    config = OmegaConf.load(copy / "run" / "config.yaml")
    n_val = len(ImageTextDataset(copy / "data", "val"))
    config.text_posterior.patience, config.text_posterior.val_examples = 1, n_val - 5
    OmegaConf.save(config, copy / "run" / "config.yaml")
    metrics = evaluate_run(copy / "run", copy / "classifier", examples=n_val, figures=False, progress=False)
    assert metrics["settings"]["examples"] == 5 and metrics["settings"]["examples_capped_from"] == n_val
    assert metrics["settings"]["split"] == "val"
    assert "**validation split** (the data set has no test split)" in (copy / "run" / "report.md").read_text()


def test_evaluate_a_joint_inference_run(tmp_path):
    """q(z|x, y) needs the text too: Table 3's aggregate encodes every training image with its text."""
    metrics = reproduce(
        tmp_path / "joint", "tiny", overrides=["model.joint_inference=true"], workers=1, progress=False
    )
    assert metrics["landing"]["marginal"]["n_components"] == len(
        ImageTextDataset(tmp_path / "joint" / "data", "train")
    )


def test_a_registered_metric_is_computed_and_carried_by_the_summary(pipeline, tmp_path, monkeypatch):
    """A new metric is one registry entry: the driver computes it per replicate, combines it, writes it
    to metrics.json, and the summary over runs carries it; a metric whose needs are unmet is skipped."""

    def mean_text_length(ev, subject):
        # A toy metric with an exact answer: the fraction of non-padding words is a property of y alone.
        return {"toy": {"mean": float((ev.y > 0).double().mean()), "stderr": 0.0}}

    toy = registry.Metric(name="toy", keys=("toy",), description="a test metric", compute=mean_text_length)
    never = registry.Metric(
        name="never",
        keys=("never",),
        description="needs what no run has",
        compute=None,
        needs=lambda _: False,
    )
    monkeypatch.setattr(registry, "_REGISTRY", registry._REGISTRY + (toy, never))
    out = _copy_pipeline(pipeline[0], tmp_path / "copy")
    metrics = driver.evaluate_run(out / "run", out / "classifier", figures=False, progress=False)
    assert "never" not in metrics
    y = metrics["toy"]
    assert y["replicates"] == 1 and 0 < y["mean"] <= 1 and y["std_over_replicates"] == 0.0
    assert json.loads((out / "run" / "metrics.json").read_text())["toy"] == y
    summary = driver.summarise_runs([out / "run", out / "run"], [metrics, metrics], tmp_path / "s")
    assert summary["toy"]["mean"] == pytest.approx(y["mean"]) and summary["toy"]["replicates"] == 2


def test_a_version_1_metrics_file_is_read_and_rendered(pipeline, tmp_path):
    """metrics.json files written before the schema was versioned still read and render the same tables."""
    out, _ = pipeline
    current = json.loads((out / "run" / "metrics.json").read_text())
    old = {k: v for k, v in current.items() if k not in ("schema", "method", "distributions", "inputs")}
    (tmp_path / "metrics.json").write_text(json.dumps(old))
    upgraded = read_metrics(tmp_path / "metrics.json")
    assert upgraded["schema"] == 1 and upgraded["method"]["name"] == "vlvae"
    assert upgraded["distributions"] == current["distributions"]
    cfg, _ = open_run(out / "run")
    assert render_report(upgraded, cfg) == render_report(current, cfg)
    newer = {**current, "schema": 99}
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    with pytest.raises(VLVAEError, match="newer vlvae"):
        read_metrics(tmp_path / "newer.json")


def test_each_stage_records_its_budget_what_stopped_it_and_its_weights_tag(pipeline):
    """Budgets are steps: every stage says what stopped it; ``posterior_family`` only where a stage fits
    a distribution (stage 1 and the judge fit none), and the weights' tag under its own name."""
    out, metrics = pipeline
    stage1 = json.loads((out / "run" / "stage1" / "metrics.json").read_text())
    assert stage1["weights_tag"] == "vlvae" and "posterior_family" not in stage1 and "kind" not in stage1
    assert stage1["stopped_by"] == "steps" and stage1["steps"] == stage1["steps_budget"]
    assert stage1["max_minutes"] == 0.0
    assert metrics["stage1"]["stopped_by"] == "steps"
    judge = json.loads((out / "classifier" / "metrics.json").read_text())
    assert "posterior_family" not in judge and "kind" not in judge and judge["stopped_by"] == "steps"
    for stage in ("q_true", "q_agg", "prior"):
        record = json.loads((out / "run" / stage / "metrics.json").read_text())
        assert record["posterior_family"] == "flow" and record["stopped_by"] in ("steps", "patience")
    assert "wall-clock cap" not in (out / "run" / "report.md").read_text()


# ----------------------------------------------------------------------------- --device

#: The metrics.json keys that hold numbers the device could change.
_NUMBERS = ("correctness", "correctness_caption_judge", "likelihood", "landing", "captions", "posterior_std")


def test_evaluation_on_the_cpu_given_explicitly_equals_the_default(pipeline, tmp_path, vlvae):
    """``device="cpu"`` passed explicitly and the command's default (auto: the CPU on a machine without
    a GPU) give the default's numbers; the micro-batch of importance samples changes no number beyond
    float rounding, and each evaluation records its device and settings."""
    out, metrics = pipeline
    copy = _copy_pipeline(out, tmp_path / "tiny")
    explicit = evaluate_run(
        copy / "run",
        copy / "classifier",
        figures=False,
        progress=False,
        caption_judge=copy / "caption_judge",
        device="cpu",
    )
    assert metrics["device"] == explicit["device"] == "cpu"
    for key in _NUMBERS:
        assert explicit[key] == metrics[key], key
    if torch.cuda.is_available():
        return  # auto is the GPU there: test_evaluation_on_a_gpu_agrees_with_the_cpu
    code, _, err = vlvae(
        "evaluate",
        "--run",
        copy / "run",
        "--classifier",
        copy / "classifier",
        "--caption-judge",
        copy / "caption_judge",
        "--no-figures",
        "--micro-batch",
        1,
    )
    assert code == 0, err
    auto = json.loads((copy / "run" / "metrics.json").read_text())
    assert auto["device"] == "cpu" and auto["settings"]["micro_batch"] == 1
    assert metrics["settings"]["micro_batch"] != 1
    for key in _NUMBERS:
        if key != "likelihood":
            assert auto[key] == metrics[key], key
    for table in ("log_p_x_given_y", "log_p_x", "log_p_y"):
        for name, per_k in metrics["likelihood"][table].items():
            for kk, s in per_k.items():
                assert auto["likelihood"][table][name][kk]["mean"] == pytest.approx(
                    s["mean"], rel=1e-5, abs=1e-4
                )


def test_micro_batch_is_checked_like_its_config_key(pipeline, vlvae):
    out, _ = pipeline
    before = (out / "run" / "metrics.json").read_bytes()
    code, _, err = vlvae(
        "evaluate", "--run", out / "run", "--classifier", out / "classifier", "--micro-batch", 0
    )
    assert code == 2 and "--micro-batch" in err and err.count("\n") == 1
    assert (out / "run" / "metrics.json").read_bytes() == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_evaluation_on_a_gpu_agrees_with_the_cpu(pipeline, tmp_path):
    """On a GPU every number is computed (the judges and figures on the CPU) and agrees with the CPU's:
    exactly in kind, and within the Monte-Carlo error in value (a GPU draws other random numbers)."""
    out, cpu = pipeline
    copy = _copy_pipeline(out, tmp_path / "tiny")
    gpu = evaluate_run(
        copy / "run", copy / "classifier", progress=False, caption_judge=copy / "caption_judge", device="cuda"
    )
    assert gpu["device"].startswith("cuda:0 (")
    assert gpu["figures"] and all((copy / "run" / p).is_file() for p in gpu["figures"].values())
    for key in _NUMBERS:
        assert json.dumps(gpu[key], sort_keys=True).count(":") == json.dumps(cpu[key], sort_keys=True).count(
            ":"
        )
    # No draw: q(z|x)'s spread is the same computation on either device (up to TF32 convolutions).
    assert gpu["posterior_std"]["q_z_x"] == pytest.approx(cpu["posterior_std"]["q_z_x"], rel=1e-2)
    for table in ("log_p_x_given_y", "log_p_x", "log_p_y"):
        for name, per_k in cpu["likelihood"][table].items():
            for kk, s in per_k.items():
                g = gpu["likelihood"][table][name][kk]
                assert np.isfinite(g["mean"])
                assert abs(g["mean"] - s["mean"]) <= 5 * max(s["stderr"], g["stderr"]) + 1e-3 * abs(
                    s["mean"]
                ), (
                    table,
                    name,
                    kk,
                )
    for table in ("conditional", "prior"):
        for name in cpu["correctness"][table]:
            assert 0.0 <= gpu["correctness"][table][name]["mean"] <= 1.0
    # The deterministic pieces agree to float precision: q(z|x) of the scored images, log p(x|z).
    data = ImageTextDataset(out / "data", "test")
    x, y = validation_batch(data, 8)
    on_cpu, on_gpu = load_vlvae(out / "run"), load_vlvae(out / "run").to("cuda")
    q_cpu, q_gpu = on_cpu.image_posterior(x, y), on_gpu.image_posterior(x.cuda(), y.cuda())
    torch.testing.assert_close(q_gpu.mean.cpu(), q_cpu.mean, rtol=1e-2, atol=1e-3)
    z = q_cpu.mean
    torch.testing.assert_close(
        on_gpu.log_px(x.cuda(), z.cuda()).cpu(), on_cpu.log_px(x, z), rtol=1e-2, atol=1e-1
    )


def _reproduce_with_judges_of(out, new, override):
    """``reproduce --preset tiny --data OUT/data --judges-from OUT --set OVERRIDE --out NEW``."""
    return reproduce(
        new, "tiny", workers=1, progress=False, data=out / "data", judges_from=out, overrides=[override]
    )


def test_reproduce_copies_judges_from_an_earlier_run(pipeline, tmp_path, capsys):
    """--judges-from: the earlier run's finished judges are copied byte for byte, not trained again."""
    out, _ = pipeline
    new = tmp_path / "longer"
    metrics = _reproduce_with_judges_of(out, new, "stage1.steps=8")
    printed = capsys.readouterr().out
    assert printed.count("copied from") == 2
    assert "classifier       running" not in printed and "caption judge    running" not in printed
    for judge in ("classifier", "caption_judge"):
        names = sorted(p.relative_to(out / judge) for p in (out / judge).rglob("*") if p.is_file())
        assert names and names == sorted(
            p.relative_to(new / judge) for p in (new / judge).rglob("*") if p.is_file()
        )
        for name in names:
            assert (out / judge / name).read_bytes() == (new / judge / name).read_bytes()
    assert metrics["correctness"]["reconstruction"]["mean"] >= 0.0
    # the run was trained anew with its own budget, judged by the copied judges
    assert json.loads((new / "run" / "stage1" / "metrics.json").read_text())["steps"] == 8
    # where the time went: the given data and the copied judges are named without seconds
    steps = json.loads((new / TIMINGS).read_text())["steps"]
    assert [steps[k]["how"] for k in ("data", "caption_judge", "classifier", "run/stage1")] == [
        "given",
        "copied",
        "copied",
        "ran",
    ]
    assert steps["data"]["seconds"] is None and steps["classifier"]["seconds"] is None
    assert "caption judge" in printed[printed.index("where the time went") :]


@pytest.mark.parametrize("changed", ["classifier", "caption_judge"])
@pytest.mark.parametrize("key", ["steps", "precision"])
def test_judges_from_checks_each_judge_against_its_own_section_before_copying_any(
    pipeline, tmp_path, changed, key
):
    """The two judges have a config section each: a run whose section for one of them differs (in its
    steps, or in the judge's own precision) refuses that judge, and copies neither (the caption judge
    is copied first when both fit)."""
    out, _ = pipeline
    value = {"steps": PRESETS["tiny"]().classifier.steps + 1, "precision": "bf16-mixed"}[key]
    new = tmp_path / "other"
    with pytest.raises(VLVAEError, match=f"{changed} was trained with other settings"):
        _reproduce_with_judges_of(out, new, f"{changed}.{key}={value}")
    assert not (new / "classifier").exists() and not (new / "caption_judge").exists()


def test_adopting_a_judge_refuses_another_judge(pipeline, tmp_path):
    out, _ = pipeline
    cfg = PRESETS["tiny"]()
    target = tmp_path / "classifier"
    other_settings = replace(cfg.classifier, steps=cfg.classifier.steps + 1)
    with pytest.raises(VLVAEError, match="other settings"):
        adopt_judges([(out / "classifier", target, other_settings, classifier_seed(cfg.seed))], out / "data")
    with pytest.raises(VLVAEError, match="seed"):
        adopt_judges(
            [(out / "caption_judge", target, cfg.caption_judge, caption_judge_seed(cfg.seed + 1))],
            out / "data",
        )
    unfinished = tmp_path / "unfinished"
    shutil.copytree(out / "classifier", unfinished)
    (unfinished / "metrics.json").unlink()
    with pytest.raises(VLVAEError, match="no finished judge"):
        adopt_judges([(unfinished, target, cfg.classifier, classifier_seed(cfg.seed))], out / "data")
    assert not target.exists()
    adopt_judges([(out / "classifier", target, cfg.classifier, classifier_seed(cfg.seed))], out / "data")
    assert json.loads((target / "metrics.json").read_text()) == json.loads(
        (out / "classifier" / "metrics.json").read_text()
    )


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"steps": null}',
        '{"steps": []}',
        '{"steps": {"data": 1}}',
        '{"steps": {"data": {"label": "data", "how": "ran"}}}',
        '{"steps": {"data": {"label": "data", "how": "ran", "seconds": "5"}}}',
        '{"steps": {"data": {"label": "data", "how": "ran", "seconds": true}}}',
        '{"steps": {"data": {"label": "data", "how": "ran", "seconds": -5}}}',
        '{"steps": {"data": {"label": "data", "how": "ran", "seconds": NaN}}}',
        '{"steps": {"data": {"label": "data", "how": "ran", "seconds": Infinity}}}',
    ],
)
def test_a_damaged_timings_file_is_started_afresh(tmp_path, content):
    """timings.json is a record, not an input: one this module did not write is replaced, and the
    table is made from this session's steps alone."""
    (tmp_path / TIMINGS).write_text(content)
    clock = _Clock(tmp_path)
    assert clock.steps == {}
    clock.record("classifier", "classifier", 120.0, "ran")
    clock.found("data", "data")
    assert json.loads((tmp_path / TIMINGS).read_text())["steps"] == {
        "classifier": {"label": "classifier", "seconds": 120.0, "how": "ran"},
        "data": {"label": "data", "seconds": None, "how": "earlier session, not recorded"},
    }
    assert clock.table()[1:] == [
        f"  {'classifier':<28} {2.0:7.1f} min  100 %",
        f"  {'data':<28} {'–':>7}        earlier session, not recorded",
        f"  {'total of the timed steps':<28} {2.0:7.1f} min (1 untimed)",
    ]


def test_the_table_shows_this_sessions_steps_only(tmp_path):
    """Steps of an earlier session stay in the file; the table lists those met now, shares of their total."""
    earlier = _Clock(tmp_path)
    earlier.record("run.r1/stage1", "VLVAE (VLVAE 1)", 600.0, "ran")
    earlier.record("run/stage1", "VLVAE", 90.0, "ran")
    now = _Clock(tmp_path)
    now.found("run/stage1", "VLVAE")
    now.record("run/evaluation", "evaluation", 30.0, "ran")
    assert set(json.loads((tmp_path / TIMINGS).read_text())["steps"]) == {
        "run.r1/stage1",
        "run/stage1",
        "run/evaluation",
    }
    assert now.table()[1:] == [
        f"  {'VLVAE':<28} {1.5:7.1f} min   75 %",
        f"  {'evaluation':<28} {0.5:7.1f} min   25 %",
        f"  {'total of the timed steps':<28} {2.0:7.1f} min",
    ]
    (tmp_path / TIMINGS).unlink()
    (tmp_path / TIMINGS).mkdir()  # not a file: unreadable, started afresh
    assert _Clock(tmp_path).steps == {}

"""The registry of stages fitted on a frozen stage-1 model (vlvae.methods.stages) is what the code reads."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from vlvae import inference, runs
from vlvae.cli import app
from vlvae.config import preset
from vlvae.errors import VLVAEError
from vlvae.evaluation import driver, figures, report
from vlvae.evaluation.metrics import paired_differences
from vlvae.methods import get_method, method_names
from vlvae.methods import stages as registry
from vlvae.methods.stages import PRIOR, STANDARD_PRIOR, TEXT_POSTERIOR, get_stage, registered_stages
from vlvae.objectives import aggregate_posterior_objective
from vlvae.training.run import train_stage, train_text_posterior, train_vlvae
from vlvae.training.tasks import STAGE_TASKS, AggregatePriorTask, TextPosteriorTask


def _per_example(names, n=7, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=n) for name in names}


def _all_distributions():
    return [STANDARD_PRIOR.distribution] + [stage.distribution for stage in registered_stages()]


def test_paired_differences_pair_exactly_the_registered_pairs_against_numpy():
    per_example = _per_example(_all_distributions())
    out = paired_differences(per_example)
    declared = [(s.distribution, s.paired_against) for s in registered_stages() if s.paired_against]
    assert list(out) == [f"{a} - {b}" for a, b in declared]
    assert declared == [("q_agg", "q_true"), ("learned", "standard")]  # the paper's two comparisons
    for a, b in declared:
        d = per_example[a] - per_example[b]
        assert out[f"{a} - {b}"]["mean"] == pytest.approx(d.mean(), rel=1e-12)
        assert out[f"{a} - {b}"]["stderr"] == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)), rel=1e-12)
    # A pair with a member absent from the tables is left out, not an error.
    del per_example["q_true"]
    assert list(paired_differences(per_example)) == ["learned - standard"]


def test_a_stage_added_to_the_registry_is_paired_without_touching_the_metrics(monkeypatch):
    q_agg = get_stage("q_agg")
    extra = dataclasses.replace(
        q_agg, name="q_new", choice="new", distribution="q_new", paired_against="q_agg", seed_offset=3
    )
    monkeypatch.setattr(registry, "_REGISTRY", (*registered_stages(), extra))
    monkeypatch.setattr(registry, "_BY_NAME", {**registry._BY_NAME, "q_new": extra})
    per_example = _per_example([*_all_distributions(), "q_new"], seed=1)
    out = paired_differences(per_example)
    assert list(out) == ["q_agg - q_true", "learned - standard", "q_new - q_agg"]
    d = per_example["q_new"] - per_example["q_agg"]
    assert out["q_new - q_agg"]["mean"] == pytest.approx(d.mean(), rel=1e-12)
    assert runs.stage_seed(10, "q_new", 2) == 10 + 3 + 2000
    assert registry.text_posterior_stage("new") is extra


@pytest.mark.parametrize("replicate", [0, 1, 4])
def test_stage_seeds_are_the_registry_offsets_plus_1000_per_replicate(replicate):
    for stage in registered_stages():
        assert runs.stage_seed(123, stage.name, replicate) == 123 + stage.seed_offset + 1000 * replicate
    # The offsets themselves are those every earlier run was trained with.
    assert {s.name: s.seed_offset for s in registered_stages()} == {"q_true": 1, "q_agg": 1, "prior": 2}


@pytest.mark.parametrize(
    "call",
    [
        lambda: get_stage("q_foo"),
        lambda: runs.stage_seed(0, "q_foo"),
        lambda: runs.stage_seed(0, "vlvae"),
        lambda: runs.load_stage("RUN", "q_foo", preset("tiny")),
    ],
)
def test_an_unknown_stage_is_one_line_naming_the_known_ones(call):
    with pytest.raises(VLVAEError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message and "unknown stage" in message
    assert all(name in message for name in ("q_true", "q_agg", "prior"))


def test_an_unknown_objective_names_the_registered_ones(tmp_path):
    for call in (
        lambda: registry.text_posterior_stage("own"),
        lambda: runs.load_text_posterior(tmp_path, "own"),
        lambda: train_text_posterior(tmp_path / "run", "own"),
    ):
        with pytest.raises(VLVAEError, match=r"^--objective must be 'true' or 'agg', got 'own'$"):
            call()
    assert not (tmp_path / "run").exists()


def test_an_unfinished_stage_names_the_registered_command(tmp_path):
    cfg = preset("tiny")
    for stage in registered_stages():
        with pytest.raises(VLVAEError) as err:
            runs.load_stage(tmp_path, stage.name, cfg, replicate=2)
        assert str(err.value) == (
            f"stage {stage.name!r} (replicate 2) of {tmp_path} is not finished; run "
            f"`{stage.command.format(run=tmp_path)} --replicates 3`"
        )
    with pytest.raises(VLVAEError, match="vlvae train prior --run"):
        runs.load_prior(tmp_path, cfg)
    with pytest.raises(VLVAEError, match="vlvae train text-posterior --run .* --objective true`"):
        runs.load_text_posterior(tmp_path, "true", cfg)


def test_the_names_read_elsewhere_come_from_the_registry():
    assert runs.STAGES == ("stage1", "q_true", "q_agg", "prior")
    # The figures draw q_Agg before q_True and N(0, I) before the learned prior, with these labels.
    assert list(figures.POSTERIOR_LABELS.items()) == [("q_agg", "q_Agg(z|y)"), ("q_true", "q_True(z|y)")]
    assert list(figures.PRIOR_LABELS.items()) == [
        ("standard", "prior N(0, I)"),
        ("learned", "learned prior q_φ(z)"),
    ]
    assert report._NAMES == {
        "q_true": "q_True(z|y)",
        "q_agg": "q_Agg(z|y)",
        "standard": "p(z) = N(0, I)",
        "learned": "q_φ(z)",
    }
    # The report's tables list what the driver offers them, in the registry's order.
    vlvae = get_method("vlvae")
    offered = driver._labels(vlvae, runs.method_stages(vlvae))
    assert [*offered["text_posteriors"], *offered["priors"]] == ["q_true", "q_agg", "standard", "learned"]
    assert list(figures.STOPPING_PANELS) == [s.name for s in registered_stages()]
    assert {s.fits for s in registered_stages()} == {TEXT_POSTERIOR, PRIOR}
    for stage in registered_stages():
        assert figures.STOPPING_PANELS[stage.name] == (stage.monitor, stage.curve_title)
        assert stage.lock_command in stage.command and stage.command.startswith(
            stage.lock_command + " --run {run}"
        )


def test_the_commands_the_page_and_inference_choose_from_the_registry():
    assert inference.TEXT_POSTERIORS == {"agg": ("q_agg", "q_Agg(z|y)"), "true": ("q_true", "q_True(z|y)")}
    assert inference.PRIORS == {"standard": (None, "N(0, I)"), "learned": ("prior", "q_φ(z)")}
    assert list(registry.choices(TEXT_POSTERIOR)) == ["agg", "true"]
    # Validation computes q_Agg's cross-entropy before q_True's text ELBO (the noise of earlier runs).
    assert [s.metric for s in registry.validation_stages()] == ["cross_entropy", "text_elbo"]
    assert STAGE_TASKS[TEXT_POSTERIOR].__self__ is TextPosteriorTask
    assert STAGE_TASKS[PRIOR].__self__ is AggregatePriorTask
    for stage in registered_stages():
        assert callable(stage.objective)
    help_text = CliRunner().invoke(app, ["train", "text-posterior", "--help"]).output
    assert all(name in help_text for name in registry.choices(TEXT_POSTERIOR))


def test_a_fourth_text_posterior_is_one_registry_entry(data, tmp_path, monkeypatch):
    """A new entry (its own objective, metric and folder) trains through the registry's task."""

    def halved(q, y, model, image_z):
        return 0.5 * aggregate_posterior_objective(q, y, model, image_z)

    extra = dataclasses.replace(
        get_stage("q_agg"),
        name="q_half",
        choice="half",
        distribution="q_half",
        objective=halved,
        metric="half_cross_entropy",
        validation_rank=2,
        paired_against=None,
    )
    monkeypatch.setattr(registry, "_REGISTRY", (*registered_stages(), extra))
    monkeypatch.setattr(registry, "_BY_NAME", {**registry._BY_NAME, "q_half": extra})
    run = tmp_path / "run"
    train_vlvae(data, run, "tiny", progress=False)
    metrics = train_stage(run, "q_half", progress=False)
    assert metrics["objective"] == "half" and metrics["steps"] == preset("tiny").text_posterior.steps
    assert {"val/cross_entropy", "val/text_elbo", "val/half_cross_entropy"} <= set(metrics["validation"])
    assert runs.load_stage(run, "q_half") is not None


def test_every_method_takes_only_registered_stages():
    for name in method_names():
        for stage in get_method(name).stages:
            assert get_stage(stage).name == stage


def test_the_registry_imports_neither_training_nor_evaluation():
    code = (
        "import sys, vlvae.methods.stages; "
        "print(sorted(m for m in sys.modules if m.startswith(('vlvae.training', 'vlvae.evaluation'))))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"

"""Every registered method through the real pipeline on the tiny preset: stage 1, q_Agg post hoc, compare."""

import dataclasses
import json
import shutil
import sys
import types

import numpy as np
import pytest
from typer.testing import CliRunner

import vlvae.methods as methods
from vlvae import runinfo
from vlvae.cli import app
from vlvae.config import apply_overrides, preset
from vlvae.errors import VLVAEError
from vlvae.evaluation.driver import compare_runs, evaluate_run
from vlvae.inference import Inference
from vlvae.methods import get_method, method_names
from vlvae.methods.jmvae import JMVAE
from vlvae.methods.mvae import MVAE
from vlvae.methods.telbo import TELBO
from vlvae.models.vlvae import VLVAE
from vlvae.recipes.reproduce import reproduce
from vlvae.runs import load_vlvae, open_run
from vlvae.training.run import train_text_posterior, train_vlvae


def test_each_method_trains_its_model_and_its_post_hoc_q_agg(compared):
    for name, cls in (("jmvae", JMVAE), ("telbo", TELBO), ("mvae", MVAE)):
        run = compared / "methods" / name
        cfg, _ = open_run(run)
        assert cfg.method.name == name
        assert type(load_vlvae(run)) is cls
        assert (run / "q_agg" / "metrics.json").is_file()
        assert not (run / "q_true").exists()  # only the stages the method declares
    cfg, _ = open_run(compared / "methods" / "joint")
    assert cfg.model.joint_inference


def test_comparison_table_has_every_method_and_posterior(compared):
    result = json.loads((compared / "compare.json").read_text())
    assert result["schema"] == 2
    methods = [m["method"]["name"] for m in result["metrics"]]
    assert methods == list(method_names())
    k = f"k={result['settings']['k']}"
    for m in result["metrics"]:
        name = m["method"]["name"]
        expected = {"q_agg"} | ({"q_true"} if name == "vlvae" else set())
        expected |= {"own"} if get_method(name).own_text_posterior else set()
        assert set(m["distributions"]["text_posteriors"]) == expected
        assert set(m["correctness"]["conditional"]) == expected
        assert set(m["likelihood"]["log_p_x_given_y"]) == expected
        assert all(k in m["likelihood"]["log_p_x_given_y"][q] for q in expected)
        assert 0 <= m["captions"]["words"]["mean"] <= 1
        assert m["captions"]["texts"]["mean"] <= m["captions"]["words"]["mean"]
        assert m["stage1"]["steps"] == 6
        # The comparison is a rendering of each run's own evaluation: the same metrics.json.
        run = compared / ("run" if name == "vlvae" else f"methods/{name}")
        assert json.loads((run / "metrics.json").read_text())["evaluation_id"] == m["evaluation_id"]
    text = (compared / "compare.md").read_text()
    assert "JMVAE-kl" in text and "q_TELBO(z\\|y)" in text and "fig7_joint_vs_marginal.png" in text
    assert (compared / "fig7_joint_vs_marginal.png").stat().st_size > 0


def test_every_methods_run_has_its_own_report(compared):
    """`vlvae evaluate` works on a run of any method: its own q(z|y) beside q_Agg post hoc, Tables 1-3."""
    for name in ("jmvae", "telbo", "mvae", "joint"):
        method = get_method(name)
        report = (compared / "methods" / name / "report.md").read_text()
        assert method.title in report and "q_Agg(z|y)" in report and "Table 3" in report
        if method.own_text_posterior:
            assert method.own_text_posterior in report
        assert "q_True(z|y)" not in report  # not a stage of the baselines


def test_a_current_evaluation_is_reused_and_a_changed_one_is_not(compared, tmp_path, monkeypatch):
    path = compared / "methods" / "jmvae" / "metrics.json"
    # As if the fixture had been evaluated by a clean checkout at this commit, and that code runs now.
    commit = "1" * 40
    path.write_text(json.dumps({**json.loads(path.read_text()), "git_commit": commit}))
    monkeypatch.setattr(runinfo, "git_commit", lambda: commit)
    before = json.loads(path.read_text())["evaluation_id"]
    runs = [compared / "methods" / "jmvae"]
    # reproduce scored every run with the caption judge too: reused with it (same judges, settings
    # and weights), evaluated again without it (the caption judge's column would be missing).
    caption = compared / "caption_judge"
    again = compare_runs(
        runs, compared / "classifier", tmp_path / "c1", progress=False, caption_judge=caption
    )
    assert again["metrics"][0]["evaluation_id"] == before
    assert again["metrics"][0]["correctness_caption_judge"] is not None
    # Written by other code (another commit, a dirty or unknown checkout, other versions): evaluated
    # again, unless the caller made it a moment ago (made_now).
    cls = compared / "classifier"
    outs = iter(range(100))

    def evaluated_again(stored: str, running: str, made_now=()) -> dict | None:
        """compare_runs with ``stored`` as the metrics.json's commit and ``running`` as the code's: the
        new evaluation, or None where it reused the file's."""
        path.write_text(json.dumps({**json.loads(path.read_text()), "git_commit": stored}))
        monkeypatch.setattr(runinfo, "git_commit", lambda: running)
        before = json.loads(path.read_text())["evaluation_id"]
        out = tmp_path / f"c{next(outs)}"
        m = compare_runs(runs, cls, out, progress=False, caption_judge=caption, made_now=made_now)
        assert json.loads(path.read_text())["evaluation_id"] == m["metrics"][0]["evaluation_id"]
        return None if m["metrics"][0]["evaluation_id"] == before else m["metrics"][0]

    for running in ("2" * 40, commit + "+dirty", "unknown"):
        assert evaluated_again(commit, running, made_now={before}) is None
    assert evaluated_again(commit, commit) is None
    redone = evaluated_again(commit, "2" * 40)
    assert redone is not None
    # The same commit of a checkout with uncommitted changes, or no commit at all, tells nothing.
    assert evaluated_again(commit + "+dirty", commit + "+dirty") is not None
    assert evaluated_again("unknown", "unknown") is not None
    versions = runinfo.package_versions()
    with monkeypatch.context() as m:
        m.setattr(runinfo, "package_versions", lambda: {**versions, "torch": "0"})
        newer = evaluated_again(commit, commit)
    assert newer is not None
    # Each number the same: the evaluation is deterministic, only its record differs.
    assert redone["correctness"] == newer["correctness"] == again["metrics"][0]["correctness"]
    other = compare_runs(runs, compared / "classifier", tmp_path / "seeds", seeds=2, progress=False)
    assert other["metrics"][0]["settings"]["seeds"] == 2
    # A metrics.json that cannot be read as a current evaluation (here: of an unknown method) is
    # replaced by a new one, not an error.
    path.write_text(json.dumps({**json.loads(path.read_text()), "method": {"name": "gone"}}))
    fresh = compare_runs(runs, compared / "classifier", tmp_path / "gone", seeds=2, progress=False)
    assert fresh["metrics"][0]["method"]["name"] == "jmvae"


def test_reproduce_methods_evaluates_its_run_once_in_any_checkout(compared, monkeypatch):
    """Where the commit tells nothing (here unknown), reproduce --methods evaluates run/ again (it cannot
    be told current), and its comparison reuses that evaluation instead of computing it a second time."""
    monkeypatch.setattr(runinfo, "git_commit", lambda: "unknown")
    before = json.loads((compared / "run" / "metrics.json").read_text())["evaluation_id"]
    returned = reproduce(compared, "tiny", workers=1, progress=False, methods=method_names())
    assert returned["evaluation_id"] != before
    table = json.loads((compared / "compare.json").read_text())
    assert table["metrics"][0]["method"]["name"] == "vlvae"
    assert table["metrics"][0]["evaluation_id"] == returned["evaluation_id"]


def test_evaluate_refuses_zero_replicates(compared):
    with pytest.raises(VLVAEError, match="at least one training replicate"):
        evaluate_run(compared / "methods" / "mvae", compared / "classifier", replicates=0, progress=False)


def test_compare_needs_at_least_one_run(compared, tmp_path):
    with pytest.raises(VLVAEError, match="at least one run"):
        compare_runs([], compared / "classifier", tmp_path / "c")


def test_unknown_method_is_one_line_before_anything_is_written(tmp_path):
    with pytest.raises(VLVAEError, match="unknown method 'vae'; choose one of " + ", ".join(method_names())):
        reproduce(tmp_path / "x", "tiny", workers=1, progress=False, methods=("vae",))
    assert not (tmp_path / "x").exists()


def test_a_baseline_refuses_joint_inference_in_its_config(compared, tmp_path):
    with pytest.raises(VLVAEError, match="keeps q\\(z\\|x\\) image-only"):
        train_vlvae(
            compared / "data",
            tmp_path / "r",
            "tiny",
            None,
            ["method.name=jmvae", "model.joint_inference=true"],
            progress=False,
        )
    assert not (tmp_path / "r").exists()


def test_inference_samples_from_a_baselines_own_text_posterior(compared):

    baseline = Inference.open(compared / "methods" / "mvae")
    text = baseline.validation_example(0)[1]
    own = baseline.from_text(text, "own", n=2, seed=0)
    agg = baseline.from_text(text, "agg", n=2, seed=0)
    assert own.images.shape == agg.images.shape == (2, 16, 16, 3)
    assert not np.array_equal(own.images, agg.images)  # two different q(z|y)
    assert baseline.stages()["q_true"] is not None  # not trained for a baseline: recorded, not fatal
    with pytest.raises(
        VLVAEError, match="posterior must be 'agg' \\(q_Agg\\) or 'true' \\(q_True\\), got 'own'"
    ):
        Inference.open(compared / "run").from_text(text, "own", n=2)


def test_a_new_method_is_one_module_and_one_registry_name(compared, tmp_path, monkeypatch):
    """A method defined outside the package (here a VLVAE with its KL weight scaled by a knob of its
    own, ``method.beta``) trains, takes q_Agg post hoc, reloads and enters the comparison once its
    module exists and its name is registered; its knob is read, checked and saved by the config
    without the config module knowing it."""

    @dataclasses.dataclass
    class BetaConfig(methods.MethodConfig):
        name: str = "beta2"
        beta: float = dataclasses.field(default=2.0, metadata={"range": (0, False, None, False)})

    class Beta2(VLVAE):
        def __init__(self, config, beta):
            super().__init__(config)
            self.beta = beta

        def forward(self, x, y, kl_weight=1.0, w_x=1.0, w_y=1.0):
            return super().forward(x, y, self.beta * kl_weight, w_x, w_y)

    module = types.ModuleType("vlvae.methods.beta2")
    module.METHOD = methods.Method(
        name="beta2",
        title="β = 2 VLVAE",
        reference="a test",
        model=lambda model_config, method_config: Beta2(model_config, method_config.beta),
        weights_tag="beta2",
        stages=("q_agg",),
        config=BetaConfig,
    )
    monkeypatch.setitem(sys.modules, "vlvae.methods.beta2", module)
    monkeypatch.setattr(methods, "_MODULES", methods._MODULES + ("beta2",))

    with pytest.raises(VLVAEError, match="must be greater than 0, got 0"):
        apply_overrides(preset("tiny"), ["method.name=beta2", "method.beta=0"])
    run = tmp_path / "beta2"
    train_vlvae(compared / "data", run, "tiny", None, ["method.name=beta2", "method.beta=3"], progress=False)
    train_text_posterior(run, "agg", progress=False)
    assert open_run(run)[0].method == BetaConfig(name="beta2", beta=3.0)
    assert "beta: 3.0" in (run / "config.yaml").read_text()
    assert type(load_vlvae(run)) is Beta2 and load_vlvae(run).beta == 3.0
    result = compare_runs([compared / "run", run], compared / "classifier", tmp_path / "cmp", progress=False)
    assert [m["method"]["title"] for m in result["metrics"]] == ["VLVAE (q(z|x))", "β = 2 VLVAE"]
    assert set(result["metrics"][1]["distributions"]["text_posteriors"]) == {"q_agg"}


def test_vlvae_evaluate_on_a_jmvae_run_writes_its_report(compared, tmp_path):
    """The command, not only the function: `vlvae evaluate` on a baseline's run (it once asked for q_True)."""

    run = tmp_path / "jmvae"
    shutil.copytree(compared / "methods" / "jmvae", run)
    (run / "report.md").unlink()
    result = CliRunner().invoke(
        app, ["evaluate", "--run", str(run), "--classifier", str(compared / "classifier"), "--no-figures"]
    )
    assert result.exit_code == 0, result.output
    report = (run / "report.md").read_text()
    assert "JMVAE-kl" in report and "q_JMVAE(z|y)" in report and "q_Agg(z|y)" in report
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["method"]["name"] == "jmvae" and set(metrics["stages"]) == {"q_agg"}

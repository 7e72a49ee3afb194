"""``vlvae evaluate``: Tables 1-2 beside the paper's numbers, figures, metrics.json and report.md."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import torch

from vlvae.data.dataset import ImageTextDataset
from vlvae.data.format import atomic_write_json, atomic_write_text
from vlvae.data.specs import DATASETS, dataset_spec
from vlvae.errors import VLVAEError
from vlvae.methods.stages import (
    PRIOR,
    STANDARD_PRIOR,
    TEXT_POSTERIOR,
    distribution_labels,
    registered_stages,
    stages_fitting,
)
from vlvae.runinfo import run_info

__all__ = ["PAPER", "evaluate_run", "render_report", "summarise_runs"]

#: The paper's validation-set numbers (Tables 1-2), per data set (from :mod:`vlvae.data.specs`).
PAPER = {name: spec.paper for name, spec in DATASETS.items()}
#: How the tables name each distribution (text posteriors and priors), from :mod:`vlvae.methods.stages`.
_NAMES = {**distribution_labels(TEXT_POSTERIOR), **distribution_labels(PRIOR)}
#: The distributions in the order the tables list them: the registered text posteriors, N(0, I), the learned priors.
_TABLE_ORDER = (
    *(stage.distribution for stage in stages_fitting(TEXT_POSTERIOR)),
    STANDARD_PRIOR.distribution,
    *(stage.distribution for stage in stages_fitting(PRIOR)),
)


def load_scorer(
    dataset: str, classifier_dir: Path, vocab, data: Path | None = None, whose: str | None = None
):
    """(scorer, classifier metrics) for a data set: the judge whose ``score(images, texts)`` gives correctness.

    With ``data`` (the data set whose images it will judge), the classifier is first checked to
    fit it (:func:`vlvae.evaluation.judge.check_classifier_fits`; ``whose`` names the data
    in its messages). The judge is the data set's (:attr:`vlvae.data.specs.DatasetSpec.load_judge`).
    """
    if data is not None:
        from vlvae.evaluation.judge import check_classifier_fits

        check_classifier_fits(classifier_dir, data, whose)
    return dataset_spec(dataset).load_judge(classifier_dir, vocab)


def summarise_runs(runs: list[Path], metrics: list[dict], out: Path) -> dict:
    """Mean ± std over independently trained VLVAEs: ``OUT/summary.json`` and ``OUT/summary.md``.

    Each run's figures (already averaged over its stage-2/3 replicates) count as one replicate;
    the Monte-Carlo errors are averaged over runs.
    """
    from vlvae.evaluation.metrics import combine_replicates
    from vlvae.runs import open_run

    keys = ("correctness", "correctness_all_labels", "likelihood")
    summary = {
        key: combine_replicates([m[key] for m in metrics]) if metrics[0].get(key) else None for key in keys
    }
    summary["landing"] = combine_replicates([m["landing"] for m in metrics], floats=True)
    summary["likelihood"]["pixel_jacobian_nats"] = metrics[0]["likelihood"]["pixel_jacobian_nats"]
    first = metrics[0]
    summary.update(
        {
            "dataset": first["dataset"],
            "runs": [str(r) for r in runs],
            "classifier": first["classifier"],
            "replicates": len(runs),
            "vlvae_replicates": len(runs),
            "stage_replicates": first["replicates"],
            "settings": first["settings"],
            "paper": first["paper"],
            "config_preset": first["config_preset"],
            "seconds": sum(m["seconds"] for m in metrics),
            "figures": {},
            **run_info(),
        }
    )
    summary["evaluation_id"] = uuid.uuid4().hex
    cfg, _ = open_run(runs[0])
    text = render_report(summary, cfg).replace("# vlvae report:", "# vlvae summary over VLVAE replicates:", 1)
    text += "\nEach run's own report: " + ", ".join(f"`{Path(r).name}/report.md`" for r in runs) + ".\n"
    _write_pair(Path(out) / "summary.json", summary, Path(out) / "summary.md", text)
    return summary


def _write_pair(json_path: Path, metrics: dict, md_path: Path, text: str) -> None:
    """Write metrics and the report rendered from them so that a present report always matches the metrics.

    The old report goes first, then the metrics, then the new report (each write atomic): a kill in
    between leaves new metrics without a report, never beside an old one.
    """
    md_path.unlink(missing_ok=True)
    atomic_write_json(json_path, metrics)
    atomic_write_text(md_path, text)


def _stage_records(run: Path, replicates: int) -> dict:
    """Per stage 2-3 and replicate: steps, how training ended, the best pass, wall time (from metrics.json)."""
    import json

    from vlvae.runs import REPLICATED_STAGES, stage_dir

    out = {}
    for stage in REPLICATED_STAGES:
        rows = []
        for r in range(replicates):
            m = json.loads((stage_dir(run, stage, r) / "metrics.json").read_text())
            stop = m.get("early_stopping") or {}
            rows.append(
                {
                    "replicate": r,
                    "steps": m.get("steps"),
                    "seconds": m.get("seconds_this_session"),
                    "stopped_by": stop.get("stopped_by", "steps"),
                    "best_step": stop.get("best_step"),
                    "best_value": stop.get("best_value"),
                    "monitor": stop.get("monitor"),
                    "validation": m.get("validation", {}),
                }
            )
        out[stage] = rows
    return out


def evaluate_run(
    run: Path,
    classifier: Path,
    examples: int | None = None,
    k: int | None = None,
    seeds: int | None = None,
    min_accuracy: float | None = None,
    figures: bool = True,
    progress: bool = True,
    replicates: int | None = None,
    text_k: int | None = None,
) -> dict:
    """Compute Tables 1-3 for a run and write ``RUN/metrics.json`` and ``RUN/report.md``.

    Every training replicate of stages 2-3 (``RUN/q_true``, ``RUN/q_true.r1``, ...) is evaluated
    on the same validation examples with the same Monte-Carlo seeds; the tables give the mean ±
    standard deviation over replicates and, separately, the Monte-Carlo error of one evaluation.

    Before any work: the run's data, the classifier (made for data like the run's) and the run
    folder (writable) are checked, and the run folder's lock is taken for the whole evaluation.
    A present ``report.md`` was always rendered from the present ``metrics.json`` (both carry the
    same ``evaluation_id``): the old report is removed before the first new file is written.

    Args:
        run: a run folder with all four stages finished.
        classifier: a trained classifier folder for the same data set.
        examples, k, seeds: override the run config's evaluation settings.
        min_accuracy: refuse a classifier whose real validation accuracy is lower
            (default: the threshold stored with the classifier).
        figures: also draw the figures.
        replicates: evaluate replicates 0..R-1 (default: every finished one).
        text_k: the largest k of the log p(y) estimates (default: the run's config).
    """
    from vlvae.evaluation.judge import check_classifier_fits
    from vlvae.locking import folder_lock
    from vlvae.paths import check_output_dir
    from vlvae.runs import check_run_data, open_run

    run, classifier = Path(run), Path(classifier)
    cfg, info = open_run(run)
    check_classifier_fits(classifier, check_run_data(run, cfg, info), f"the data of {run}")
    fix = "evaluate writes metrics.json, report.md and figures/ into it: make it writable, or copy the run"
    run = check_output_dir(run, "run folder", "--run", fix)
    with folder_lock(run, "vlvae evaluate", tidy=("", "figures")):
        if figures:
            check_output_dir(run / "figures", "figures folder", "--run", fix)
        return _evaluate(
            run, classifier, examples, k, seeds, min_accuracy, figures, progress, replicates, text_k
        )


def _evaluate(
    run: Path,
    classifier: Path,
    examples: int | None,
    k: int | None,
    seeds: int | None,
    min_accuracy: float | None,
    figures: bool,
    progress: bool,
    replicates: int | None,
    text_k: int | None,
) -> dict:
    """:func:`evaluate_run`'s work, with the run folder's lock held."""
    from vlvae.evaluation.landing import where_samples_land
    from vlvae.evaluation.metrics import (
        combine_replicates,
        correctness_tables,
        likelihood_tables,
        validation_batch,
    )
    from vlvae.models.likelihoods import pixel_log_jacobian
    from vlvae.runs import REPLICATED_STAGES, finished_replicates, load_stage, load_vlvae, open_run, stage_dir

    run, classifier = Path(run), Path(classifier)
    cfg, info = open_run(run)
    model = load_vlvae(run, cfg)
    available = finished_replicates(run)
    replicates = available if replicates is None else replicates
    if replicates < 1 or replicates > available:
        # Loading the first missing stage raises the error that names the command to run.
        r = min(max(replicates, 1), available + 1) - 1
        for stage in REPLICATED_STAGES:
            load_stage(run, stage, cfg, r)
    data = ImageTextDataset(Path(info["data"]), "val")
    spec = dataset_spec(data.dataset)
    scorer, cls_metrics = load_scorer(spec.name, classifier, data.vocab)
    threshold = cls_metrics.get("min_accuracy", 0.9) if min_accuracy is None else min_accuracy
    real = cls_metrics.get("real_accuracy", {}).get("overall")
    if real is None:
        raise VLVAEError(
            f"{classifier}/metrics.json has no real-data accuracy (its training was cut short); "
            f"rerun `vlvae train classifier --data DATA --out {classifier} --resume`"
        )
    if real < threshold:
        raise VLVAEError(
            f"the classifier in {classifier} is {real:.1%} accurate on real validation data, below "
            f"the {threshold:.0%} needed for correctness to mean much; train it longer "
            "(vlvae train classifier --set classifier.steps=...) or pass --min-accuracy"
        )
    ev = cfg.evaluation
    examples = examples or ev.examples
    k, seeds, text_k = k or ev.k, seeds or ev.seeds, text_k or ev.text_k
    # Stages 2-3 that stop early choose their weights on the last validation examples; the
    # tables score the first ones, never those.
    sections = tuple(dict.fromkeys(stage.config_section for stage in registered_stages()))
    held = max(
        [st.val_examples for st in (getattr(cfg, name) for name in sections) if st.patience > 0], default=0
    )
    capped_from = None
    if examples > len(data) - held:
        if len(data) - held < 1:
            raise VLVAEError(
                f"the validation split of {info['data']} has {len(data)} examples, all used by early "
                f"stopping of stages 2-3 (val_examples {held}); lower "
                + " and ".join(f"{name}.val_examples" for name in sections)
                + " or make more data"
            )
        capped_from, examples = examples, len(data) - held
    torch.manual_seed(cfg.seed)
    x, y = validation_batch(data, examples)
    started = time.time()
    definitions = {"paper": scorer.score}
    if hasattr(scorer, "score_all_labels"):
        # CelebA: the paper scores the text's words (TELBO's definition, the headline); the
        # authors' code scored every binary label. Both are reported, each named.
        definitions["all_labels"] = scorer.score_all_labels
    train = ImageTextDataset(Path(info["data"]), "train")
    if progress:
        print(f"q(z|x) of {len(train)} training images (Table 3's aggregate posterior) ...", flush=True)
    table = model.posterior_table(
        train.images,
        texts=(
            torch.stack([train.text(i) for i in range(len(train))]) if cfg.model.joint_inference else None
        ),
    )
    # Two Objects: the exact text; CelebA: the image's whole set of words, whatever order or subset a text drew.
    train_keys, y_keys = spec.landing_keys(train), spec.landing_keys(data, y)
    per_replicate = []
    for r in range(replicates):
        posteriors = {
            stage.distribution: load_stage(run, stage.name, cfg, r)
            for stage in stages_fitting(TEXT_POSTERIOR)
        }
        priors = {
            STANDARD_PRIOR.distribution: model.prior,
            **{stage.distribution: load_stage(run, stage.name, cfg, r) for stage in stages_fitting(PRIOR)},
        }
        if progress:
            print(
                f"replicate {r + 1}/{replicates}: correctness on {len(y)} validation texts x {seeds} seeds, "
                f"likelihoods (k = {k}; log p(y) up to k = {text_k}), where samples land ...",
                flush=True,
            )
        tables = correctness_tables(model, definitions, x, y, posteriors, priors, seeds)
        likelihood = likelihood_tables(model, x, y, posteriors, priors, k, ev.micro_batch, text_k=text_k)
        landing = where_samples_land(
            table, train_keys, y, y_keys, posteriors, priors, reference=ev.landing_reference, seed=cfg.seed
        )
        per_replicate.append({"tables": tables, "likelihood": likelihood, "landing": landing})
        last_posteriors, last_priors = posteriors, priors
    combined_tables = combine_replicates([p["tables"] for p in per_replicate])
    correctness, alternative = combined_tables["paper"], combined_tables.get("all_labels")
    likelihood = combine_replicates([p["likelihood"] for p in per_replicate])
    landing = combine_replicates([p["landing"] for p in per_replicate], floats=True)
    # Report densities of pixels in [0, 1]: the likelihood is evaluated on pixels mapped affinely into
    # [pixel_low, pixel_high], so the change of variables adds D log(pixel_high - pixel_low).
    jac = pixel_log_jacobian(likelihood["dimensions"]["x"], cfg.model.pixel_low, cfg.model.pixel_high)
    for table_name in ("log_p_x_given_y", "log_p_x"):
        for per_k in likelihood[table_name].values():
            for s in per_k.values():
                s["mean"] += jac
                s["per_replicate"] = [v + jac for v in s["per_replicate"]]
                s["per_dim"] = s["mean"] / likelihood["dimensions"]["x"]
    likelihood["pixel_jacobian_nats"] = jac
    metrics = {
        "dataset": data.dataset,
        "run": str(run),
        "classifier": {
            "path": str(classifier),
            "real_accuracy": cls_metrics.get("real_accuracy"),
            "real_correctness": cls_metrics.get("real_correctness"),
            "threshold": threshold,
        },
        "replicates": replicates,
        "correctness": correctness,
        "correctness_all_labels": alternative,
        "likelihood": likelihood,
        "landing": landing,
        "stages": _stage_records(run, replicates),
        "settings": {
            "examples": len(y),
            "examples_capped_from": capped_from,
            "k": k,
            "text_k": text_k,
            "seeds": seeds,
            "micro_batch": ev.micro_batch,
            "landing_reference": ev.landing_reference,
            "replicates": replicates,
        },
        "seconds": time.time() - started,
        "paper": spec.paper,
        "config_preset": cfg.name,
        **run_info(),
    }
    figure_paths = {}
    # From here on files are written: first the old report goes, which no longer describes the folder.
    (run / "report.md").unlink(missing_ok=True)
    if figures:
        from vlvae.evaluation import figures as figs

        fig_dir = run / "figures"
        fig_dir.mkdir(exist_ok=True)
        # The sample figures show the last replicate's fits (each replicate's numbers are in the tables).
        figure_paths["reconstructions"] = figs.figure_reconstructions(
            model, x[:6], y[:6], data.vocab, last_priors, fig_dir / "fig3_reconstructions.png"
        )
        figure_paths["conditional_samples"] = figs.figure_conditional_samples(
            model,
            last_posteriors,
            y,
            data.vocab,
            fig_dir / "fig4_conditional_samples.png",
            scorer=scorer.score,
        )
        try:
            curves = figs.read_validation_curves(run / "vlvae")
        except VLVAEError:  # no stage 1 logs
            curves = None
        if curves is not None and len(curves["step"]):  # runs from before val/minutes have no curve
            figure_paths["convergence"] = figs.figure_convergence(
                run / "vlvae", fig_dir / "stage1_convergence.png", curves
            )
            metrics["stage1_convergence"] = figs.convergence_summary(curves)
        figure_paths["stopping"] = figs.figure_stopping(
            {stage: [stage_dir(run, stage, r) for r in range(replicates)] for stage in REPLICATED_STAGES},
            fig_dir / "stages23_validation.png",
        )
        figure_paths = {k: str(Path(v).relative_to(run)) for k, v in figure_paths.items()}
    metrics["figures"] = figure_paths
    metrics["evaluation_id"] = uuid.uuid4().hex
    _write_pair(run / "metrics.json", metrics, run / "report.md", render_report(metrics, cfg))
    return metrics


def _spread(s: dict, scale: float = 1.0) -> str:
    """``mean ± std over training replicates`` (just the mean for one replicate)."""
    text = f"{scale * s['mean']:.2f}"
    if s.get("replicates", 1) > 1:
        text += f" ± {scale * s['std_over_replicates']:.2f}"
    return text


def _pct(s: dict) -> str:
    """Correctness in %: mean ± std over training replicates, then the std over sampling seeds."""
    return f"{_spread(s, 100)} (MC ± {100 * s['std_over_seeds']:.2f})"


def _nats(s: dict) -> str:
    """A likelihood: mean ± std over training replicates, then the standard error over examples."""
    return f"{_spread(s)} (± {s['stderr']:.2f})"


def _diff(s: dict, scale: float = 1.0) -> str:
    """A paired difference: mean ± std over replicates, then its standard error over examples."""
    text = f"{scale * s['mean']:+.2f}"
    if s.get("replicates", 1) > 1:
        text += f" ± {scale * s['std_over_replicates']:.2f}"
    return text + f" (± {scale * s['stderr']:.2f})"


def _convergence_line(conv: dict, cfg) -> str:
    """One line on stage 1's last validation pass and its trend over the last part of training time."""
    last, change = conv["last"], conv["change"]

    def _v(value, scale=1.0, unit=""):
        return "not logged" if value is None else f"{scale * value:.2f}{unit}"

    text = (
        f"Last validation pass while training stage 1 (step {last['step']}, {last['minutes']:.3g} min): "
        f"log p(x|z) {_v(last.get('log_px'))}, KL {_v(last.get('kl'))}, correctness "
        f"{_v(last.get('correctness'), 100, ' %')}. "
    )
    ch_x, ch_c = change.get("log_px"), change.get("correctness")
    if ch_x is None:
        text += (
            f"Too few validation passes to show a trend over the last {100 * conv['fraction']:.0f} % "
            "of its training minutes."
        )
    else:
        text += (
            f"Over the last {100 * conv['fraction']:.0f} % of its training minutes (from "
            f"{ch_x['from_minutes']:.3g} min, step {ch_x['from_step']}): log p(x|z) {ch_x['change']:+.2f}"
            + (f", correctness {100 * ch_c['change']:+.2f} points" if ch_c else "")
            + "."
        )
    return (
        text + " (Logged during training on the stage's validation subset: log p(x|z) is a one-sample "
        f"estimate for pixels in [{cfg.model.pixel_low}, {cfg.model.pixel_high}], without the tables' "
        "Jacobian, so compare its trend, not its magnitude.)"
    )


def _plain(x):
    """A number that :func:`combine_replicates` may have turned into ``{"mean", ...}``."""
    return x["mean"] if isinstance(x, dict) else x


def _landing_lines(landing: dict, replicates: int) -> list[str]:
    """Table 3: where each source's z lands in the aggregate posterior (marginal and per text)."""
    marginal, conditional = landing["marginal"], landing["conditional"]

    def v(x, fmt="{:.1f}", scale=1.0):
        if x is None:
            return "–"
        if isinstance(x, dict):
            text = fmt.format(scale * x["mean"])
            return text + (f" ± {fmt.format(scale * x['std_over_replicates'])}" if replicates > 1 else "")
        return fmt.format(scale * x)

    names = {**_NAMES, "reference": "the aggregate's own samples"}
    lines = [
        "## Table 3: where samples land in the aggregate posterior",
        "",
        f"log q_agg(z) = log (1/N) Σ_i q(z|x_i) over all N = {marginal['n_components']} training images "
        f"(exact, z = {marginal['latent_dim']}), at one z per validation text from each q(z|y) and as many "
        "from each prior. *In a hole*: below the "
        f"{_plain(marginal['percentile']):g}st percentile of the aggregate's own samples "
        f"({marginal['reference']['n']} of them; threshold {v(marginal['threshold'])} nats). Per text: the same "
        "with the aggregate of the training images whose text is the validation text "
        f"({v(conditional['n_keys_with_components'], '{:.0f}')} of {conditional['n_keys']} texts have such images, "
        f"{v(conditional['mean_components_per_key'], '{:.2f}')} images per text on average; its own "
        f"{conditional['own_per_key']} samples per text set each text's threshold).",
        "",
        "| z from | log q_agg(z): mean | median | 10th–90th percentile | in a hole % | per text: log q_agg(z|y) "
        "median | in a hole % |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("reference", *_TABLE_ORDER):
        row = marginal["reference"] if name == "reference" else marginal["sources"].get(name)
        if row is None:
            continue
        c = conditional["reference"] if name == "reference" else conditional["sources"].get(name)
        lines.append(
            f"| {names.get(name, name)} | {v(row['mean_log_density'])} | {v(row['median_log_density'])} | "
            f"{v(row['q10_log_density'])} to {v(row['q90_log_density'])} | "
            f"{v(row['hole_fraction'], '{:.1f}', 100)} | "
            f"{v(c['median_log_density']) if c else '–'} | "
            f"{v(c['hole_fraction'], '{:.1f}', 100) if c else '–'} |"
        )
    lines += [
        "",
        "The aggregate posterior is a mixture of narrow Gaussians; in many dimensions almost every point off "
        "the training images' posteriors lies far below the density of its own samples, so the hole "
        "fraction can saturate at 100 % for every source. The log densities still order the sources: "
        "higher means closer to where the image decoder was trained.",
        "",
    ]
    return lines


def _stopping_lines(stages: dict, figure: str | None) -> list[str]:
    lines = ["## Stages 2-3: when each fit stopped", ""]
    capped = [
        f"{_NAMES.get(st, st)} replicate {row['replicate']}"
        for st, rows in stages.items()
        for row in rows
        if row.get("stopped_by") == "steps" and row.get("best_step") is not None
    ]
    if figure:
        lines += [f"![stages 2-3 validation curves]({figure})", ""]
    lines += [
        "Each fit is validated on held-out validation examples (the last of the split, apart from those "
        "scored above); with a patience rule it stops when the objective has not improved for that many "
        "passes and keeps the weights of its best pass.",
        "",
        "| stage | replicate | steps | stopped by | best pass (step: value) | minutes (last session) |",
        "|---|---|---|---|---|---|",
    ]
    for stage, rows in stages.items():
        for row in rows:
            best = (
                "–"
                if row.get("best_step") is None
                else f"{row['best_step']}: {row['best_value']:.3f} ({row['monitor']})"
            )
            minutes = "–" if row.get("seconds") is None else f"{row['seconds'] / 60:.1f}"
            lines.append(
                f"| {_NAMES.get(stage, stage)} | {row['replicate']} | {row['steps']} | {row['stopped_by']} | "
                f"{best} | {minutes} |"
            )
    if capped:
        lines += [
            "",
            "Still improving at the step cap (not converged by the patience rule): "
            + ", ".join(capped)
            + ".",
        ]
    return lines + [""]


def _likelihood_rows(
    label: str, table: dict, names: tuple[str, str], paper: dict, ks: list[int], paper_at: int
) -> list[str]:
    """One table row per k for two members of a pair; the paper's numbers on the row of ``paper_at``."""
    rows = []
    for kk in ks:
        key, ours = f"k={kk}", " | ".join(_nats(table[name][f"k={kk}"]) for name in names)
        theirs = " | ".join(str(paper.get(name, "–")) if kk == paper_at else "" for name in names)
        rows.append(f"| {label}, {key} | {ours} | {theirs} |")
    return rows


def render_report(metrics: dict, cfg) -> str:
    """Markdown with Tables 1-3 in the paper's layout, the paper's numbers beside ours."""
    c, lk, paper = metrics["correctness"], metrics["likelihood"], metrics.get("paper", {})
    settings = metrics["settings"]
    k, reps = settings["k"], metrics.get("replicates", 1)
    acc = metrics["classifier"]["real_accuracy"] or {}
    pc = paper.get("correctness", {})
    vlvaes = metrics.get("vlvae_replicates", 1)
    if vlvaes > 1:
        spread = (
            f"mean ± standard deviation over **{vlvaes} independently trained VLVAEs** (each with its own "
            f"seed; each VLVAE's figure is its mean over {metrics.get('stage_replicates', 1)} training "
            "replicate(s) of stages 2-3; the spread includes the evaluations' sampling noise)"
        )
    elif reps > 1:
        spread = (
            f"mean ± standard deviation over **{reps} training replicates** of stages 2-3 (each fitted "
            "with its own seed on the same VLVAE; the VLVAE is trained once; the spread includes each "
            "evaluation's own sampling noise, given apart in parentheses)"
        )
    else:
        spread = (
            "from **one training run** of each stage (no spread over training runs: train replicates with "
            "`--replicates N` to get one)"
        )
    lines = [
        f"# vlvae report: {metrics['dataset']} ({metrics['config_preset']} preset)",
        "",
        f"Validation examples: {settings['examples']}; sampling seeds: {settings['seeds']}. Every figure is "
        f"{spread}. In parentheses, the error of the evaluation itself: for correctness (MC ±) the standard "
        "deviation over sampling seeds (each redraws every z), for likelihoods (±) the standard error over "
        "validation examples. Likelihoods are in nats per example, unweighted. log p(x|y) and log p(x) use "
        f"q(z|x) as the proposal (k = 1 and k = {k}) and are densities of pixels in [0, 1] (the Beta "
        f"likelihood sees pixels mapped into [{cfg.model.pixel_low}, {cfg.model.pixel_high}]; the change of "
        f"variables adds {lk['pixel_jacobian_nats']:.1f} nats). log p(y) uses a proposal that depends on y "
        "alone and is the same for both priors: ¼ q_Agg(z|y) + ¼ q_True(z|y) + ¼ N(0, I) + ¼ q_φ(z).",
        "",
        f"Classifier accuracy on real validation images: **{100 * acc.get('overall', float('nan')):.2f} %** "
        "(the ceiling of any correctness figure). Per slot: "
        + ", ".join(f"{n} {100 * v:.1f}" for n, v in acc.get("per_slot", {}).items())
        + ".",
        "",
    ]
    rc = metrics["classifier"].get("real_correctness")
    if rc:
        lines += [
            f"Real validation faces scored against their own words: {100 * rc['paper']:.2f} % (paper's "
            f"definition), {100 * rc['all_labels']:.2f} % (all labels) — the ceiling of the correctness "
            "figures.",
            "",
        ]
    lines += [
        f"Reconstruction (z ~ q(z|x) of the real image): {_pct(c['reconstruction'])} % — the ceiling of any "
        "q(z|y).",
        "",
        "## Table 1: q_True vs q_Agg (conditional generation)",
        "",
        "| | q_True(z|y) | q_Agg(z|y) | paper q_True | paper q_Agg |",
        "|---|---|---|---|---|",
        f"| correctness % | {_pct(c['conditional']['q_true'])} | {_pct(c['conditional']['q_agg'])} | "
        f"{pc.get('q_true', '–')} | {pc.get('q_agg', '–')} |",
    ]
    lines += _likelihood_rows(
        "log p(x|y)",
        lk["log_p_x_given_y"],
        ("q_true", "q_agg"),
        paper.get("log_p_x_given_y", {}),
        sorted({1, k}),
        paper_at=1,
    )
    lines += [
        "",
        "## Table 2: N(0, I) vs the learned aggregate prior q_φ(z)",
        "",
        "| | p(z) | q_φ(z) | paper p(z) | paper q_φ(z) |",
        "|---|---|---|---|---|",
        f"| correctness % | {_pct(c['prior']['standard'])} | {_pct(c['prior']['learned'])} | "
        f"{pc.get('standard', '–')} | {pc.get('learned', '–')} |",
    ]
    lines += _likelihood_rows(
        "log p(x)",
        lk["log_p_x"],
        ("standard", "learned"),
        paper.get("log_p_x", {}),
        sorted({1, k}),
        paper_at=1,
    )
    text_ks = lk.get("text_k", [])
    if text_ks:
        lines += _likelihood_rows(
            "log p(y)",
            lk["log_p_y"],
            ("standard", "learned"),
            paper.get("log_p_y", {}),
            text_ks,
            paper_at=text_ks[-1],
        )
    lines += [
        "",
        "log p(y) at k = 1 is log p(y|z) + log p(z) − log r(z|y) at one shared z: the difference between "
        "the priors is then log q_φ(z) − log N(z; 0, I), free of the text decoder; only k > 1 weighs the "
        "samples by p(y|z). Read log p(y) where it has stopped moving with k.",
    ]
    diffs = c.get("differences", {})
    ld = lk.get("differences", {}).get(f"k={k}", {})
    yd = lk.get("log_p_y_differences", {})
    if diffs and ld:
        top = f"k={text_ks[-1]}" if text_ks else None
        lines += [
            "",
            "Paired differences on the same validation examples (mean"
            + (" ± std over training replicates" if reps > 1 else "")
            + "; in parentheses the standard error over examples; image likelihoods at "
            f"k = {k}, log p(y) at k = {text_ks[-1] if text_ks else '–'}):",
            "",
            "| | correctness (points) | log p(x|y) | log p(x) | log p(y) |",
            "|---|---|---|---|---|",
            f"| q_Agg − q_True | {_diff(diffs['q_agg - q_true'], 100)} | {_diff(ld['log_p_x_given_y']['q_agg - q_true'])} "
            "| | |",
            f"| q_φ(z) − N(0, I) | {_diff(diffs['learned - standard'], 100)} | | "
            f"{_diff(ld['log_p_x']['learned - standard'])} | "
            f"{_diff(yd[top]['learned - standard']) if top and top in yd else '–'} |",
        ]
        if yd:
            lines += [
                "",
                "log p(y), q_φ(z) − N(0, I), by k: "
                + ", ".join(
                    f"k = {kk}: {_diff(yd[f'k={kk}']['learned - standard'])}"
                    for kk in text_ks
                    if f"k={kk}" in yd
                )
                + ".",
            ]
    d = lk["dimensions"]
    lines += [
        "",
        f"Per dimension (k = {k}): log p(x|y) q_True {lk['log_p_x_given_y']['q_true'][f'k={k}']['per_dim']:.4f}, "
        f"q_Agg {lk['log_p_x_given_y']['q_agg'][f'k={k}']['per_dim']:.4f} nats per pixel-channel "
        f"(D = {d['x']})"
        + (
            f"; log p(y) per word (k = {text_ks[-1]}): N(0, I) "
            f"{lk['log_p_y']['standard'][f'k={text_ks[-1]}']['per_dim']:.4f}, q_φ(z) "
            f"{lk['log_p_y']['learned'][f'k={text_ks[-1]}']['per_dim']:.4f} (L = {d['y']})"
            if text_ks
            else ""
        )
        + ".",
        "",
        "The paper's numbers come from 112 × 112 images, z = 50 and 400k steps; a reduced preset differs in "
        "scale, so compare directions (q_Agg vs q_True, q_φ(z) vs N(0, I)), not magnitudes.",
        "",
    ]
    if metrics.get("landing"):
        lines += _landing_lines(metrics["landing"], reps)
    alt = metrics.get("correctness_all_labels")
    if alt:
        lines += [
            "## Correctness by the authors' code's definition (all binary labels)",
            "",
            "The tables above use the paper's definition (the fraction of the text's words the classifier "
            "finds in the image). The authors' CelebA code scored all binary labels instead (absent words "
            "count as absent attributes):",
            "",
            "| | q_True(z|y) | q_Agg(z|y) | p(z) | q_φ(z) | reconstruction |",
            "|---|---|---|---|---|---|",
            f"| correctness % (all labels) | {_pct(alt['conditional']['q_true'])} | {_pct(alt['conditional']['q_agg'])} | "
            f"{_pct(alt['prior']['standard'])} | {_pct(alt['prior']['learned'])} | {_pct(alt['reconstruction'])} |",
            "",
        ]
    figs = metrics.get("figures", {})
    if metrics.get("stages"):
        lines += _stopping_lines(metrics["stages"], figs.get("stopping"))
    conv = metrics.get("stage1_convergence")
    if conv and "convergence" in figs:
        lines += [
            "## Stage 1 convergence",
            "",
            f"![convergence]({figs['convergence']})",
            "",
            _convergence_line(conv, cfg),
            "",
        ]
    others = {name: path for name, path in figs.items() if name not in ("convergence", "stopping")}
    if others:
        lines += ["## Figures", ""]
        if reps > 1:
            lines += [f"Samples from replicate {reps - 1}'s text posteriors and prior.", ""]
        for name, path in others.items():
            lines += [f"![{name}]({path})", ""]
    lines += [f"Evaluated in {metrics['seconds']:.0f} s; git commit {metrics['git_commit']}.", ""]
    if metrics.get("evaluation_id"):
        lines += [f"Evaluation id {metrics['evaluation_id']} (the same as in the metrics file).", ""]
    return "\n".join(lines)

"""``vlvae evaluate``: Tables 1-2 beside the paper's numbers, figures, metrics.json and report.md."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from vlvae.data.dataset import ImageTextDataset
from vlvae.data.format import atomic_write_json, atomic_write_text
from vlvae.errors import VLVAEError
from vlvae.runinfo import run_info

__all__ = ["PAPER", "evaluate_run", "render_report"]

#: The paper's validation-set numbers (Tables 1-2).
PAPER = {
    "two_objects": {
        "correctness": {"q_true": 72.75, "q_agg": 87.01, "standard": 65.62, "learned": 83.81},
        "log_p_x_given_y": {"q_true": 75716.48, "q_agg": 75739.79},
        "log_p_x": {"standard": 75715.36, "learned": 75726.15},
        "log_p_y": {"standard": -19.43, "learned": -17.40},
    },
    "celeba": {
        "correctness": {"q_true": 80.83, "q_agg": 80.32, "standard": 80.25, "learned": 81.14},
        "log_p_x_given_y": {"q_true": -6776.27, "q_agg": -6637.08},
        "log_p_x": {"standard": -6686.31, "learned": -6636.30},
        "log_p_y": {"standard": -53.44, "learned": -11.78},
    },
}
_NAMES = {"q_true": "q_True(z|y)", "q_agg": "q_Agg(z|y)", "standard": "p(z) = N(0, I)", "learned": "q_φ(z)"}


def load_scorer(dataset: str, classifier_dir: Path, vocab):
    """(scorer, classifier metrics) for a data set: the judge whose ``score(images, texts)`` gives correctness."""
    if dataset == "celeba":
        from vlvae.evaluation.celeba_scoring import CelebAScorer, load_celeba_classifier

        model, metrics = load_celeba_classifier(classifier_dir)
        return CelebAScorer(model, vocab), metrics
    from vlvae.evaluation.classifier import TwoObjectsScorer, load_classifier

    model, metrics = load_classifier(classifier_dir)
    return TwoObjectsScorer(model, vocab), metrics


def evaluate_run(run: Path, classifier: Path, examples: int | None = None, k: int | None = None,
                 seeds: int | None = None, min_accuracy: float | None = None, figures: bool = True,
                 progress: bool = True) -> dict:
    """Compute Tables 1-2 for a run and write ``RUN/metrics.json`` and ``RUN/report.md``.

    Args:
        run: a run folder with all four stages finished.
        classifier: a trained classifier folder for the same data set.
        examples, k, seeds: override the run config's evaluation settings.
        min_accuracy: refuse a classifier whose real validation accuracy is lower
            (default: the threshold stored with the classifier).
        figures: also draw the Fig. 3/4-style figures.
    """
    from vlvae.evaluation.metrics import correctness_tables, likelihood_tables, validation_batch
    from vlvae.training.run import load_prior, load_text_posterior, load_vlvae, open_run

    run, classifier = Path(run), Path(classifier)
    cfg, info = open_run(run)
    model = load_vlvae(run, cfg)
    posteriors = {"q_true": load_text_posterior(run, "true", cfg), "q_agg": load_text_posterior(run, "agg", cfg)}
    learned = load_prior(run, cfg)
    priors = {"standard": model.prior, "learned": learned}
    data = ImageTextDataset(Path(info["data"]), "val")
    scorer, cls_metrics = load_scorer(data.dataset, classifier, data.vocab)
    threshold = cls_metrics.get("min_accuracy", 0.9) if min_accuracy is None else min_accuracy
    real = cls_metrics.get("real_accuracy", {}).get("overall")
    if real is None:
        raise VLVAEError(f"{classifier}/metrics.json has no real-data accuracy (its training was cut short); "
                         f"rerun `vlvae train classifier --data DATA --out {classifier} --resume`")
    if real < threshold:
        raise VLVAEError(f"the classifier in {classifier} is {real:.1%} accurate on real validation data, below "
                         f"the {threshold:.0%} needed for correctness to mean much; train it longer "
                         "(vlvae train classifier --set classifier.steps=...) or pass --min-accuracy")
    ev = cfg.evaluation
    examples = examples or ev.examples
    k, seeds = k or ev.k, seeds or ev.seeds
    torch.manual_seed(cfg.seed)
    x, y = validation_batch(data, examples)
    started = time.time()
    if progress:
        print(f"correctness on {len(y)} validation texts x {seeds} seeds ...", flush=True)
    definitions = {"paper": scorer.score}
    if hasattr(scorer, "score_all_labels"):
        # CelebA: the paper scores the text's words (TELBO's definition, the headline); the
        # authors' code scored every binary label. Both are reported, each named.
        definitions["all_labels"] = scorer.score_all_labels
    tables = correctness_tables(model, definitions, x, y, posteriors, priors, seeds)
    correctness, alternative = tables["paper"], tables.get("all_labels")
    if progress:
        print(f"likelihood bounds (k = 1 and k = {k}) ...", flush=True)
    likelihood = likelihood_tables(model, x, y, posteriors, priors, k, ev.micro_batch)
    # Report densities of pixels in [0, 1]: the likelihood is evaluated on pixels mapped affinely into
    # [pixel_low, pixel_high], so the change of variables adds D log(pixel_high - pixel_low).
    jac = likelihood["dimensions"]["x"] * math.log(cfg.model.pixel_high - cfg.model.pixel_low)
    for table in ("log_p_x_given_y", "log_p_x"):
        for per_k in likelihood[table].values():
            for s in per_k.values():
                s["mean"] += jac
                s["per_dim"] = s["mean"] / likelihood["dimensions"]["x"]
    likelihood["pixel_jacobian_nats"] = jac
    metrics = {
        "dataset": data.dataset,
        "run": str(run),
        "classifier": {"path": str(classifier), "real_accuracy": cls_metrics.get("real_accuracy"),
                       "real_correctness": cls_metrics.get("real_correctness"), "threshold": threshold},
        "correctness": correctness,
        "correctness_all_labels": alternative,
        "likelihood": likelihood,
        "settings": {"examples": len(y), "k": k, "seeds": seeds, "micro_batch": ev.micro_batch},
        "seconds": time.time() - started,
        "paper": PAPER.get(data.dataset, {}),
        "config_preset": cfg.name,
        **run_info(),
    }
    figure_paths = {}
    if figures:
        from vlvae.evaluation import figures as figs

        fig_dir = run / "figures"
        fig_dir.mkdir(exist_ok=True)
        figure_paths["reconstructions"] = figs.figure_reconstructions(
            model, x[:6], y[:6], data.vocab, priors, fig_dir / "fig3_reconstructions.png")
        figure_paths["conditional_samples"] = figs.figure_conditional_samples(
            model, posteriors, y, data.vocab, fig_dir / "fig4_conditional_samples.png", scorer=scorer.score)
        try:
            curves = figs.read_validation_curves(run / "vlvae")
        except VLVAEError:  # no stage 1 logs
            curves = None
        if curves is not None and len(curves["step"]):  # runs from before val/minutes have no curve
            figure_paths["convergence"] = figs.figure_convergence(run / "vlvae", fig_dir / "stage1_convergence.png",
                                                                  curves)
            metrics["stage1_convergence"] = figs.convergence_summary(curves)
        figure_paths = {k: str(Path(v).relative_to(run)) for k, v in figure_paths.items()}
    metrics["figures"] = figure_paths
    atomic_write_json(run / "metrics.json", metrics)
    text = render_report(metrics, cfg)
    atomic_write_text(run / "report.md", text)
    return metrics


def _pct(s: dict) -> str:
    return f"{100 * s['mean']:.2f} ± {100 * s['std_over_seeds']:.2f}"


def _nats(s: dict) -> str:
    return f"{s['mean']:.2f} ± {s['stderr']:.2f}"


def _convergence_line(conv: dict, cfg) -> str:
    """One line on stage 1's last validation pass and its trend over the last part of training time."""
    last, change = conv["last"], conv["change"]

    def _v(value, scale=1.0, unit=""):
        return "not logged" if value is None else f"{scale * value:.2f}{unit}"

    text = (f"Last validation pass while training stage 1 (step {last['step']}, {last['minutes']:.3g} min): "
            f"log p(x|z) {_v(last.get('log_px'))}, KL {_v(last.get('kl'))}, correctness "
            f"{_v(last.get('correctness'), 100, ' %')}. ")
    ch_x, ch_c = change.get("log_px"), change.get("correctness")
    if ch_x is None:
        text += (f"Too few validation passes to show a trend over the last {100 * conv['fraction']:.0f} % "
                 "of its training minutes.")
    else:
        text += (f"Over the last {100 * conv['fraction']:.0f} % of its training minutes (from "
                 f"{ch_x['from_minutes']:.3g} min, step {ch_x['from_step']}): log p(x|z) {ch_x['change']:+.2f}"
                 + (f", correctness {100 * ch_c['change']:+.2f} points" if ch_c else "") + ".")
    return (text + " (Logged during training on the stage's validation subset: log p(x|z) is a one-sample "
            f"estimate for pixels in [{cfg.model.pixel_low}, {cfg.model.pixel_high}], without the tables' "
            "Jacobian, so compare its trend, not its magnitude.)")


def render_report(metrics: dict, cfg) -> str:
    """Markdown with Tables 1-2 in the paper's layout, the paper's numbers beside ours."""
    c, lk, paper = metrics["correctness"], metrics["likelihood"], metrics.get("paper", {})
    k = metrics["settings"]["k"]
    acc = metrics["classifier"]["real_accuracy"] or {}
    pc = paper.get("correctness", {})
    lines = [
        f"# vlvae report: {metrics['dataset']} ({metrics['config_preset']} preset)",
        "",
        f"Validation examples: {metrics['settings']['examples']}; seeds: {metrics['settings']['seeds']}; "
        f"importance samples k = {k}. Correctness is mean ± std over seeds (%); likelihoods are "
        "mean ± standard error over examples (nats per example), unweighted, with q(z|x) as the proposal, "
        "as densities of pixels in [0, 1] (the Beta likelihood sees pixels mapped into "
        f"[{cfg.model.pixel_low}, {cfg.model.pixel_high}]; the change of variables adds "
        f"{lk['pixel_jacobian_nats']:.1f} nats).",
        "",
        f"Classifier accuracy on real validation images: **{100 * acc.get('overall', float('nan')):.2f} %** "
        "(the ceiling of any correctness figure). Per slot: "
        + ", ".join(f"{n} {100 * v:.1f}" for n, v in acc.get("per_slot", {}).items()) + ".",
        "",
    ]
    rc = metrics["classifier"].get("real_correctness")
    if rc:
        lines += [f"Real validation faces scored against their own words: {100 * rc['paper']:.2f} % (paper's "
                  f"definition), {100 * rc['all_labels']:.2f} % (all labels) — the ceiling of the correctness "
                  "figures.", ""]
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
    pl = paper.get("log_p_x_given_y", {})
    for kk in ("k=1", f"k={k}"):
        lines.append(f"| log p(x|y), {kk} | {_nats(lk['log_p_x_given_y']['q_true'][kk])} | "
                     f"{_nats(lk['log_p_x_given_y']['q_agg'][kk])} | {pl.get('q_true', '–') if kk == 'k=1' else ''} | "
                     f"{pl.get('q_agg', '–') if kk == 'k=1' else ''} |")
        if k == 1:
            break
    lines += [
        "",
        "## Table 2: N(0, I) vs the learned aggregate prior q_φ(z)",
        "",
        "| | p(z) | q_φ(z) | paper p(z) | paper q_φ(z) |",
        "|---|---|---|---|---|",
        f"| correctness % | {_pct(c['prior']['standard'])} | {_pct(c['prior']['learned'])} | "
        f"{pc.get('standard', '–')} | {pc.get('learned', '–')} |",
    ]
    for table, label in (("log_p_x", "log p(x)"), ("log_p_y", "log p(y)")):
        pt = paper.get(table, {})
        for kk in ("k=1", f"k={k}"):
            lines.append(f"| {label}, {kk} | {_nats(lk[table]['standard'][kk])} | {_nats(lk[table]['learned'][kk])} | "
                         f"{pt.get('standard', '–') if kk == 'k=1' else ''} | {pt.get('learned', '–') if kk == 'k=1' else ''} |")
            if k == 1:
                break
    diffs = c.get("differences", {})
    ld = lk.get("differences", {}).get(f"k={k}", {})
    if diffs and ld:
        def _d(s, scale=1.0):
            return f"{scale * s['mean']:+.2f} ± {scale * s['stderr']:.2f}"

        lines += [
            "",
            "Paired differences on the same validation examples (mean ± standard error over examples; "
            f"likelihoods at k = {k}):",
            "",
            "| | correctness (points) | log p(x|y) | log p(x) | log p(y) |",
            "|---|---|---|---|---|",
            f"| q_Agg − q_True | {_d(diffs['q_agg - q_true'], 100)} | {_d(ld['log_p_x_given_y']['q_agg - q_true'])} "
            "| | |",
            f"| q_φ(z) − N(0, I) | {_d(diffs['learned - standard'], 100)} | | "
            f"{_d(ld['log_p_x']['learned - standard'])} | {_d(ld['log_p_y']['learned - standard'])} |",
        ]
    d = lk["dimensions"]
    lines += [
        "",
        f"Per dimension (k = {k}): log p(x|y) q_True {lk['log_p_x_given_y']['q_true'][f'k={k}']['per_dim']:.4f}, "
        f"q_Agg {lk['log_p_x_given_y']['q_agg'][f'k={k}']['per_dim']:.4f} nats per pixel-channel "
        f"(D = {d['x']}); log p(y) per word: N(0, I) {lk['log_p_y']['standard'][f'k={k}']['per_dim']:.4f}, "
        f"q_φ(z) {lk['log_p_y']['learned'][f'k={k}']['per_dim']:.4f} (L = {d['y']}).",
        "",
        "The paper's numbers come from 112 × 112 images, z = 50 and 400k steps; a reduced preset differs in "
        "scale, so compare directions (q_Agg vs q_True, q_φ(z) vs N(0, I)), not magnitudes.",
        "",
    ]
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
    conv = metrics.get("stage1_convergence")
    if conv and "convergence" in figs:
        lines += ["## Stage 1 convergence", "", f"![convergence]({figs['convergence']})", "",
                  _convergence_line(conv, cfg), ""]
    others = {name: path for name, path in figs.items() if name != "convergence"}
    if others:
        lines += ["## Figures", ""]
        for name, path in others.items():
            lines += [f"![{name}]({path})", ""]
    lines += [f"Evaluated in {metrics['seconds']:.0f} s; git commit {metrics['git_commit']}.", ""]
    return "\n".join(lines)

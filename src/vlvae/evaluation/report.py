"""``report.md`` and ``summary.md``: renderings of a run's ``metrics.json`` (:mod:`vlvae.evaluation.driver`).

Tables 1-3 in the paper's layout, the paper's numbers beside ours, for whatever text posteriors
and priors the run's method offers (``metrics["distributions"]``): the VLVAE's q_True, q_Agg and
learned prior, a baseline's own q(z|y) beside q_Agg fitted post hoc. Pure functions of the
metrics (and the run's config for the pixel range); nothing here computes or writes.
"""

from __future__ import annotations

from pathlib import Path

from vlvae.evaluation.metrics import mc_stderr
from vlvae.methods.stages import PRIOR, TEXT_POSTERIOR, distribution_labels

__all__ = ["render_report", "render_summary"]

#: How the tables name each registered distribution (from :mod:`vlvae.methods.stages`).
_NAMES = {**distribution_labels(TEXT_POSTERIOR), **distribution_labels(PRIOR)}


def _spread(s: dict, scale: float = 1.0) -> str:
    """``mean ± std over training replicates`` (just the mean for one replicate)."""
    text = f"{scale * s['mean']:.2f}"
    if s.get("replicates", 1) > 1:
        text += f" ± {scale * s['std_over_replicates']:.2f}"
    return text


def _pct(s: dict) -> str:
    """Correctness in %: mean ± std over training replicates, then the Monte-Carlo standard error."""
    return f"{_spread(s, 100)} (MC ± {100 * mc_stderr(s):.2f})"


def _nats(s: dict) -> str:
    """A likelihood: mean ± std over training replicates, then the standard error over examples."""
    return f"{_spread(s)} (± {s['stderr']:.2f})"


def _diff(s: dict, scale: float = 1.0) -> str:
    """A paired difference: mean ± std over replicates, then its standard error over examples."""
    text = f"{scale * s['mean']:+.2f}"
    if s.get("replicates", 1) > 1:
        text += f" ± {scale * s['std_over_replicates']:.2f}"
    return text + f" (± {scale * s['stderr']:.2f})"


def _split_name(settings: dict) -> str:
    """The split the tables scored, as the report names it."""
    split = settings.get("split", "val")
    if split == "test":
        return "**test split** (nothing trained, stopped or tuned on it)"
    return "**validation split** (the data set has no test split)"


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
    decoder = conv.get("decoder")  # absent in metrics written before the phases were kept apart
    span = "of the whole model's steps" if decoder else "of its training steps"
    ch_x, ch_c = change.get("log_px"), change.get("correctness")
    if ch_x is None:
        text += (
            f"Too few validation passes to show a trend over the last {100 * conv['fraction']:.0f} % {span}."
        )
    else:
        until = f", to step {ch_x['to_step']}, {ch_x['to_minutes']:.3g} min" if decoder else ""
        text += (
            f"Over the last {100 * conv['fraction']:.0f} % {span} (from step "
            f"{ch_x['from_step']}, {ch_x['from_minutes']:.3g} min{until}): log p(x|z) {ch_x['change']:+.2f}"
            + (f", correctness {100 * ch_c['change']:+.2f} points" if ch_c else "")
            + "."
        )
    if decoder:
        d_x, d_c = decoder["change"].get("log_px"), decoder["change"].get("correctness")
        if d_x is not None:
            text += (
                f" Then the image decoder alone (from step {d_x['from_step']}, {d_x['from_minutes']:.3g} "
                f"min, to step {d_x['to_step']}, {d_x['to_minutes']:.3g} min): log p(x|z) "
                f"{d_x['change']:+.2f}"
                + (
                    f", correctness {100 * d_c['change']:+.2f} points"
                    if d_c and d_c["from_step"] == d_x["from_step"]
                    else ""
                )
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


def _landing_lines(landing: dict, replicates: int, labels: dict) -> list[str]:
    """Table 3: where each source's z lands in the aggregate posterior: calibrated by codes of
    held-out images (when the metrics have them), then against the aggregate's own samples
    (marginal and per text)."""
    marginal, conditional = landing["marginal"], landing["conditional"]
    calibrated = landing.get("calibrated")

    def v(x, fmt="{:.1f}", scale=1.0):
        if x is None:
            return "–"
        if isinstance(x, dict):
            text = fmt.format(scale * x["mean"])
            return text + (f" ± {fmt.format(scale * x['std_over_replicates'])}" if replicates > 1 else "")
        return fmt.format(scale * x)

    def se(x, scale=100.0):
        """A calibrated statistic in %: mean (± std over replicates), then (± its standard error)."""
        return "–" if x is None else f"{v(x, '{:.1f}', scale)} (± {scale * x['stderr']:.1f})"

    p = _plain(marginal["percentile"])
    nth = f"{p:g}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(p, 'th') }"
    lines = ["## Table 3: where samples land in the aggregate posterior", ""]
    if calibrated is not None:
        ch = calibrated["classifier"]
        lines += [
            f"log q_agg(z) = log (1/N) Σ_i q(z|x_i) over all N = {marginal['n_components']} training "
            f"images (exact, z = {marginal['latent_dim']}), at one z per scored text from each q(z|y) "
            "and as many from each prior. The reference is one code z ~ q(z|x) per validation image "
            f"({calibrated['heldout_codes']} of them): images outside the aggregate, so their codes are "
            f"what an ideal sampler draws. *Below the held-out {nth} percentile*: log q_agg(z) below the "
            f"{nth} percentile of {calibrated['threshold_codes']} of these codes "
            f"({v(calibrated['threshold'])} nats). *Classifier*: the out-of-fold accuracy of an MLP "
            f"(z → {ch['hidden']} → {ch['hidden']} → 1, {ch['steps']} Adam steps, {ch['folds']} folds) told "
            "to separate the source's z from the other held-out codes, as many of each.",
            "",
            f"| z from | below the held-out {nth} percentile % | classifier vs held-out codes: accuracy % "
            "| log q_agg(z): median |",
            "|---|---|---|---|",
        ]
        names = {"heldout": "held-out codes (check)", **labels}
        for name in names:
            row = calibrated["heldout"] if name == "heldout" else calibrated["sources"].get(name)
            if row is None:
                continue
            lines.append(
                f"| {names[name]} | {se(row['hole_fraction'])} | {se(row['two_sample_accuracy'])} | "
                f"{v(row['median_log_density'])} |"
            )
        lines += [
            "",
            f"The check row is scored like a source by held-out codes that did not set the threshold, so "
            f"it reads about {p:g} % and 50 % honestly. A fraction far above {p:g} % means samples in the "
            "aggregate's holes, where held-out images' codes almost never land; an accuracy above 50 % "
            "means the samples differ from held-out codes at all, collapsed or shifted ones included, "
            "which a higher log density would reward. In parentheses: the bootstrap standard error of "
            "the fraction (samples and threshold codes resampled) and the binomial standard error of "
            "the accuracy.",
            "",
            "### Against the aggregate's own samples (in-sample threshold)",
            "",
        ]
    names = {"reference": "the aggregate's own samples", **labels}
    lines += [
        f"log q_agg(z) = log (1/N) Σ_i q(z|x_i) over all N = {marginal['n_components']} training images "
        f"(exact, z = {marginal['latent_dim']}), at one z per scored text from each q(z|y) and as many "
        f"from each prior. *In a hole*: below the {nth} percentile of the aggregate's own samples "
        f"({marginal['reference']['n']} of them; threshold {v(marginal['threshold'])} nats). "
        "Per text: the same "
        "with the aggregate of the training images whose text is the scored text "
        f"({v(conditional['n_keys_with_components'], '{:.0f}')} of {conditional['n_keys']} texts "
        "have such images, "
        f"{v(conditional['mean_components_per_key'], '{:.2f}')} images per text on average; its own "
        f"{conditional['own_per_key']} samples per text set each text's threshold).",
        "",
        "| z from | log q_agg(z): mean | median | 10th–90th percentile | in a hole % "
        "| per text: log q_agg(z|y) median | in a hole % |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
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
        "Each of the aggregate's own samples sits on its own component, which a code of an image "
        "outside the aggregate never does: in many dimensions almost every other point lies far below "
        "their density, so this hole fraction saturates at 100 % for every source, an ideal sampler's "
        "included"
        + (" (the calibrated table above does not)." if calibrated is not None else ".")
        + " The log densities still order the sources, but reward samples that collapse onto dense "
        "regions.",
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
    label: str, table: dict, names: dict, paper: dict, ks: list[int], paper_at: int, ess: dict | None = None
) -> list[str]:
    """One table row per k for the distributions ``names``; the paper's numbers on the row of ``paper_at``.

    With ``ess`` (``log_p_y_ess``: per distribution and k, the effective sample size over texts), a row
    under the largest k's: mean (median, min) over texts, out of k.
    """
    theirs = [name for name in names if name in paper]
    rows = []
    for kk in ks:
        cells = [_nats(table[name][f"k={kk}"]) for name in names]
        cells += [str(paper[name]) if kk == paper_at else "" for name in theirs]
        rows.append(f"| {label}, k={kk} | " + " | ".join(cells) + " |")
    top = f"k={ks[-1]}" if ks else None
    if ess and top and all(top in ess.get(name, {}) for name in names):
        cells = []
        for name in names:
            e = ess[name][top]
            cells.append(
                f"{e['mean']['mean']:.1f} (median {e['median']['mean']:.1f}, min {e['min']['mean']:.1f})"
            )
        rows.append(f"| {label}, ESS at k={ks[-1]} | " + " | ".join(cells + [""] * len(theirs)) + " |")
    return rows


def _generation_table(title: str, names: dict, correctness: dict, paper: dict) -> list[str]:
    """Head and correctness row of Table 1 or 2: ours per distribution, then the paper's where it has one."""
    theirs = [name for name in names if name in paper]
    cells = [_pct(correctness[name]) for name in names] + [str(paper[name]) for name in theirs]
    return [
        title,
        "",
        "| | " + " | ".join([*names.values(), *(f"paper {names[n]}" for n in theirs)]) + " |",
        "|---|" + "---|" * (len(names) + len(theirs)),
        "| correctness % | " + " | ".join(cells) + " |",
    ]


def _difference_lines(diffs: dict, lk: dict, names: dict, k: int, text_ks: list, reps: int) -> list[str]:
    """Paired differences (each registered pair the run holds) of correctness and the likelihoods."""
    ld = lk.get("differences", {}).get(f"k={k}", {})
    yd = lk.get("log_p_y_differences", {})
    if not diffs:
        return []
    top = f"k={text_ks[-1]}" if text_ks else None

    def cell(table: dict, pair: str, scale: float = 1.0) -> str:
        return _diff(table[pair], scale) if pair in table else ""

    lines = [
        "",
        "Paired differences on the same scored examples (mean"
        + (" ± std over training replicates" if reps > 1 else "")
        + "; in parentheses the standard error over examples; image likelihoods at "
        f"k = {k}, log p(y) at k = {text_ks[-1] if text_ks else '–'}):",
        "",
        "| | correctness (points) | log p(x|y) | log p(x) | log p(y) |",
        "|---|---|---|---|---|",
    ]
    for pair in diffs:
        a, b = pair.split(" - ")
        lines.append(
            f"| {names.get(a, a)} − {names.get(b, b)} | {cell(diffs, pair, 100)} | "
            f"{cell(ld.get('log_p_x_given_y', {}), pair)} | {cell(ld.get('log_p_x', {}), pair)} | "
            f"{cell(yd.get(top, {}), pair) if top else ''} |"
        )
    for pair in (yd.get(top) or {}) if top else ():
        a, b = pair.split(" - ")
        lines += [
            "",
            f"log p(y), {names.get(a, a)} − {names.get(b, b)}, by k: "
            + ", ".join(
                f"k = {kk}: {_diff(yd[f'k={kk}'][pair])}" for kk in text_ks if pair in yd.get(f"k={kk}", {})
            )
            + ".",
        ]
    return lines


def render_report(metrics: dict, cfg) -> str:
    """Markdown with Tables 1-3 in the paper's layout, the paper's numbers beside ours."""
    c, lk, paper = metrics["correctness"], metrics["likelihood"], metrics.get("paper", {})
    posteriors = metrics["distributions"]["text_posteriors"]
    priors = metrics["distributions"]["priors"]
    method = metrics["method"]
    settings = metrics["settings"]
    k, reps = settings["k"], metrics.get("replicates", 1)
    acc = metrics["classifier"]["real_accuracy"] or {}
    pc = paper.get("correctness", {})
    vlvaes = metrics.get("vlvae_replicates", 1)
    if vlvaes > 1:
        spread = (
            f"mean ± standard deviation over **{vlvaes} independently trained {method['title']} models** "
            f"(each with its own seed; each model's figure is its mean over "
            f"{metrics.get('stage_replicates', 1)} training replicate(s) of stages 2-3; the spread "
            "includes the evaluations' sampling noise)"
        )
    elif reps > 1:
        spread = (
            f"mean ± standard deviation over **{reps} training replicates** of stages 2-3 (each fitted "
            f"with its own seed on the same {method['title']} model, trained once; the spread includes each "
            "evaluation's own sampling noise, given apart in parentheses)"
        )
    else:
        spread = (
            "from **one training run** of each stage (no spread over training runs: train replicates with "
            "`--replicates N` to get one)"
        )
    lines = [
        f"# vlvae report: {metrics['dataset']} ({metrics['config_preset']} preset)"
        + f": {method['title']} ({method['reference']})",
        "",
        f"Scored on the first {settings['examples']} examples of the {_split_name(settings)}; sampling "
        f"seeds: {settings['seeds']}. Every figure is {spread}. In parentheses, the error of the evaluation "
        "itself: for correctness (MC ±) the standard error of the mean over the sampling seeds (each "
        "redraws every z), for likelihoods (±) the standard error over examples. Likelihoods are in nats "
        "per example, unweighted. log p(x|y) and log p(x) use "
        f"q(z|x) as the proposal (k = 1 and k = {k}) and are densities of pixels in [0, 1] (the Beta "
        f"likelihood sees pixels mapped into [{cfg.model.pixel_low}, {cfg.model.pixel_high}]; the change of "
        f"variables adds {lk['pixel_jacobian_nats']:.1f} nats). log p(y) uses a proposal that depends on y "
        "alone and is the same for every prior: an equal mixture of "
        + " + ".join(
            [
                *posteriors.values(),
                *(f"q(z|y) fitted under {priors.get(n, n)}" for n in lk.get("log_p_y_fitted", [])),
                *priors.values(),
            ]
        )
        + (
            " (each fitted q(z|y) a Gaussian per text fitted by Eqn 3 to the posterior under that prior)"
            if lk.get("log_p_y_fitted")
            else ""
        )
        + ".",
        "",
        f"Classifier accuracy on real validation images: **{100 * acc.get('overall', float('nan')):.2f} %** "
        "(the ceiling of any correctness figure)."
        + (
            " Per slot: " + ", ".join(f"{n} {100 * v:.1f}" for n, v in acc["per_slot"].items()) + "."
            if acc.get("per_slot")
            else ""
        ),
        "",
    ]
    ceiling, floor = metrics["classifier"].get("ceiling"), metrics["classifier"].get("floor")
    if ceiling and floor:
        lines += [
            f"The judge is the {metrics['classifier'].get('judge', 'caption judge')}: an image-to-text model "
            "trained on the real training pairs only; correctness is its teacher-forced word accuracy on the "
            "text given the image. Real validation images with their own texts (the ceiling): "
            f"{100 * ceiling['word_accuracy']:.2f} % (log p per word {ceiling['log_p_per_word']:.3f}); "
            "the same texts on a grey or the mean training image (the floor): "
            f"{100 * floor['word_accuracy']:.2f} % (log p per word {floor['log_p_per_word']:.3f}).",
            "",
        ]
    if metrics.get("data_summary"):
        lines += [f"Data: {metrics['data_summary']}.", ""]
    rc = metrics["classifier"].get("real_correctness")
    if rc:
        lines += [
            f"Real validation faces scored against their own words: {100 * rc['paper']:.2f} % (paper's "
            f"definition), {100 * rc['all_labels']:.2f} % (all labels) — the ceiling of the correctness "
            "figures.",
            "",
        ]
    names = {**posteriors, **priors}
    lines += [
        f"Reconstruction (z ~ q(z|x) of the real image): {_pct(c['reconstruction'])} % — the ceiling of any "
        "q(z|y).",
        "",
    ]
    ks = sorted({1, k})
    if posteriors:
        lines += _generation_table(
            f"## Table 1: {' vs '.join(posteriors.values())} (conditional generation)",
            posteriors,
            c["conditional"],
            pc,
        )
        lines += _likelihood_rows(
            "log p(x|y)", lk["log_p_x_given_y"], posteriors, paper.get("log_p_x_given_y", {}), ks, paper_at=1
        )
    lines += [""] + _generation_table(
        f"## Table 2: {' vs '.join(priors.values())} (generation from the prior)", priors, c["prior"], pc
    )
    lines += _likelihood_rows("log p(x)", lk["log_p_x"], priors, paper.get("log_p_x", {}), ks, paper_at=1)
    text_ks = lk.get("text_k", [])
    if text_ks:
        lines += _likelihood_rows(
            "log p(y)",
            lk["log_p_y"],
            priors,
            paper.get("log_p_y", {}),
            text_ks,
            paper_at=text_ks[-1],
            ess=lk.get("log_p_y_ess"),
        )
        lines += [
            "",
            "log p(y) at k = 1 is log p(y|z) + log p(z) − log r(z|y) at one shared z: the difference between "
            "two priors is then the difference of their log densities at z, free of the text decoder; only "
            "k > 1 weighs the samples by p(y|z). Read log p(y) where it has stopped moving with k."
            + (
                " ESS: the effective sample size (Σw)² / Σw² of each text's importance weights under that "
                f"prior, out of k = {text_ks[-1]}, mean (median, min) over texts; where it is a handful, the "
                "estimate rests on a few samples and is likely still below the exact log p(y)."
                if lk.get("log_p_y_ess")
                else ""
            ),
        ]
    lines += _difference_lines(c.get("differences", {}), lk, names, k, text_ks, reps)
    d = lk["dimensions"]
    per_dim = [
        f"{label} {lk['log_p_x_given_y'][name][f'k={k}']['per_dim']:.4f}"
        for name, label in posteriors.items()
    ]
    lines += [
        "",
        f"Per dimension (k = {k}): log p(x|y) "
        + ", ".join(per_dim)
        + f" nats per pixel-channel (D = {d['x']})"
        + (
            f"; log p(y) per word (k = {text_ks[-1]}): "
            + ", ".join(
                f"{label} {lk['log_p_y'][name][f'k={text_ks[-1]}']['per_dim']:.4f}"
                for name, label in priors.items()
            )
            + f" (L = {d['y']})"
            if text_ks
            else ""
        )
        + ".",
        "",
    ]
    if paper:
        lines += [
            "The paper's numbers come from 112 × 112 images, z = 50 and 400k steps; a reduced preset differs "
            "in scale, so compare directions (q_Agg vs q_True, q_φ(z) vs N(0, I)), not magnitudes.",
            "",
        ]
    if metrics.get("landing"):
        lines += _landing_lines(metrics["landing"], reps, names)
    alt = metrics.get("correctness_all_labels")
    if alt:
        cols = [*(alt["conditional"][n] for n in posteriors), *(alt["prior"][n] for n in priors)]
        lines += [
            "## Correctness by the authors' code's definition (all binary labels)",
            "",
            "The tables above use the paper's definition (the fraction of the text's words the classifier "
            "finds in the image). The authors' CelebA code scored all binary labels instead (absent words "
            "count as absent attributes):",
            "",
            "| | " + " | ".join(names.values()) + " | reconstruction |",
            "|---|" + "---|" * (len(names) + 1),
            "| correctness % (all labels) | "
            + " | ".join(_pct(s) for s in cols)
            + f" | {_pct(alt['reconstruction'])} |",
            "",
        ]
    second = metrics.get("correctness_caption_judge")
    if second:
        cols = [*(second["conditional"][n] for n in posteriors), *(second["prior"][n] for n in priors)]
        judge = metrics.get("caption_judge") or {}
        ceiling, floor = judge.get("ceiling") or {}, judge.get("floor") or {}
        lines += [
            "## Correctness by the caption judge",
            "",
            "The same generated images scored by a second, independent judge that reads the text word by "
            "word: the caption judge (docs/design.md §11), an image-to-text model trained on the real "
            "training pairs only. Correctness is its teacher-forced word accuracy on the text given the image"
            + (
                "; real validation images with their own texts score "
                f"{100 * ceiling['word_accuracy']:.2f} % (the ceiling), the same texts on a grey or the mean "
                f"image {100 * floor['word_accuracy']:.2f} % (the floor)"
                if ceiling and floor
                else ""
            )
            + ".",
            "",
            "| | " + " | ".join(names.values()) + " | reconstruction |",
            "|---|" + "---|" * (len(names) + 1),
            "| word accuracy % (caption judge) | "
            + " | ".join(_pct(s) for s in cols)
            + f" | {_pct(second['reconstruction'])} |",
            "",
        ]
    figs = metrics.get("figures", {})
    if metrics.get("stages"):
        lines += _stopping_lines(metrics["stages"], figs.get("stopping"))
    s1 = metrics.get("stage1") or {}
    if s1.get("stopped_by") == "max_minutes":
        lines += [
            f"**Stage 1 was stopped by its wall-clock cap** ({s1['max_minutes']:g} minutes) at step "
            f"{s1['steps']} of {s1['steps_budget']}: these numbers depend on how fast and how loaded the "
            "machine was. Without `--max-minutes` stage 1 runs its full step budget.",
            "",
        ]
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
    lines += [
        f"Evaluated in {metrics['seconds']:.0f} s{_machine_words(metrics)}; "
        f"git commit {metrics['git_commit']}.",
        "",
    ]
    if metrics.get("evaluation_id"):
        lines += [f"Evaluation id {metrics['evaluation_id']} (the same as in the metrics file).", ""]
    return "\n".join(lines)


def _machine_words(metrics: dict) -> str:
    """`` on PROCESSOR (N torch threads of M cores)``, and the device where it was not the CPU, from
    the metrics' ``machine`` and ``device``; empty for metrics written before the machine was
    recorded (and for summaries, whose runs each name their own)."""
    machine = metrics.get("machine")
    if not machine:
        return ""
    cores = machine.get("cpu_count") or "?"
    words = f" on {machine['cpu']} ({machine['torch_threads']} torch threads of {cores} cores)"
    device = str(metrics.get("device") or "")
    return words + (f" with {device}" if device and not device.startswith("cpu") else "")


def render_summary(summary: dict, cfg, runs: list[Path]) -> str:
    """``summary.md``: the report over independently trained stage-1 models, linking their own reports."""
    text = render_report(summary, cfg).replace("# vlvae report:", "# vlvae summary over VLVAE replicates:", 1)
    return text + "\nEach run's own report: " + ", ".join(f"`{Path(r).name}/report.md`" for r in runs) + ".\n"

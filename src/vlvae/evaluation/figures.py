"""Sample figures of a trained VLVAE (Cremer & Kushman 2018, Figs. 3-6).

* :func:`figure_reconstructions` (Figs. 3, 5): per row, a data image with its
  text, its reconstruction with the text decoder's word distributions, and
  samples from each prior over z.
* :func:`figure_conditional_samples` (Figs. 4, 6): per text, images and texts
  decoded from z ~ q(z|y) of each text posterior (q_Agg, q_True), scored
  against the given text when a scorer is given.
* :func:`figure_across_runs`: the same data images and texts through several runs (e.g. the
  ``quick``, ``cpu`` and ``cpu-long`` presets): each run's reconstruction and its q_Agg and q_True
  samples side by side, so a reader sees what more compute buys.
* :func:`figure_convergence`: a stage's validation curves (stage 1: log p(x|z), KL,
  reconstruction correctness) against wall-clock training minutes, read from its
  CSV logs by :func:`read_validation_curves`, so one sees whether more time would help.

All draw on matplotlib's Agg canvas (without pyplot, so no global backend or figure state changes)
and write their PNG atomically; the sample figures run under ``torch.no_grad`` with a
fixed seed inside a forked random state (so the caller's random stream is
untouched and the figure is reproducible).
"""

from __future__ import annotations

import csv
import json
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import LongTensor, Tensor

from vlvae.data.vocabulary import Vocabulary
from vlvae.errors import VLVAEError
from vlvae.io import atomic_path, atomic_write_json
from vlvae.methods.stages import PRIOR, TEXT_POSTERIOR, distribution_labels, registered_stages
from vlvae.seeds import FIGURE_SEED

__all__ = [
    "CONVERGENCE_PANELS",
    "POSTERIOR_LABELS",
    "PRIOR_LABELS",
    "convergence_summary",
    "figure_across_runs",
    "figure_conditional_samples",
    "figure_convergence",
    "figure_joint_vs_marginal",
    "figure_reconstructions",
    "new_figure",
    "read_validation_curves",
    "save_figure",
    "text_caption",
]

#: Display names of the text posteriors and priors, in the order they are drawn.
#: (From the registered stages, :mod:`vlvae.methods.stages`.)
POSTERIOR_LABELS = distribution_labels(TEXT_POSTERIOR, figure=True)
PRIOR_LABELS = distribution_labels(PRIOR, figure=True)

_TOP = 3  # words shown per text position in the word-distribution panel


def new_figure(rows: int, cols: int, figsize: tuple[float, float], **kwargs) -> tuple[Figure, np.ndarray]:
    """A figure drawn by the Agg canvas (no pyplot, no global backend change) and its (rows, cols) axes."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False, **kwargs)


def save_figure(fig: Figure, out: Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG to ``out`` through a temporary file in the same folder."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return out


def text_caption(ids, vocab: Vocabulary, width: int = 22) -> str:
    """A text (L,) of word indices as words, wrapped to lines of about ``width`` characters.

    Texts whose slots are named with a relation slot ``R`` break at the relation word (object 1 /
    relation / object 2); a free text ends before its end word.
    """
    words = vocab.strip_end(vocab.decode(ids))
    if vocab.slot_names and "R" in vocab.slot_names and len(words) == len(vocab.slot_names):
        r = vocab.slot_names.index("R")
        return "\n".join(" ".join(part) for part in (words[:r], words[r : r + 1], words[r + 1 :]) if part)
    return textwrap.fill(" ".join(words), width=width)


def _image(ax, image: Tensor, caption: str | None = None, fontsize: float = 7.5) -> None:
    """Show a (3, H, W) image in [0, 1] without axes, with ``caption`` below it."""
    ax.imshow(image.clamp(0, 1).permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    if caption:
        ax.text(
            0.5,
            -0.04,
            caption,
            transform=ax.transAxes,
            ha="center",
            va="top",
            fontsize=fontsize,
            linespacing=1.15,
        )


def _slot_labels(vocab: Vocabulary, length: int) -> list[str]:
    """Row labels of the word table: the slot names of fixed-layout texts, else word positions."""
    names = list(vocab.slot_names) if len(vocab.slot_names) == length else []
    return names or [f"word {t + 1}" for t in range(length)]


def _word_table(ax, probs: Tensor, vocab: Vocabulary) -> None:
    """The text decoder's distributions (L, V) as a table: per position, its top words and probabilities.

    Each cell is shaded by its probability (a heat map of the top words), so the decoder's
    certainty reads at a glance; the first column is the greedily decoded word.
    """
    length = probs.shape[0]
    top_p, top_i = probs.topk(min(_TOP, probs.shape[-1]), dim=-1)
    ax.imshow(top_p.numpy(), cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    for t in range(length):
        for j in range(top_p.shape[1]):
            p = float(top_p[t, j])
            ax.text(
                j,
                t,
                f"{vocab.words[int(top_i[t, j])]} {p:.2f}".replace(" 0.", " ."),
                ha="center",
                va="center",
                fontsize=6.5,
                color="white" if p > 0.6 else "black",
            )
    ax.set_yticks(range(length), _slot_labels(vocab, length), fontsize=6.5)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)


def _posterior_z(model, x: Tensor, y: LongTensor, sample: bool) -> Tensor:
    """z (N, latent) of q(z|x) (q(z|x, y) with joint inference): its mean, or a sample."""
    q = model.image_posterior(x, y if model.config.joint_inference else None)
    return q.sample() if sample else q.mean


@torch.no_grad()
def figure_reconstructions(
    model,
    x: Tensor,
    y: LongTensor,
    vocab: Vocabulary,
    priors: dict,
    out: Path,
    n: int = 6,
    sample: bool = False,
) -> Path:
    """Fig. 3 / 5: data, reconstruction with word distributions, and samples from each prior.

    Row i: (1) data image x_i with its text y_i; (2) the mean image of z = the mean of q(z|x_i)
    (a sample if ``sample``) with the greedily decoded text of the same z; (3) the text decoder's
    word distributions for that z while decoding greedily (top words per position, shaded by
    probability); then, per prior, the mean image and greedy text of one z from it.

    Args:
        model: a frozen VLVAE in evaluation mode.
        x: (N, 3, H, W) images in [0, 1]; y: (N, L) their texts (word indices).
        vocab: the data set's vocabulary.
        priors: name -> callable returning a Distribution over z (event (latent,)), e.g.
            ``{"standard": model.standard_prior, "learned": aggregate_prior}``; drawn in the given order.
        out: the PNG to write.
        n: rows (examples), at most N.
        sample: reconstruct from a sample of q(z|x) instead of its mean.

    Returns:
        ``out``.
    """
    n = min(n, len(x))
    x, y = x[:n], y[:n]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(FIGURE_SEED)
        z = _posterior_z(model, x, y, sample)
        recon = model.image_mean(z)
        recon_text = model.generate_text(z, greedy=True)
        word_probs = model.text_distribution(z)
        prior_draws = {}
        for name, prior in priors.items():
            zp = prior().sample((n,))
            prior_draws[name] = (model.image_mean(zp), model.generate_text(zp, greedy=True))

    n_cols = 3 + len(prior_draws)
    lines = max(text_caption(t, vocab).count("\n") + 1 for t in y)
    row_h = 1.95 + 0.15 * lines  # images 1.9 inches wide: a 64-pixel image at more than 3x
    widths = [1.9, 1.9, 2.7] + [1.9] * len(prior_draws)
    fig, axes = new_figure(
        n, n_cols, (sum(widths) + 0.6, row_h * n + 0.8), gridspec_kw={"width_ratios": widths}
    )
    titles = [
        "data image + text",
        "reconstruction\n(z = mean of q(z|x))" if not sample else "reconstruction\n(z ~ q(z|x))",
        "text decoder p(y|z), same z:\ntop words per position",
    ]
    titles += [f"sample from\n{PRIOR_LABELS.get(name, name)}" for name in prior_draws]
    for i in range(n):
        _image(axes[i, 0], x[i], text_caption(y[i], vocab))
        _image(axes[i, 1], recon[i], text_caption(recon_text[i], vocab))
        _word_table(axes[i, 2], word_probs[i], vocab)
        for j, (images, texts) in enumerate(prior_draws.values()):
            _image(axes[i, 3 + j], images[i], text_caption(texts[i], vocab))
    for ax, title in zip(axes[0], titles):
        ax.set_title(title, fontsize=9, fontweight="bold", pad=8)
    fig.suptitle(
        "Reconstructions and prior samples: images from the mean of p(x|z), "
        "texts decoded greedily from p(y|z)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98), h_pad=2.2)
    return save_figure(fig, out)


def _distinct(y: LongTensor, n: int) -> LongTensor:
    """The first ``n`` distinct rows of y (N, L), in order of first appearance: (≤n, L)."""
    seen, keep = set(), []
    for i, row in enumerate(y.tolist()):
        if tuple(row) not in seen:
            seen.add(tuple(row))
            keep.append(i)
            if len(keep) == n:
                break
    return y[keep]


def _score_caption(score: float, vocab: Vocabulary) -> str:
    """A correctness in [0, 1] as ``k/m`` words when it is a whole number of the scored slots, else %."""
    scored = sum(1 for name in vocab.slot_names if name != "R")
    if scored and abs(score * scored - round(score * scored)) < 1e-4:
        return f"correct {round(score * scored)}/{scored}"
    return f"correct {100 * score:.0f}%"


def _ordered(mapping: dict, order: dict) -> dict:
    """``mapping`` with the keys of ``order`` first, in that order, then the rest as given."""
    return {
        **{k: mapping[k] for k in order if k in mapping},
        **{k: v for k, v in mapping.items() if k not in order},
    }


@torch.no_grad()
def figure_conditional_samples(
    model,
    text_posteriors: dict,
    y: LongTensor,
    vocab: Vocabulary,
    out: Path,
    n_texts: int = 4,
    n_samples: int = 3,
    scorer: Callable[[Tensor, LongTensor], Tensor] | None = None,
) -> Path:
    """Fig. 4 / 6: images and texts decoded from z ~ q(z|y) for given texts, per text posterior.

    Row per text: the given text; then, for each text posterior (q_Agg first, then q_True),
    ``n_samples`` images (mean of p(x|z)) of independent z ~ q(z|y), each captioned with the
    greedy decoding of its z and, with a scorer, its correctness against the given text.

    Args:
        model: a frozen VLVAE in evaluation mode.
        text_posteriors: name -> TextPosterior (callable y (B, L) -> Distribution over z),
            e.g. ``{"q_agg": ..., "q_true": ...}``.
        y: (N, L) texts; the first ``n_texts`` distinct ones are drawn.
        vocab: the data set's vocabulary.
        out: the PNG to write.
        n_texts: rows.
        n_samples: z per text and posterior.
        scorer: optional (images (B, 3, H, W) in [0, 1], texts (B, L)) -> (B,) correctness in [0, 1].

    Returns:
        ``out``.
    """
    texts = _distinct(y, n_texts)
    n_texts = len(texts)
    posteriors = _ordered(text_posteriors, POSTERIOR_LABELS)
    draws = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(FIGURE_SEED)
        for name, q in posteriors.items():
            z = q(texts).sample((n_samples,)).transpose(0, 1)  # (n_texts, n_samples, latent)
            images, decoded = model.image_mean(z), model.generate_text(z, greedy=True)
            scores = None
            if scorer is not None:
                given = texts.unsqueeze(1).expand(-1, n_samples, -1)
                scores = scorer(images.flatten(0, 1), given.flatten(0, 1)).view(n_texts, n_samples)
            draws[name] = (images, decoded, scores)

    lines = max(text_caption(t, vocab).count("\n") + 1 for t in texts) + (scorer is not None)
    row_h = 1.9 + 0.15 * lines  # images 1.9 inches wide: a 64-pixel image at more than 3x
    widths = [1.7] + [1.9] * (n_samples * len(draws))
    fig, axes = new_figure(
        n_texts, len(widths), (sum(widths) + 0.6, row_h * n_texts + 0.9), gridspec_kw={"width_ratios": widths}
    )
    for i in range(n_texts):
        ax = axes[i, 0]
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            text_caption(texts[i], vocab),
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=9,
            fontweight="bold",
            linespacing=1.3,
        )
        for g, (images, decoded, scores) in enumerate(draws.values()):
            for s in range(n_samples):
                caption = text_caption(decoded[i, s], vocab)
                if scores is not None:
                    caption += "\n" + _score_caption(float(scores[i, s]), vocab)
                _image(axes[i, 1 + g * n_samples + s], images[i, s], caption)
    axes[0, 0].set_title("given text y", fontsize=9, fontweight="bold", pad=8)
    for g, name in enumerate(draws):
        for s in range(n_samples):
            axes[0, 1 + g * n_samples + s].set_title(
                f"z{s} ~ {POSTERIOR_LABELS.get(name, name)}", fontsize=9, fontweight="bold", pad=8
            )
    note = "; caption: greedy text of the same z" + (", correctness against y" if scorer is not None else "")
    fig.suptitle(
        f"Conditional samples: images (mean of p(x|z)) for z from each text posterior{note}", fontsize=10
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98), h_pad=2.2)
    # Rule between the posteriors' column groups so each group reads as one block.
    for g in range(1, len(draws)):
        left = axes[0, g * n_samples].get_position().x1
        right = axes[0, 1 + g * n_samples].get_position().x0
        fig.add_artist(Line2D([(left + right) / 2] * 2, [0.02, 0.95], color="0.6", lw=1.0))
    return save_figure(fig, out)


def figure_across_runs(
    x: Tensor,
    y: LongTensor,
    vocab: Vocabulary,
    runs: dict[str, dict[str, tuple[Tensor, list[str], np.ndarray | None]]],
    out: Path,
    cell: float = 1.9,
) -> Path:
    """The same data images and texts through several runs: per row one example, then per run one
    image of each kind (reconstruction, q_Agg sample, q_True sample), captioned with the judge's
    correctness against the example's text (or, without a judge, the text decoded from the same z).

    Images are drawn with nearest-neighbour upsampling at ``cell`` inches (about 210 pixels at the
    saved 110 dpi: a 64-pixel image is shown at more than 3x, each pixel a visible block).

    Args:
        x: (N, 3, H, W) data images in [0, 1]; y: (N, L) their texts.
        vocab: the data set's vocabulary.
        runs: label (e.g. the preset) -> kind (e.g. ``reconstruction``, ``q_agg``, ``q_true``) ->
            (images (N, 3, H, W) in [0, 1], the N texts decoded from the same z, correctness (N,)
            in [0, 1] against ``y`` or None). Runs and kinds are drawn in the given order.
        out: the PNG to write.
        cell: width of one image in inches.

    Returns:
        ``out``.
    """
    n = len(x)
    columns = [(label, kind) for label, kinds in runs.items() for kind in kinds]
    if not n or not columns:
        raise VLVAEError("a figure across runs needs at least one example and one run")
    judged = all(scores is not None for kinds in runs.values() for _, _, scores in kinds.values())
    lines = max(text_caption(t, vocab).count("\n") + 1 for t in y) + 1
    row_h = cell + 0.17 * lines + 0.15
    widths = [cell] * (1 + len(columns))
    fig, axes = new_figure(n, len(widths), (sum(widths) + 0.4, row_h * n + 1.1))
    for i in range(n):
        _image(axes[i, 0], x[i], text_caption(y[i], vocab), fontsize=8)
        for j, (label, kind) in enumerate(columns):
            images, texts, scores = runs[label][kind]
            caption = textwrap.fill(texts[i], width=22)
            if judged:
                caption = _score_caption(float(scores[i]), vocab)
            _image(axes[i, 1 + j], images[i], caption, fontsize=8)
    axes[0, 0].set_title("data image\n+ its text y", fontsize=9, fontweight="bold", pad=6)
    for j, (label, kind) in enumerate(columns):
        name = {"reconstruction": "reconstruction"}.get(kind, f"z ~ {POSTERIOR_LABELS.get(kind, kind)}")
        axes[0, 1 + j].set_title(f"{label}\n{name}", fontsize=9, fontweight="bold", pad=6)
    fig.suptitle(
        "The same texts across runs: reconstruction (mean of q(z|x)) and one sample of each text "
        "posterior q(z|y); captions: "
        + ("the judge's correctness against y" if judged else "the text decoded from the same z"),
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97), h_pad=1.6)
    per_run = [len(kinds) for kinds in runs.values()]
    edge = 1
    for k in per_run[:-1]:
        edge += k
        left, right = axes[0, edge - 1].get_position().x1, axes[0, edge].get_position().x0
        fig.add_artist(Line2D([(left + right) / 2] * 2, [0.02, 0.95], color="0.5", lw=1.2))
    return save_figure(fig, out)


# ---------------------------------------------------------------------------------------------
# Convergence: validation curves from the CSV logs against wall-clock training minutes.

#: Stage 1 validation metrics drawn by :func:`figure_convergence`: column -> (panel title, scale).
CONVERGENCE_PANELS = {
    "val/log_px": ("validation log p(x|z) (nats per image)", 1.0),
    "val/kl": ("validation KL(q(z|x) || p(z)) (nats)", 1.0),
    "val/correctness": ("reconstruction correctness (%)", 100.0),
}
_SESSION = re.compile(r"from_step_(\d+)")


def _read_session(path: Path) -> tuple[int | None, list[dict[str, str]]]:
    """(starting step from the folder name ``from_step_<N>``, or None; rows) of one metrics.csv."""
    with open(path, newline="") as f:
        rows = [row for row in csv.DictReader(f) if (row.get("step") or "").strip()]
    match = _SESSION.fullmatch(path.parent.name)
    return (int(match.group(1)) if match else None), rows


def _step(row: dict[str, str]) -> int:
    return int(float(row["step"]))


def read_validation_curves(stage_dir: Path) -> dict[str, np.ndarray]:
    """The validation passes logged while fitting a stage, over all its training sessions.

    Reads every ``STAGE/logs/csv/<session>/metrics.csv`` written by Lightning's CSVLogger
    (one row per ``log_metrics`` call: a ``step`` column, ``epoch``, and one column per metric;
    cells of metrics not logged in that call are empty). Lightning logs the 0-based index of the
    last batch as ``step``, so a pass logged at step s saw the weights after s + 1 optimiser steps.
    Sessions are taken in order of their starting step (``from_step_<N>``, the checkpoint's
    global step; for other folder names, their first logged step). A session resumed from N
    replaces every row that earlier sessions logged at steps >= N (that part of their history was
    discarded when the checkpoint was reloaded), so at a step logged twice the later session's
    row wins. Only rows with ``val/minutes`` are kept: validation during fitting, not the final
    ``trainer.validate`` nor training rows.

    Args:
        stage_dir: a stage folder, e.g. ``RUN/stage1``.

    Returns:
        ``step`` (int64), ``val/minutes`` and every other ``val/...`` column with at least one
        value (float64, NaN where a row lacks it), each (P,) over the P validation passes in
        order of step. P is 0 when the logs hold no ``val/minutes`` (runs from before it was logged).

    Raises:
        VLVAEError: the stage has no metrics.csv.
    """
    stage_dir = Path(stage_dir)
    paths = sorted((stage_dir / "logs" / "csv").glob("*/metrics.csv"))
    if not paths:
        raise VLVAEError(
            f"{stage_dir} has no training logs (logs/csv/*/metrics.csv); train the stage first, "
            "or pass the stage folder of a run (e.g. RUN/stage1)"
        )
    sessions = []
    for path in paths:
        start, rows = _read_session(path)
        if start is None:
            if not rows:
                continue
            start = min(_step(row) for row in rows)
        sessions.append((start, path.parent.name, rows))
    passes: dict[int, dict[str, str]] = {}
    for start, _, rows in sorted(sessions, key=lambda s: (s[0], s[1])):
        passes = {step: row for step, row in passes.items() if step < start}
        for row in rows:
            if (row.get("val/minutes") or "").strip():
                passes[_step(row)] = row
    steps = sorted(passes)
    columns = sorted(
        {
            key
            for row in passes.values()
            for key, value in row.items()
            if key and key.startswith("val/") and key != "val/minutes" and (value or "").strip()
        }
    )
    curves = {"step": np.array(steps, dtype=np.int64)}
    for key in ["val/minutes", *columns]:
        cells = [(passes[s].get(key) or "").strip() for s in steps]
        curves[key] = np.array([float(c) if c else np.nan for c in cells], dtype=np.float64)
    return curves


def convergence_summary(
    curves: dict[str, np.ndarray], fraction: float = 0.25, decoder_from: int | None = None
) -> dict:
    """The last validation pass and each stage 1 metric's change over the last ``fraction`` of its steps.

    The change of a metric runs from its last logged pass at or before ``(1 - fraction)`` of the
    last pass's step to its last logged pass; it is None with too few passes to span that window.
    The window is in steps, not minutes, so the same run gives the same summary on a busy or an idle
    machine (the minutes of each end are reported beside it). Correctness is a fraction in [0, 1], as
    logged.

    With ``decoder_from`` (the whole model's step count when the image decoder trained alone after
    it: ``stage1.decoder_steps``, docs/design.md §5) the two phases are kept apart: the window covers
    the whole model's passes only (those logged at steps below ``decoder_from``) and ``decoder`` holds
    each metric's change from the last of them to the last pass, so what the decoder's steps bought is
    not read as the whole model's trend. Without passes on both sides of ``decoder_from`` the summary
    is the single-phase one and ``decoder`` is None.
    """
    minutes, steps = curves["val/minutes"], curves["step"]
    if not len(steps):
        raise VLVAEError("no validation passes with val/minutes to summarise")
    last = {"step": int(steps[-1]), "minutes": float(minutes[-1])}
    for key in CONVERGENCE_PANELS:
        values = curves.get(key)
        last[key.removeprefix("val/")] = (
            float(values[-1]) if values is not None and np.isfinite(values[-1]) else None
        )
    whole = steps < decoder_from if decoder_from is not None else np.ones(len(steps), dtype=bool)
    phased = bool(whole.any() and not whole.all())
    if not phased:
        whole = np.ones(len(steps), dtype=bool)
    since = (1.0 - fraction) * float(steps[whole][-1])
    summary = {
        "last": last,
        "fraction": fraction,
        "since_step": since,
        "change": _changes({key: values[whole] for key, values in curves.items()}, since),
        "decoder": None,
    }
    if phased:
        summary["decoder"] = {"from_step": int(decoder_from), "change": _changes(curves, decoder_from - 1)}
    return summary


def _changes(curves: dict[str, np.ndarray], since: float) -> dict:
    """Each :data:`CONVERGENCE_PANELS` metric's change from its last logged pass at or before step
    ``since`` to its last logged pass (None without a pass on both sides)."""
    minutes, steps = curves["val/minutes"], curves["step"]
    change = {}
    for key in CONVERGENCE_PANELS:
        name = key.removeprefix("val/")
        values = curves.get(key)
        logged = np.flatnonzero(np.isfinite(values)) if values is not None else np.array([], dtype=int)
        before = logged[steps[logged] <= since] if len(logged) else logged
        if not len(before) or before[-1] == logged[-1]:
            change[name] = None
            continue
        a, b = int(before[-1]), int(logged[-1])
        change[name] = {
            "from_step": int(steps[a]),
            "from_minutes": float(minutes[a]),
            "to_step": int(steps[b]),
            "to_minutes": float(minutes[b]),
            "change": float(values[b] - values[a]),
        }
    return change


def _json_values(values: np.ndarray) -> list:
    """An array as JSON numbers: ints stay ints, NaN becomes null."""
    if values.dtype.kind in "iu":
        return [int(v) for v in values]
    return [float(v) if np.isfinite(v) else None for v in values]


def figure_convergence(
    stage_dir: Path,
    out: Path,
    curves: dict[str, np.ndarray] | None = None,
    decoder_from: int | None = None,
) -> Path:
    """Stage 1 validation curves against wall-clock training minutes, as a PNG and a JSON beside it.

    One panel per metric of :data:`CONVERGENCE_PANELS` (log p(x|z), KL, reconstruction
    correctness in %), each validation pass a marker, the last one annotated with its step;
    a metric that was not logged (correctness without a judge) gets a panel saying so.
    ``out`` with suffix ``.json`` holds the curves of :func:`read_validation_curves` (NaN as
    null) and :func:`convergence_summary`.

    Args:
        stage_dir: the stage folder, e.g. ``RUN/stage1``.
        out: the PNG to write.
        curves: the stage's :func:`read_validation_curves`, if the caller has read them already.
        decoder_from: the whole model's step count when the image decoder trained alone after it
            (``stage1.steps`` with ``stage1.decoder_steps``): a dashed line marks the last pass before
            it, and the summary keeps the two phases apart (:func:`convergence_summary`).

    Returns:
        ``out``.

    Raises:
        VLVAEError: the stage has no logs, or none with ``val/minutes``.
    """
    stage_dir, out = Path(stage_dir), Path(out)
    curves = read_validation_curves(stage_dir) if curves is None else curves
    if not len(curves["step"]):
        raise VLVAEError(
            f"the logs in {stage_dir} have no validation passes with val/minutes (the run predates "
            "it, or never reached a validation pass), so there is no convergence curve to draw"
        )
    minutes, steps = curves["val/minutes"], curves["step"]
    summary = convergence_summary(curves, decoder_from=decoder_from)
    boundary = float(minutes[steps < decoder_from][-1]) if summary["decoder"] else None
    fig, axes = new_figure(1, len(CONVERGENCE_PANELS), (4.2 * len(CONVERGENCE_PANELS), 3.6))
    for ax, (key, (title, scale)) in zip(axes[0], CONVERGENCE_PANELS.items()):
        ax.set_title(title, fontsize=9.5)
        values = curves.get(key)
        logged = np.isfinite(values) if values is not None else np.zeros(len(steps), dtype=bool)
        if not logged.any():
            ax.text(
                0.5,
                0.5,
                "not logged",
                transform=ax.transAxes,
                ha="center",
                va="center",
                fontsize=11,
                color="0.45",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        x, y = minutes[logged], scale * values[logged]
        ax.plot(x, y, marker="o", markersize=3.5, linewidth=1.2, color="C0")
        if boundary is not None:
            ax.axvline(boundary, color="0.4", linestyle="--", linewidth=0.9)
            ax.text(
                boundary,
                0.02,
                " image decoder alone →",
                transform=ax.get_xaxis_transform(),
                fontsize=7.5,
                color="0.35",
            )
        high = y[-1] >= (y.min() + y.max()) / 2  # label the last point on the side with room
        ax.annotate(
            f"step {int(steps[logged][-1])}",
            xy=(x[-1], y[-1]),
            xytext=(-8, -10 if high else 10),
            textcoords="offset points",
            ha="right",
            va="top" if high else "bottom",
            fontsize=8,
            arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.7},
        )
        ax.margins(x=0.06, y=0.12)
        ax.plot(x[-1:], y[-1:], marker="o", markersize=6, color="C3", linestyle="none")
        ax.set_xlabel("training minutes (wall clock)", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"{stage_dir.name}: {len(steps)} validation passes during training "
        f"(steps {int(steps[0])}-{int(steps[-1])}, {float(minutes[-1]):.3g} min)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_figure(fig, out)
    atomic_write_json(
        out.with_suffix(".json"),
        {
            "stage_dir": str(stage_dir),
            "x": "val/minutes",
            "curves": {key: _json_values(values) for key, values in curves.items()},
            "summary": summary,
        },
    )
    return out


#: Stages fitted on the frozen VLVAE: the validation objective each maximises, and its title.
STOPPING_PANELS = {stage.name: (stage.monitor, stage.curve_title) for stage in registered_stages()}


def figure_stopping(stage_dirs: dict[str, list[Path]], out: Path) -> Path:
    """Validation curves of stages 2-3 against steps, one line per training replicate.

    Each replicate's best validation pass (whose weights are kept) is a filled marker and
    the step where it stopped an open one; the PNG has a JSON beside it with the curves.

    Args:
        stage_dirs: registered stage name (``q_true``, ``q_agg``, ``prior``) -> its replicates' folders.
        out: the PNG to write.

    Returns:
        ``out``.
    """
    out = Path(out)
    fig, axes = new_figure(1, len(STOPPING_PANELS), (4.4 * len(STOPPING_PANELS), 3.6))
    record = {}
    for ax, (stage, (key, title)) in zip(axes[0], STOPPING_PANELS.items()):
        ax.set_title(title, fontsize=9)
        for r, d in enumerate(stage_dirs.get(stage, [])):
            try:
                curves = read_validation_curves(d)
            except VLVAEError:
                continue
            if not len(curves["step"]) or key not in curves:
                continue
            steps, values = curves["step"] + 1, curves[key]  # logged step s saw s + 1 updates
            color = f"C{r % 10}"
            ax.plot(
                steps, values, linewidth=1.1, marker="o", markersize=2.5, color=color, label=f"replicate {r}"
            )
            info = json.loads((d / "metrics.json").read_text()) if (d / "metrics.json").is_file() else {}
            stop = info.get("early_stopping") or {}
            if stop.get("best_step") is not None:
                ax.plot(
                    [stop["best_step"]],
                    [stop["best_value"]],
                    marker="*",
                    markersize=10,
                    color=color,
                    linestyle="none",
                )
            ax.plot(
                steps[-1:],
                values[-1:],
                marker="o",
                markersize=7,
                markerfacecolor="none",
                color=color,
                linestyle="none",
            )
            record.setdefault(stage, []).append(
                {"step": _json_values(steps), key: _json_values(values), "early_stopping": stop or None}
            )
        ax.set_xlabel("step", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        "Stages 2-3 on the held-out validation examples (★ best pass, kept; ○ last pass)", fontsize=10
    )
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    save_figure(fig, out)
    atomic_write_json(out.with_suffix(".json"), record)
    return out


def figure_joint_vs_marginal(joint, marginal, x: torch.Tensor, y: torch.Tensor, vocab, out: Path) -> Path:
    """Fig. 7: data, reconstruction from joint inference q(z|x, y), from marginal inference q(z|x).

    Each reconstruction is the mean image of z = the posterior's mean, captioned with the greedy
    decoding of the same z: joint inference's caption repeats the given text, marginal inference's
    shows what the image alone tells.
    """
    n = len(x)
    with torch.no_grad():
        zj = joint.image_posterior(x, y).mean
        zm = marginal.image_posterior(x, y).mean
        rows = [
            ("data", x, y),
            ("joint q(z|x,y)", joint.image_mean(zj), joint.generate_text(zj)),
            ("marginal q(z|x)", marginal.image_mean(zm), marginal.generate_text(zm)),
        ]
    fig, axes = new_figure(3, n, (1.9 * n, 6.6))
    for r, (label, images, texts) in enumerate(rows):
        for c in range(n):
            _image(axes[r, c], images[c], text_caption(texts[c], vocab))
        axes[r, 0].set_ylabel(label)
    fig.suptitle("Fig. 7: reconstructions from joint (middle) and marginal (bottom) inference")
    return save_figure(fig, out)

"""``vlvae compare``: one table over runs of different methods, scored by one judge on one set of texts.

For each run (a run folder of any registered method, :mod:`vlvae.methods`), on the same first
``examples`` validation pairs, with the same seeds:

* text → image correctness of every text posterior the run holds: the method's own q(z|y) (JMVAE,
  TELBO, MVAE) and the stage-2 fits (q_Agg post hoc, q_True where trained);
* prior → image correctness (N(0, I); the learned q_φ(z) where trained) and reconstruction
  correctness (z ~ q(z|x), the ceiling of any text posterior);
* image → text: the greedy caption of z ~ q(z|x) against the true text, word by word (for Two
  Objects each word is one slot of the classifier's) and whole texts. For joint inference the
  "image posterior" is q(z|x, y): its caption shows how much of the text z carries (§6, Fig. 7);
* log p(x|y): the importance-weighted Eqn-6 bound with q(z|x) as the proposal (k samples), per
  text posterior, for pixels in [0, 1] — the same samples and log p(x|z) for every text posterior
  of a run (:func:`vlvae.evaluation.metrics.image_log_marginals`, shared with ``vlvae evaluate``);
* the mean standard deviation of q(z|x) and of the method's own q(z|y) (a collapsed unimodal
  posterior, as a library's TELBO had, shows as ≈ 0);
* stage-1 training steps and wall time, from its metrics.json.

Writes ``OUT/compare.json``, ``OUT/compare.md`` and, when the runs include the VLVAE with marginal
and with joint inference, ``OUT/fig7_joint_vs_marginal.png``. The ± of correctness is the
standard deviation over sampling seeds; of the other rows the standard error over examples.
One training run per method: the spread over training seeds is not in this table.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from pathlib import Path

import numpy as np
import torch

from vlvae.errors import VLVAEError

__all__ = ["compare_runs", "caption_accuracy", "render_comparison"]


@torch.no_grad()
def caption_accuracy(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> dict:
    """Greedy captions of z ~ q(z|x) (q(z|x, y) for joint inference) against the true texts.

    Returns:
        ``{"words": {"mean", "stderr"}, "texts": {"mean", "stderr"}}``: the fraction of word
        positions decoded right, and of texts decoded right in every position (per example,
        then mean and standard error over examples).
    """
    words, texts = [], []
    for lo in range(0, len(y), batch_size):
        xb, yb = x[lo : lo + batch_size], y[lo : lo + batch_size]
        z = model.image_posterior(xb, yb).sample()
        right = (model.generate_text(z, greedy=True) == yb).float()
        words.append(right.mean(-1))
        texts.append(right.min(-1).values)
    return {name: _mean_se(torch.cat(v)) for name, v in (("words", words), ("texts", texts))}


def _mean_se(values: torch.Tensor) -> dict:
    v = values.double()
    return {"mean": float(v.mean()), "stderr": float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0}


@torch.no_grad()
def _posterior_std(model, x: torch.Tensor, y: torch.Tensor, own) -> dict:
    out = {"q_z_x": float(model.image_posterior(x, y).stddev.mean())}
    if own is not None:
        out["own_q_z_y"] = float(own(y).stddev.mean())
    return out


def _fitted(run: Path, cfg, model, method) -> tuple[dict, dict, dict]:
    """Every text posterior (name -> q(z|y)) and prior (name -> () -> q(z)) of the run, and their labels.

    The method's own q(z|y) (``own``) where it trains one, N(0, I), then every registered stage 2-3
    (:mod:`vlvae.methods.stages`) the run has finished, in the registry's order.
    """
    from vlvae.methods.stages import STANDARD_PRIOR, TEXT_POSTERIOR, registered_stages
    from vlvae.runs import load_stage, stage_dir

    posteriors, priors = {}, {STANDARD_PRIOR.distribution: model.prior}
    labels = {STANDARD_PRIOR.distribution: STANDARD_PRIOR.label}
    if method.own_text_posterior is not None:
        posteriors["own"], labels["own"] = model.text_posterior, method.own_text_posterior
    for stage in registered_stages():
        if (stage_dir(run, stage.name) / "metrics.json").is_file():
            target = posteriors if stage.fits == TEXT_POSTERIOR else priors
            target[stage.distribution] = load_stage(run, stage.name, cfg)
            labels[stage.distribution] = stage.label
    return posteriors, priors, labels


def _stage1_record(run: Path) -> dict:
    from vlvae.runs import stage_dir

    m = json.loads((stage_dir(run, "vlvae") / "metrics.json").read_text())
    return {
        "steps": m.get("steps"),
        "seconds": m.get("seconds_this_session"),
        "examples_per_second": m.get("examples_per_second"),
    }


def compare_runs(
    runs: list[Path],
    classifier: Path,
    out: Path,
    examples: int | None = None,
    seeds: int | None = None,
    k: int | None = None,
    progress: bool = True,
) -> dict:
    """Score every run on the same validation texts and write ``OUT/compare.{json,md}`` (module docstring).

    Args:
        runs: run folders (any registered method) trained on the same data set.
        classifier: the judge of that data set.
        out: the folder to write into (created).
        examples, seeds, k: override the first run's evaluation settings (examples scored,
            sampling seeds of the correctness, importance samples of log p(x|y)).
    """
    from vlvae.data.dataset import ImageTextDataset
    from vlvae.evaluation.metrics import correctness_tables, image_log_marginals, validation_batch
    from vlvae.evaluation.report import load_scorer
    from vlvae.locking import folder_lock
    from vlvae.methods import get_method
    from vlvae.models.likelihoods import pixel_log_jacobian
    from vlvae.paths import check_output_dir
    from vlvae.runs import check_run_data, load_vlvae, open_run

    if not runs:
        raise VLVAEError("give at least one run folder to compare")
    runs = [Path(r) for r in runs]
    opened = [open_run(r) for r in runs]
    datas = [check_run_data(r, cfg, info) for r, (cfg, info) in zip(runs, opened)]
    if len({d.resolve() for d in datas}) > 1:
        raise VLVAEError(
            "the runs were trained on different data sets ("
            + ", ".join(map(str, datas))
            + "); compare runs of one data set"
        )
    cfg0 = opened[0][0]
    ev = cfg0.evaluation
    examples, seeds, k = examples or ev.examples, seeds or ev.seeds, k or ev.k
    out = check_output_dir(out, "output folder")
    data = ImageTextDataset(datas[0], "val")
    scorer, _ = load_scorer(data.dataset, Path(classifier), data.vocab, datas[0], f"the data of {runs[0]}")
    held = max(
        [st.val_examples for c, _ in opened for st in (c.text_posterior, c.prior) if st.patience > 0],
        default=0,
    )
    examples = max(1, min(examples, len(data) - held))
    torch.manual_seed(cfg0.seed)
    x, y = validation_batch(data, examples)
    rows, models = [], {}
    with folder_lock(out, "vlvae compare"):
        for run, (cfg, _) in zip(runs, opened):
            method = get_method(cfg.method.name)
            if progress:
                print(f"{run}: {method.title} ...", flush=True)
            started = time.time()
            model = load_vlvae(run, cfg)
            posteriors, priors, all_labels = _fitted(run, cfg, model, method)
            labels = {name: all_labels[name] for name in posteriors}
            prior_labels = {name: all_labels[name] for name in priors}
            tables = correctness_tables(model, {"paper": scorer.score}, x, y, posteriors, priors, seeds)[
                "paper"
            ]
            torch.manual_seed(cfg0.seed + 1)
            captions = caption_accuracy(model, x, y)
            jac = pixel_log_jacobian(x[0].numel(), cfg.model.pixel_low, cfg.model.pixel_high)
            # One set of q(z|x) samples and one log p(x|z) per image serve every text posterior (paired).
            torch.manual_seed(cfg0.seed + 2)
            bounds = image_log_marginals(model, x, y, posteriors, {}, [k], ev.micro_batch)
            log_p_x_given_y = {}
            for name in posteriors:
                summary = _mean_se(bounds[f"log_p_x_given_y/{name}/k={k}"])
                summary["mean"] += jac
                log_p_x_given_y[name] = summary
            rows.append(
                {
                    "run": str(run),
                    "method": method.name,
                    "title": method.title,
                    "reference": method.reference,
                    "labels": labels,
                    "prior_labels": prior_labels,
                    "correctness": tables,
                    "captions": captions,
                    "log_p_x_given_y": log_p_x_given_y,
                    "posterior_std": _posterior_std(model, x[:512], y[:512], posteriors.get("own")),
                    "stage1": _stage1_record(run),
                    "seconds_evaluating": time.time() - started,
                }
            )
            models[method.name] = model
        result = {
            "runs": [str(r) for r in runs],
            "classifier": str(classifier),
            "dataset": data.dataset,
            "settings": {"examples": len(y), "seeds": seeds, "k": k},
            "rows": rows,
            "evaluation_id": uuid.uuid4().hex,
        }
        figure = None
        if "vlvae" in models and "joint" in models:
            figure = figure_joint_vs_marginal(
                models["joint"], models["vlvae"], x[:6], y[:6], data.vocab, out / "fig7_joint_vs_marginal.png"
            )
            result["figure"] = figure.name
        from vlvae.data.format import atomic_write_json, atomic_write_text

        (out / "compare.md").unlink(missing_ok=True)
        atomic_write_json(out / "compare.json", result)
        atomic_write_text(out / "compare.md", render_comparison(result))
    return result


def figure_joint_vs_marginal(joint, marginal, x: torch.Tensor, y: torch.Tensor, vocab, out: Path) -> Path:
    """Fig. 7: data, reconstruction from joint inference q(z|x, y), from marginal inference q(z|x).

    Each reconstruction is the mean image of z = the posterior's mean, captioned with the greedy
    decoding of the same z: joint inference's caption repeats the given text, marginal inference's
    shows what the image alone tells.
    """
    from vlvae.evaluation.figures import _image, new_figure, save_figure, text_caption

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


def _cell(text: str) -> str:
    """A Markdown table cell: ``|`` (as in q(z|x)) escaped."""
    return str(text).replace("|", "\\|")


def _pct(s: dict) -> str:
    return f"{100 * s['mean']:.1f} ± {100 * s['std_over_seeds']:.1f}"


def render_comparison(result: dict) -> str:
    """compare.md from compare.json's content."""
    st = result["settings"]
    lines = [
        f"# vlvae comparison of methods ({result['dataset']})",
        "",
        f"{st['examples']} validation texts; correctness ± std over {st['seeds']} sampling seeds; "
        f"log p(x|y) (nats, pixels in [0, 1], Eqn-6 bound with q(z|x) as proposal, k = {st['k']}) and "
        "caption accuracy ± standard error over examples. One training run per method (no spread over "
        "training seeds). Judge: " + f"`{result['classifier']}`.",
        "",
        "| method | text posterior | text→image correctness % | log p(x\\|y) |",
        "|---|---|---|---|",
    ]
    for row in result["rows"]:
        for name, label in row["labels"].items():
            c = row["correctness"]["conditional"][name]
            ll = row["log_p_x_given_y"][name]
            lines.append(
                f"| {_cell(row['title'])} | {_cell(label)} | {_pct(c)} | {ll['mean']:.1f} ± {ll['stderr']:.1f} |"
            )
    prior_labels = {}
    for row in result["rows"]:
        prior_labels.update(row.get("prior_labels", {}))
    lines += [
        "",
        "| method | reconstruction % | "
        + " | ".join(f"{_cell(label)} %" for label in prior_labels.values())
        + " | caption words % | caption texts % | std q(z\\|x) | std own q(z\\|y) | stage-1 steps | "
        "stage-1 minutes |",
        "|---|---|" + "---|" * len(prior_labels) + "---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        c, cap, sd, s1 = row["correctness"], row["captions"], row["posterior_std"], row["stage1"]
        priors = " | ".join(_pct(c["prior"][name]) if name in c["prior"] else "—" for name in prior_labels)
        own_std = f"{sd['own_q_z_y']:.3f}" if "own_q_z_y" in sd else "—"
        minutes = (s1["seconds"] or float("nan")) / 60
        lines.append(
            f"| {_cell(row['title'])} | {_pct(c['reconstruction'])} | {priors} | "
            f"{100 * cap['words']['mean']:.1f} | {100 * cap['texts']['mean']:.1f} | {sd['q_z_x']:.3f} | "
            f"{own_std} | {s1['steps']} | {minutes:.1f} |"
        )
    own_vs_agg = [
        (row["title"], row) for row in result["rows"] if "own" in row["labels"] and "q_agg" in row["labels"]
    ]
    if own_vs_agg:
        lines += [
            "",
            "q_Agg fitted post hoc on each method's q(z|x) against the method's own q(z|y) "
            "(paired over the same texts and seeds):",
            "",
        ]
        for title, row in own_vs_agg:
            cond = row["correctness"]["conditional"]
            a, b = np.mean(cond["q_agg"]["per_seed"]), np.mean(cond["own"]["per_seed"])
            lines.append(
                f"- {title}: q_Agg {100 * a:.1f} % vs own {100 * b:.1f} % ({100 * (a - b):+.1f} points)"
            )
    if result.get("figure"):
        lines += ["", f"![Fig. 7]({result['figure']})"]
    lines += ["", "Runs: " + ", ".join(f"`{r}`" for r in result["runs"]), ""]
    return "\n".join(lines)

"""``compare.md``: one table over runs of different methods, rendered from their ``metrics.json``.

``vlvae compare`` (:func:`vlvae.evaluation.driver.compare_runs`) evaluates every run through the
one evaluation path, on the same validation texts with the same seeds and one judge; this module
renders what the runs' metrics hold, per run (a run folder of any registered method):

* text → image correctness of every text posterior the run holds: the method's own q(z|y) (JMVAE,
  TELBO, MVAE) and the stage-2 fits (q_Agg post hoc, q_True where trained), with log p(x|y) (the
  importance-weighted Eqn-6 bound with q(z|x) as the proposal, pixels in [0, 1]);
* prior → image correctness (N(0, I); the learned q_φ(z) where trained) and reconstruction
  correctness (z ~ q(z|x), the ceiling of any text posterior);
* image → text: the greedy caption of z ~ q(z|x) against the true text, word by word and whole
  texts. For joint inference the "image posterior" is q(z|x, y): its caption shows how much of the
  text z carries (docs/design.md §7, Fig. 7);
* the mean standard deviation of q(z|x) and of the method's own q(z|y) (a collapsed unimodal
  posterior shows as ≈ 0); stage-1 training steps and wall time.

The ± of correctness is the standard deviation over sampling seeds; of the other rows the
standard error over examples. One training run per method unless a run holds replicates of its
stages 2-3 (then the mean over them).
"""

from __future__ import annotations

from vlvae.evaluation.metrics import mc_stderr

__all__ = ["render_comparison"]


def _cell(text: str) -> str:
    """A Markdown table cell: ``|`` (as in q(z|x)) escaped."""
    return str(text).replace("|", "\\|")


def _pct(s: dict) -> str:
    return f"{100 * s['mean']:.1f} (MC ± {100 * mc_stderr(s):.1f})"


def _equal_time_lines(result: dict) -> list[str]:
    """The second reading: each method's stage 1 at the same wall-clock minutes (from its logged passes)."""
    eq = result.get("equal_time")
    if not eq:
        return []
    titles = {r: m["method"]["title"] for r, m in zip(result["runs"], result["metrics"])}
    keys = sorted({k for row in eq["runs"].values() if row for k in row["values"]})
    # Each method's own objective (val/elbo) differs in kind; these mean the same for every method.
    shown = [k for k in ("val/correctness", "val/log_px", "val/log_py") if k in keys]
    lines = [
        "",
        f"At equal time (the tables above are at equal steps): each method's stage 1 at its last validation "
        f"pass within {eq['minutes']:.1f} minutes, the shortest run's training time, from the values logged "
        "while training (on the stage's validation subset; correctness is of the reconstructions):",
        "",
        "| method | step | minutes | " + " | ".join(_cell(k) for k in shown) + " |",
        "|---|---|---|" + "---|" * len(shown),
    ]
    for run, row in eq["runs"].items():
        if row is None:
            lines.append(
                f"| {_cell(titles.get(run, run))} | no validation pass within that time |"
                + " |" * (1 + len(shown))
            )
            continue
        cells = [
            f"{100 * row['values'][k]:.1f} %" if k == "val/correctness" else f"{row['values'][k]:.1f}"
            for k in shown
            if k in row["values"]
        ]
        lines.append(
            f"| {_cell(titles.get(run, run))} | {row['step']} | {row['minutes']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def render_comparison(result: dict) -> str:
    """compare.md from compare.json's content (its ``metrics``: one run's metrics.json each)."""
    st = result["settings"]
    lines = [
        f"# vlvae comparison of methods ({result['dataset']})",
        "",
        f"{st['examples']} {'test' if st.get('split', 'val') == 'test' else 'validation'} texts; correctness "
        f"(MC ± the standard error of the mean over {st['seeds']} sampling seeds); "
        f"log p(x|y) (nats, pixels in [0, 1], Eqn-6 bound with q(z|x) as proposal, k = {st['k']}) and "
        "caption accuracy ± standard error over examples. One training run per method (no spread over "
        "training seeds of stage 1; where a run holds replicates of its stages 2-3, their mean). "
        f"Judge: `{result['classifier']}`. Each run's full report is its own `report.md`.",
        "",
        "| method | text posterior | text→image correctness % | log p(x\\|y) |",
        "|---|---|---|---|",
    ]
    k = f"k={st['k']}"
    for m in result["metrics"]:
        for name, label in m["distributions"]["text_posteriors"].items():
            c = m["correctness"]["conditional"][name]
            ll = m["likelihood"]["log_p_x_given_y"][name][k]
            lines.append(
                f"| {_cell(m['method']['title'])} | {_cell(label)} | {_pct(c)} | "
                f"{ll['mean']:.1f} ± {ll['stderr']:.1f} |"
            )
    prior_labels = {}
    for m in result["metrics"]:
        prior_labels.update(m["distributions"]["priors"])
    lines += [
        "",
        "| method | reconstruction % | "
        + " | ".join(f"{_cell(label)} %" for label in prior_labels.values())
        + " | caption words % | caption texts % | std q(z\\|x) | std own q(z\\|y) | stage-1 steps | "
        "stage-1 minutes |",
        "|---|---|" + "---|" * len(prior_labels) + "---|---|---|---|---|---|",
    ]
    for m in result["metrics"]:
        c, cap, sd, s1 = m["correctness"], m["captions"], m["posterior_std"], m["stage1"]
        priors = " | ".join(_pct(c["prior"][name]) if name in c["prior"] else "—" for name in prior_labels)
        own_std = f"{sd['own_q_z_y']:.3f}" if "own_q_z_y" in sd else "—"
        minutes = (s1["seconds"] or float("nan")) / 60
        lines.append(
            f"| {_cell(m['method']['title'])} | {_pct(c['reconstruction'])} | {priors} | "
            f"{100 * cap['words']['mean']:.1f} | {100 * cap['texts']['mean']:.1f} | {sd['q_z_x']:.3f} | "
            f"{own_std} | {s1['steps']} | {minutes:.1f} |"
        )
    own_vs_agg = [
        (m["method"]["title"], m)
        for m in result["metrics"]
        if {"own", "q_agg"} <= set(m["distributions"]["text_posteriors"])
    ]
    if own_vs_agg:
        lines += [
            "",
            "q_Agg fitted post hoc on each method's q(z|x) against the method's own q(z|y) "
            "(paired over the same texts and seeds):",
            "",
        ]
        for title, m in own_vs_agg:
            cond = m["correctness"]["conditional"]
            a, b = cond["q_agg"]["mean"], cond["own"]["mean"]
            lines.append(
                f"- {title}: q_Agg {100 * a:.1f} % vs own {100 * b:.1f} % ({100 * (a - b):+.1f} points)"
            )
    lines += _equal_time_lines(result)
    if result.get("figure"):
        lines += ["", f"![Fig. 7]({result['figure']})"]
    lines += ["", "Runs: " + ", ".join(f"`{r}`" for r in result["runs"]), ""]
    return "\n".join(lines)

"""Fig. 1 of Cremer & Kushman (2018): the text posterior versus the aggregate of image posteriors in 2-D.

A VLVAE with z ∈ R² is trained on the one-object variant of Two Objects (texts
"size colour", blue or red, small or large; paper §5.5). For two texts y, on a
grid over z:

* shading: the aggregate of the image posteriors of that text's validation
  images, (1/N) Σ_i q(z|x_i) — where images of y actually put z;
* lines: level sets of the text's true posterior p(z|y) ∝ p(y|z) p(z)
  (evaluated on the grid and normalised there), and, in two more panels,
  of the learned text posteriors q_Agg(z|y) (Eqn 5) and q_True(z|y) (Eqn 3).

The paper's claim is that p(z|y) puts mass in the holes of the aggregate —
where no image of y puts z — so sampling it gives wrong or poor images.
``fig1_latent2d.json`` states it as a number: the fraction of each
distribution's mass lying where the aggregate is below 1 % of its maximum.

Every density on the grid is handled as a probability mass per grid cell
(normalised to sum to 1 over the grid).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from torch import LongTensor, Tensor
from torch.distributions import Distribution
from zuko.distributions import DiagNormal

from vlvae.data.dataset import ImageTextDataset
from vlvae.errors import VLVAEError
from vlvae.evaluation.figures import new_figure, save_figure
from vlvae.evaluation.metrics import validation_batch
from vlvae.io import atomic_write_json
from vlvae.runs import load_text_posterior, load_vlvae, open_run

__all__ = [
    "HOLE_THRESHOLD",
    "aggregate_log_density",
    "choose_texts",
    "draw_latent2d",
    "grid_log_density",
    "hpd_levels",
    "make_grid",
    "mass_in_holes",
    "normalise_on_grid",
    "figure_latent2d",
    "text_posterior_log_density",
]

#: The aggregate is "a hole" where it is below this fraction of its maximum on the grid.
HOLE_THRESHOLD = 0.01

_LIMIT = 3.5  # the grid covers at least [-3.5, 3.5]², N(0, I)'s bulk
_POINTS = 161  # per axis; an odd count puts a grid point at z = 0
_LEVELS = (0.5, 0.9, 0.99)  # contours enclose these fractions of a distribution's mass
_STYLES = (
    {"line": "#1f3fbf", "shade": (0.12, 0.35, 0.95)},  # text 1: blue, as in the paper
    {"line": "#1a7f2e", "shade": (0.15, 0.70, 0.25)},
)  # text 2: green


def make_grid(limit: float = _LIMIT, points: int = _POINTS) -> tuple[Tensor, Tensor]:
    """A square grid over z ∈ [-limit, limit]².

    Returns:
        z: (points², 2) grid points, row-major with z[..., 1] the slow axis (row i, column j
        is z = (axis[j], axis[i]), matching ``imshow`` / ``contour`` of a (points, points) array);
        axis: (points,) coordinates along either axis.
    """
    axis = torch.linspace(-limit, limit, points)
    z2, z1 = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([z1, z2], dim=-1).reshape(-1, 2), axis


def normalise_on_grid(log_density: Tensor) -> Tensor:
    """Unnormalised log densities (M,) on grid cells -> log probability mass per cell (M,), summing to 1."""
    return log_density - torch.logsumexp(log_density, dim=0)


def _batched(fn, grid: Tensor, batch_size: int) -> Tensor:
    """``fn`` ((B, latent) -> (B,)) over grid points (M, latent) in batches of ``batch_size``: (M,)."""
    return torch.cat([fn(grid[lo : lo + batch_size]) for lo in range(0, len(grid), batch_size)])


@torch.no_grad()
def grid_log_density(model, y: LongTensor, grid: Tensor, batch_size: int = 4096) -> Tensor:
    """The true text posterior p(z|y) ∝ p(y|z) N(z; 0, I) on a grid, normalised over the grid.

    Args:
        model: anything with ``log_py(y, z)`` (y (B, L), z (B, 2) -> (B,)), e.g. a VLVAE.
        y: (L,) one text.
        grid: (M, latent) grid points (equal cells).
        batch_size: grid points per decoder call.

    Returns:
        (M,) log probability mass of each grid cell; ``exp`` sums to 1.
    """

    def log_joint(z: Tensor) -> Tensor:
        log_prior = -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        return model.log_py(y.expand(len(z), -1), z) + log_prior

    return normalise_on_grid(_batched(log_joint, grid, batch_size))


@torch.no_grad()
def aggregate_log_density(posterior: Distribution, grid: Tensor, batch_size: int = 4096) -> Tensor:
    """The mixture (1/N) Σ_i q(z|x_i) on a grid, normalised over the grid.

    Args:
        posterior: the image posteriors of N images, batch shape (N,), event (latent,).
        grid: (M, latent) grid points.

    Returns:
        (M,) log probability mass of each grid cell.
    """

    def mixture(z: Tensor) -> Tensor:
        return torch.logsumexp(posterior.log_prob(z.unsqueeze(1)), dim=1)

    return normalise_on_grid(_batched(mixture, grid, batch_size))


@torch.no_grad()
def text_posterior_log_density(
    q, y: LongTensor, grid: Tensor, batch_size: int = 4096
) -> tuple[Tensor, float]:
    """A learned text posterior q(z|y) on a grid.

    Args:
        q: a TextPosterior (callable y (B, L) -> Distribution over z, batch (B,)).
        y: (L,) one text.
        grid: (M, latent) grid points with equal cells.

    Returns:
        (M,) log probability mass per cell normalised over the grid, and the fraction of
        q's mass that lies inside the grid (its density summed times the cell area).
    """
    raw = _batched(lambda z: q(y.expand(len(z), -1)).log_prob(z), grid, batch_size)
    cell = float(grid[:, 0].unique().diff().mean() * grid[:, 1].unique().diff().mean())
    return normalise_on_grid(raw), float(torch.logsumexp(raw, 0).exp() * cell)


def mass_in_holes(log_mass: Tensor, aggregate_log_mass: Tensor, threshold: float = HOLE_THRESHOLD) -> float:
    """Fraction of a distribution's grid mass (M,) where the aggregate (M,) is below ``threshold`` ×
    its max."""
    holes = aggregate_log_mass < aggregate_log_mass.max() + math.log(threshold)
    return float(log_mass.exp()[holes].sum())


def hpd_levels(log_mass: Tensor, fractions=_LEVELS) -> list[float]:
    """Density thresholds (on the mass scale) whose super-level sets hold ``fractions`` of the mass.

    Returns increasing levels, one per fraction (largest fraction -> lowest level).
    """
    p = log_mass.exp().sort(descending=True).values
    cumulative = p.cumsum(0)
    levels = [float(p[min(int(torch.searchsorted(cumulative, f)), len(p) - 1)]) for f in fractions]
    return sorted(set(levels))


def choose_texts(texts: LongTensor, vocab, colour_slot: str = "colour") -> list[tuple[int, ...]]:
    """The two most frequent texts (N, L) that differ in the colour slot (or anywhere, without one).

    Returns the two texts as tuples of word indices, one naming "blue" first if there is one.
    """
    counts = Counter(map(tuple, texts.tolist())).most_common()
    if not counts:
        raise VLVAEError("the validation split is empty; make the data set with a validation fraction > 0")
    slot = vocab.slot_names.index(colour_slot) if colour_slot in vocab.slot_names else None
    first = counts[0][0]
    for text, _ in counts[1:]:
        if (text[slot] != first[slot]) if slot is not None else text != first:
            # The text naming blue goes first, so that it is drawn in blue (the second in green).
            return sorted([first, text], key=lambda t: "blue" not in vocab.decode(t))
    raise VLVAEError(
        "the validation texts hold only one colour; make the data with "
        "`vlvae data two-objects --objects 1 --colours blue,red`"
    )


def _shade(ax, mass: np.ndarray, colour, extent) -> None:
    """A transparent layer of one colour whose opacity follows the density (its max is opaque)."""
    rgba = np.zeros((*mass.shape, 4))
    rgba[..., :3] = colour
    # A square root keeps the tails (down to ~1 % of the max, the holes' threshold) visible.
    rgba[..., 3] = 0.85 * np.sqrt(mass / mass.max())
    ax.imshow(rgba, origin="lower", extent=extent, interpolation="bilinear")


def draw_latent2d(
    axis: Tensor, names: list[str], aggregates: list[Tensor], panels: dict, holes: dict, out: Path
) -> Path:
    """Draw Fig. 1: one panel per text posterior over the shaded image aggregates.

    Args:
        axis: (G,) grid coordinates along each axis.
        names: the two texts as strings.
        aggregates: per text, (G²,) log mass of the image-posterior aggregate.
        panels: panel title -> per text, (G²,) log mass of that text posterior.
        holes: panel title -> per text, its fraction of mass in the aggregate's holes.
        out: the PNG to write.
    """
    g = len(axis)
    lim = float(axis[-1])
    extent = (-lim, lim, -lim, lim)
    fig, axes = new_figure(1, len(panels), (4.6 * len(panels), 5.4))
    for ax, (title, per_text) in zip(axes[0], panels.items()):
        ax.set_facecolor("white")
        for k in range(len(names)):
            _shade(ax, aggregates[k].exp().view(g, g).numpy(), _STYLES[k]["shade"], extent)
        for k, log_mass in enumerate(per_text):
            mass = log_mass.exp().view(g, g).numpy()
            ax.contour(
                axis.numpy(),
                axis.numpy(),
                mass,
                levels=hpd_levels(log_mass),
                colors=_STYLES[k]["line"],
                linewidths=1.3,
            )
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=12, fontweight="bold")
        ax.set_xlabel("z₁")
        ax.set_ylabel("z₂")
        summary = "\n".join(f"'{n}': {100 * h:.0f}%" for n, h in zip(names, holes[title]))
        ax.text(
            0.02,
            0.02,
            f"mass in holes:\n{summary}",
            transform=ax.transAxes,
            fontsize=8.5,
            va="bottom",
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"},
        )
    handles = []
    for k, name in enumerate(names):
        handles.append(
            Patch(
                facecolor=(*_STYLES[k]["shade"], 0.6),
                label=f"shaded: (1/N) Σ q(z|x) over validation images of '{name}'",
            )
        )
        handles.append(
            Line2D([], [], color=_STYLES[k]["line"], lw=1.5, label=f"lines: posterior of the text '{name}'")
        )
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.suptitle(
        "Text posteriors vs the aggregate of image posteriors, z ∈ R²  (lines enclose 50/90/99 % "
        f"of the mass; holes: aggregate < {HOLE_THRESHOLD:.0%} of its max)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.14, 1, 0.95))
    return save_figure(fig, out)


@torch.no_grad()
def figure_latent2d(
    out: Path,
    data: Path,
    texts: list[str] | None = None,
    started: float | None = None,
    training_seconds: float = 0.0,
) -> Path:
    """Draw Fig. 1 from a trained z = 2 run folder ``out`` (its VLVAE, q_True and q_Agg finished).

    Training the run is the recipe's (:func:`vlvae.recipes.figure1.run_latent2d`); call this with
    the run folder's lock held.

    Args:
        out: the run folder; the figure goes to ``out/figures/fig1_latent2d.png`` and its numbers
            to ``out/figures/fig1_latent2d.json``.
        data: the one-object data set the run was trained on (named in messages).
        texts: the two texts to draw (e.g. ``["large blue", "small red"]``); default: the two most
            frequent validation texts that differ in colour.
        started: when the call that trained the run started (``time.time()``; default: now), and
        training_seconds: how long it trained; both are recorded in the figure's numbers.

    Returns:
        The figure's path.
    """
    started = time.time() if started is None else started
    trained = training_seconds
    cfg, info = open_run(out)
    model = load_vlvae(out, cfg)
    posteriors = {
        "q_Agg(z|y)": load_text_posterior(out, "agg", cfg),
        "q_True(z|y)": load_text_posterior(out, "true", cfg),
    }
    val = ImageTextDataset(Path(info["data"]), "val")
    x, y = validation_batch(val, len(val))
    if texts is None:
        chosen = choose_texts(y, val.vocab)
    else:
        if len(texts) != 2:
            raise VLVAEError(f"give exactly two texts for Fig. 1, got {len(texts)}")
        chosen = [tuple(val.vocab.encode(t)) for t in texts]
    names = [" ".join(val.vocab.strip_end(val.vocab.decode(t))) for t in chosen]
    members = [(y == torch.tensor(t)).all(-1) for t in chosen]
    for name, m in zip(names, members):
        if not m.any():
            raise VLVAEError(f"no validation image has the text '{name}'; choose texts that occur in {data}")

    posterior = model.image_posterior(x)
    mean, std = posterior.mean, posterior.stddev
    reach = float((mean.abs() + 2 * std)[torch.stack(members).any(0)].max())
    limit = max(_LIMIT, math.ceil(2 * reach) / 2)
    grid, axis = make_grid(limit)
    aggregates, true_post, learned = [], [], {k: [] for k in posteriors}
    inside = {k: [] for k in posteriors}
    for t, m in zip(chosen, members):
        aggregates.append(aggregate_log_density(DiagNormal(mean[m], std[m]), grid))
        y_t = torch.tensor(t)
        true_post.append(grid_log_density(model, y_t, grid))
        for k, q in posteriors.items():
            log_mass, frac = text_posterior_log_density(q, y_t, grid)
            learned[k].append(log_mass)
            inside[k].append(frac)
    panels = {"true posterior p(z|y)": true_post, **learned}
    holes = {
        title: [mass_in_holes(lm, agg) for lm, agg in zip(per_text, aggregates)]
        for title, per_text in panels.items()
    }

    fig_dir = out / "figures"
    path = draw_latent2d(axis, names, aggregates, panels, holes, fig_dir / "fig1_latent2d.png")
    keys = {"true posterior p(z|y)": "true_posterior", "q_Agg(z|y)": "q_agg", "q_True(z|y)": "q_true"}
    report = {
        "claim": (
            "fraction of each text distribution's mass (on the grid) lying where the aggregate of that "
            f"text's image posteriors is below {HOLE_THRESHOLD:.0%} of its maximum; the paper's claim is "
            "that p(z|y) has much mass there, and that q_Agg(z|y) has less than q_True(z|y)"
        ),
        "hole_threshold": HOLE_THRESHOLD,
        "grid": {"limit": limit, "points_per_axis": len(axis)},
        "texts": {
            name: {
                "validation_images": int(m.sum()),
                "mass_in_holes": {keys[title]: holes[title][i] for title in panels},
                "aggregate_mass_in_own_holes": mass_in_holes(aggregates[i], aggregates[i]),
                "q_mass_inside_grid": {keys[k]: inside[k][i] for k in posteriors},
            }
            for i, (name, m) in enumerate(zip(names, members))
        },
        "preset": cfg.name,
        "training_seconds_this_call": trained,
        "seconds_this_call": time.time() - started,
    }
    atomic_write_json(fig_dir / "fig1_latent2d.json", report)
    return path

"""The stages fitted on a frozen stage-1 model (stages 2-3), as one ordered table.

Each entry says what it fits (a text posterior q(z|y) or a prior q(z)), how it is trained
(the command, the config section, the seed offset, the tag of its weights, the validation
objective it maximises), and how evaluation names it (its distribution's name in the tables
and ``metrics.json``, its labels, the distribution it is paired against in paired
differences). Run folders (:mod:`vlvae.runs`), training (:mod:`vlvae.training.run`),
``reproduce``, the tables, the report and the figures read these names from here.

The fixed prior N(0, I) of every model is no stage; it is named here too
(:data:`STANDARD_PRIOR`), because the learned prior is paired against it.

A method declares which of these stages it takes (:attr:`vlvae.methods.Method.stages`).
This module imports neither training nor evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlvae.errors import VLVAEError
from vlvae.seeds import PRIOR_SEED_OFFSET, TEXT_POSTERIOR_SEED_OFFSET

__all__ = [
    "TEXT_POSTERIOR",
    "PRIOR",
    "Stage",
    "FixedPrior",
    "STANDARD_PRIOR",
    "stage_names",
    "get_stage",
    "registered_stages",
    "text_posterior_stage",
    "stages_fitting",
    "paired_distributions",
    "distribution_labels",
]

#: What a stage fits: a text posterior q(z|y), or a prior q(z).
TEXT_POSTERIOR = "text_posterior"
PRIOR = "prior"


@dataclass(frozen=True)
class Stage:
    """One stage fitted on the frozen stage-1 model.

    Attributes:
        name: its folder ``RUN/<name>`` (``.r<R>`` for replicate R), the name in ``Method.stages``.
        fits: :data:`TEXT_POSTERIOR` (q(z|y)) or :data:`PRIOR` (q(z)).
        objective: for a text posterior, its ``--objective`` (``true``: Eqn 3; ``agg``: Eqn 5); else None.
        distribution: its name in the evaluation's tables and ``metrics.json`` (e.g. ``learned`` for
            the prior).
        label: how the report's tables name it.
        figure_label: how the figures name it.
        progress_label: how ``reproduce`` names it in its progress lines.
        weights_kind: the tag stored with its weights (weights of another kind are refused).
        config_section: the section of the run's config with its settings (``cfg.<section>``).
        seed_offset: added to the run's seed (and 1000 per replicate) to seed its fit (:mod:`vlvae.seeds`).
        command: the command that trains it, ``{run}`` standing for the run folder.
        monitor: the validation metric its fit maximises (early stopping, the stopping figure).
        curve_title: the title of its panel in the stopping figure.
        paired_against: the distribution it is compared with in paired differences, or None.
        draw_order: figures draw the distributions of one kind in increasing order of this.
    """

    name: str
    fits: str
    objective: str | None
    distribution: str
    label: str
    figure_label: str
    progress_label: str
    weights_kind: str
    config_section: str
    seed_offset: int
    command: str
    monitor: str
    curve_title: str
    paired_against: str | None = None
    draw_order: int = 0

    @property
    def lock_command(self) -> str:
        """The command's name without its options (e.g. ``vlvae train prior``), as the run's lock
        records it."""
        return self.command.split(" --", 1)[0]

    def make(self, run: Path, replicate: int = 0) -> str:
        """The command line that trains replicate R of this stage in ``run``."""
        return self.command.format(run=run) + (f" --replicates {replicate + 1}" if replicate else "")


@dataclass(frozen=True)
class FixedPrior:
    """A prior that is part of every model and never fitted: N(0, I).

    Attributes:
        distribution: its name in the evaluation's tables and ``metrics.json``.
        label: how the report's tables name it.
        figure_label: how the figures name it.
    """

    distribution: str
    label: str
    figure_label: str


#: The standard normal prior p(z) = N(0, I) of stage 1.
STANDARD_PRIOR = FixedPrior(distribution="standard", label="p(z) = N(0, I)", figure_label="prior N(0, I)")

#: The registered stages, in the order they are trained, tabulated and reported.
_REGISTRY = (
    Stage(
        name="q_true",
        fits=TEXT_POSTERIOR,
        objective="true",
        distribution="q_true",
        label="q_True(z|y)",
        figure_label="q_True(z|y)",
        progress_label="q_True",
        weights_kind="text_posterior",
        config_section="text_posterior",
        seed_offset=TEXT_POSTERIOR_SEED_OFFSET,
        command="vlvae train text-posterior --run {run} --objective true",
        monitor="val/text_elbo",
        curve_title="q_True(z|y): text ELBO (Eqn 3)",
        draw_order=1,
    ),
    Stage(
        name="q_agg",
        fits=TEXT_POSTERIOR,
        objective="agg",
        distribution="q_agg",
        label="q_Agg(z|y)",
        figure_label="q_Agg(z|y)",
        progress_label="q_Agg",
        weights_kind="text_posterior",
        config_section="text_posterior",
        seed_offset=TEXT_POSTERIOR_SEED_OFFSET,
        command="vlvae train text-posterior --run {run} --objective agg",
        monitor="val/cross_entropy",
        curve_title="q_Agg(z|y): E_q(z|x) log q(z|y) (Eqn 5)",
        paired_against="q_true",
        draw_order=0,
    ),
    Stage(
        name="prior",
        fits=PRIOR,
        objective=None,
        distribution="learned",
        label="q_φ(z)",
        figure_label="learned prior q_φ(z)",
        progress_label="prior",
        weights_kind="aggregate_prior",
        config_section="prior",
        seed_offset=PRIOR_SEED_OFFSET,
        command="vlvae train prior --run {run}",
        monitor="val/cross_entropy",
        curve_title="q_φ(z): E_q(z|x) log q(z)",
        paired_against=STANDARD_PRIOR.distribution,
        draw_order=0,
    ),
)
_BY_NAME = {stage.name: stage for stage in _REGISTRY}


def stage_names() -> tuple[str, ...]:
    """The registered stages' names, in order."""
    return tuple(_BY_NAME)


def registered_stages() -> tuple[Stage, ...]:
    """The registered stages, in order."""
    return _REGISTRY


def get_stage(name: str) -> Stage:
    """The registered stage called ``name``; one clear line if there is none."""
    if name not in _BY_NAME:
        raise VLVAEError(
            f"unknown stage {name!r}; the stages fitted on a frozen model are {', '.join(_BY_NAME)}"
        )
    return _BY_NAME[name]


def stages_fitting(fits: str) -> tuple[Stage, ...]:
    """The registered stages that fit :data:`TEXT_POSTERIOR` or :data:`PRIOR`, in order."""
    return tuple(stage for stage in _REGISTRY if stage.fits == fits)


def text_posterior_stage(objective: str) -> Stage:
    """The text posterior fitted with ``--objective objective``; one clear line if there is none."""
    for stage in stages_fitting(TEXT_POSTERIOR):
        if stage.objective == objective:
            return stage
    choices = " or ".join(repr(stage.objective) for stage in stages_fitting(TEXT_POSTERIOR))
    raise VLVAEError(f"--objective must be {choices}, got {objective!r}")


def paired_distributions() -> tuple[tuple[str, str], ...]:
    """(distribution, the one it is paired against) for every stage that declares a pair, in order."""
    return tuple(
        (stage.distribution, stage.paired_against) for stage in _REGISTRY if stage.paired_against is not None
    )


def distribution_labels(fits: str, figure: bool = False) -> dict[str, str]:
    """Distribution name -> label of the text posteriors or the priors, in the order figures draw them.

    Priors start with :data:`STANDARD_PRIOR`. ``figure`` picks the figures' labels over the tables'.
    """
    labels = {}
    if fits == PRIOR:
        labels[STANDARD_PRIOR.distribution] = STANDARD_PRIOR.figure_label if figure else STANDARD_PRIOR.label
    for stage in sorted(stages_fitting(fits), key=lambda stage: stage.draw_order):
        labels[stage.distribution] = stage.figure_label if figure else stage.label
    return labels

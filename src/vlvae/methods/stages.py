"""The stages fitted on a frozen stage-1 model (stages 2-3), as one ordered table.

Each entry says what it fits (a text posterior q(z|y) or a prior q(z)), how it is trained
(its objective, a function of :mod:`vlvae.objectives`, and the metric it is logged as; the
command, the config section, the seed offset, the tag of its weights), how commands and the web
page choose it (``--objective``, ``--posterior``, ``--prior``, the page's menus), and how
evaluation names it (its distribution's name in the tables and ``metrics.json``, its labels, the
distribution it is paired against in paired differences). Run folders (:mod:`vlvae.runs`),
training (:mod:`vlvae.training.run`, whose Lightning task is the one for what the stage fits:
:data:`vlvae.training.tasks.STAGE_TASKS`), the CLI's choices, :mod:`vlvae.inference` and the web
page, ``reproduce``, the tables, the report and the figures read these names from here: a new
text posterior is one entry (and its objective in :mod:`vlvae.objectives`).

The fixed prior N(0, I) of every model is no stage; it is named here too
(:data:`STANDARD_PRIOR`), because the learned prior is paired against it.

A method declares which of these stages it takes (:attr:`vlvae.methods.Method.stages`).
This module imports neither training nor evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vlvae.errors import VLVAEError
from vlvae.objectives import (
    aggregate_posterior_objective,
    aggregate_prior_objective,
    true_posterior_objective,
)
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
    "choices",
    "validation_stages",
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
        choice: how commands and the web page choose it: a text posterior's ``--objective`` and
            ``--posterior`` (``true``: Eqn 3; ``agg``: Eqn 5), a prior's ``--prior`` (``learned``).
        distribution: its name in the evaluation's tables and ``metrics.json`` (e.g. ``learned`` for
            the prior).
        label: how the report's tables name it.
        figure_label: how the figures name it.
        progress_label: how ``reproduce`` names it in its progress lines.
        weights_tag: the tag stored with its weights (weights with another tag are refused).
        config_section: the section of the run's config with its settings (``cfg.<section>``).
        seed_offset: added to the run's seed (and 1000 per replicate) to seed its fit (:mod:`vlvae.seeds`).
        command: the command that trains it, ``{run}`` standing for the run folder.
        objective: what its fit maximises, per example (a :data:`vlvae.objectives.StageObjective`).
        metric: the name its objective is logged as (``train/<metric>``, ``val/<metric>``).
        curve_title: the title of its panel in the stopping figure.
        paired_against: the distribution it is compared with in paired differences, or None.
        draw_order: figures, the web page's columns and the commands' lists show the distributions
            that fit the same (text posteriors, priors) in increasing order of this.
        validation_rank: a text posterior's validation pass computes the objective of every text
            posterior (one per metric), in increasing order of this (ties: registry order); each
            draws its own noise, so the order is fixed for the curves to stay those of earlier runs.
        menu_label: how the web page's columns name it (default: ``label``).
    """

    name: str
    fits: str
    choice: str
    distribution: str
    label: str
    figure_label: str
    progress_label: str
    weights_tag: str
    config_section: str
    seed_offset: int
    command: str
    objective: Callable
    metric: str
    curve_title: str
    paired_against: str | None = None
    draw_order: int = 0
    validation_rank: int = 0
    menu_label: str | None = None

    @property
    def monitor(self) -> str:
        """The validation metric its fit maximises (early stopping, the stopping figure)."""
        return f"val/{self.metric}"

    @property
    def column_label(self) -> str:
        """How the web page's columns name it."""
        return self.menu_label or self.label

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
        menu_label: how the web page's columns name it.
    """

    distribution: str
    label: str
    figure_label: str
    menu_label: str

    @property
    def choice(self) -> str:
        """How commands and the web page choose it (``--prior``): its distribution's name."""
        return self.distribution

    @property
    def column_label(self) -> str:
        return self.menu_label


#: The standard normal prior p(z) = N(0, I) of stage 1.
STANDARD_PRIOR = FixedPrior(
    distribution="standard", label="p(z) = N(0, I)", figure_label="prior N(0, I)", menu_label="N(0, I)"
)

#: The registered stages, in the order they are trained, tabulated and reported.
_REGISTRY = (
    Stage(
        name="q_true",
        fits=TEXT_POSTERIOR,
        choice="true",
        distribution="q_true",
        label="q_True(z|y)",
        figure_label="q_True(z|y)",
        progress_label="q_True",
        weights_tag="text_posterior",
        config_section="text_posterior",
        seed_offset=TEXT_POSTERIOR_SEED_OFFSET,
        command="vlvae train text-posterior --run {run} --objective true",
        objective=true_posterior_objective,
        metric="text_elbo",
        curve_title="q_True(z|y): text ELBO (Eqn 3)",
        draw_order=1,
        validation_rank=1,
    ),
    Stage(
        name="q_agg",
        fits=TEXT_POSTERIOR,
        choice="agg",
        distribution="q_agg",
        label="q_Agg(z|y)",
        figure_label="q_Agg(z|y)",
        progress_label="q_Agg",
        weights_tag="text_posterior",
        config_section="text_posterior",
        seed_offset=TEXT_POSTERIOR_SEED_OFFSET,
        command="vlvae train text-posterior --run {run} --objective agg",
        objective=aggregate_posterior_objective,
        metric="cross_entropy",
        curve_title="q_Agg(z|y): E_q(z|x) log q(z|y) (Eqn 5)",
        paired_against="q_true",
        draw_order=0,
    ),
    Stage(
        name="prior",
        fits=PRIOR,
        choice="learned",
        distribution="learned",
        label="q_φ(z)",
        figure_label="learned prior q_φ(z)",
        progress_label="prior",
        weights_tag="aggregate_prior",
        config_section="prior",
        seed_offset=PRIOR_SEED_OFFSET,
        command="vlvae train prior --run {run}",
        objective=aggregate_prior_objective,
        metric="cross_entropy",
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
        if stage.choice == objective:
            return stage
    allowed = " or ".join(repr(stage.choice) for stage in stages_fitting(TEXT_POSTERIOR))
    raise VLVAEError(f"--objective must be {allowed}, got {objective!r}")


def choices(fits: str) -> dict[str, Stage | FixedPrior]:
    """How commands and the web page choose a text posterior or a prior: choice -> the stage (or, for
    priors, first :data:`STANDARD_PRIOR`), in the order of ``draw_order`` (``agg`` before ``true``)."""
    entries: list[Stage | FixedPrior] = [STANDARD_PRIOR] if fits == PRIOR else []
    entries += sorted(stages_fitting(fits), key=lambda stage: stage.draw_order)
    return {entry.choice: entry for entry in entries}


def validation_stages() -> tuple[Stage, ...]:
    """The text posteriors whose objectives a text posterior's validation pass computes, one per
    metric, in the order it computes them (``validation_rank``, then registry order)."""
    first: dict[str, Stage] = {}
    for stage in sorted(stages_fitting(TEXT_POSTERIOR), key=lambda stage: stage.validation_rank):
        first.setdefault(stage.metric, stage)
    return tuple(first.values())


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

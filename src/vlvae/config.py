"""Typed experiment configuration with named presets (``paper``, ``cpu``, ``cpu-long``, ``quick``, ``tiny``).

One :class:`ExperimentConfig` describes a whole run: the data to generate, the
method (:class:`~vlvae.methods.MethodConfig`: the paper's VLVAE or a baseline, with the knobs its
method declares, :mod:`vlvae.methods`), the
VLVAE and its training (stage 1), the text posteriors q_True and q_Agg
(stage 2), the aggregate prior (stage 3), the classifier and the evaluation.
``--set key=value`` overrides any field; an unknown key is an error.

The hardware and logging keys (:data:`HARDWARE_KEYS`: ``accelerator``, ``devices``, ``num_nodes``,
``strategy``, ``precision``, ``num_workers``, ``logger``) say how a run is computed and recorded, not
what it computes: they are not part of a run's identity (:func:`identity_differences`), so a run
folder made on one device resumes on four, with another precision, or with another logger. Every
stage's ``batch_size`` is the global batch, split over the ``devices × num_nodes`` processes of a
distributed fit; a batch that is not a multiple of that number is refused
(:func:`check_global_batches`). The values Lightning accepts for ``accelerator``, ``strategy`` and
``precision`` are stated here (:data:`ACCELERATORS`, :data:`STRATEGIES`, :data:`PRECISIONS`) and
checked against Lightning by the tests, so that reading a config needs no Lightning. The optional
experiment loggers are :data:`LOGGERS`; the training commands check that their package is there.

Its floor: above :mod:`vlvae.models` (it holds the model's :class:`~vlvae.models.config.ModelConfig`
and checks its choices) and :mod:`vlvae.methods` (it checks ``method.name`` against the method
registry), below :mod:`vlvae.runs` and :mod:`vlvae.training`. So the methods take their config
as an argument and never import this module; the learning-rate schedules' names
(:data:`LR_SCHEDULES`) are defined here and read by :mod:`vlvae.training.schedule`.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path

from omegaconf import OmegaConf

from vlvae.errors import VLVAEError
from vlvae.io import atomic_write_text
from vlvae.methods import MethodConfig, get_method, knob_names, method_config, method_names
from vlvae.models.config import ARCHITECTURES, NORMS, POSTERIOR_FAMILIES, ModelConfig

__all__ = [
    "LR_SCHEDULES",
    "ACCELERATORS",
    "STRATEGIES",
    "PRECISIONS",
    "RUN_PRECISION",
    "LOGGERS",
    "HARDWARE_KEYS",
    "AUTO_DEVICES",
    "DataConfig",
    "StageConfig",
    "MethodConfig",
    "ClassifierConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "PRESETS",
    "preset",
    "cpu_recipe",
    "apply_overrides",
    "split_method_overrides",
    "RENAMED_SECTIONS",
    "RENAMED_STAGE_KEYS",
    "knob_of",
    "with_method",
    "validate_config",
    "stage_budget",
    "check_option",
    "MAX_STEPS",
    "MAX_LIKELIHOOD_WEIGHT",
    "MAX_IMPORTANCE_SAMPLES",
    "save_config",
    "load_config",
    "world_size_of",
    "check_global_batches",
    "identity_differences",
    "record_differences",
    "with_hardware",
    "apply_hardware_overrides",
    "single_process",
]


#: The learning-rate schedules a stage may use (``lr_schedule``; :mod:`vlvae.training.schedule`):
#: the paper's exponential decay, or linear warm-up with cosine decay.
LR_SCHEDULES = ("exponential", "cosine")

#: ``accelerator``: Lightning's accelerator names (``gpu`` is its alias of ``cuda`` or ``mps``), and
#: ``auto`` (Lightning picks one). tests/test_config.py checks each against Lightning's registry.
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
#: ``strategy``: ``auto`` (one process per device, DDP when there are several: Lightning's choice),
#: ``ddp`` (DistributedDataParallel, one process per device), or ``ddp_find_unused_parameters_true``
#: (DDP for a model with parameters a step may leave unused). Not offered: ``ddp_spawn`` and its kin
#: (the fit runs in spawned processes, so the callbacks' state, e.g. the best validation pass, never
#: returns to the command), FSDP and DeepSpeed (sharded checkpoints, which ``--resume`` cannot read).
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true")
#: ``precision``: Lightning's precision names that train here: ``32-true`` (full), ``bf16-mixed`` and
#: ``16-mixed`` (automatic mixed precision; on the CPU Lightning runs ``16-mixed`` as ``bf16-mixed``),
#: and Lightning's older aliases ``32``, ``16``, ``bf16``. Not offered: ``64-true``, ``bf16-true`` and
#: ``16-true`` (every weight in that type, while the steps convert images to float32, which such
#: networks refuse), and ``transformer-engine`` (it needs NVIDIA's Transformer Engine package).
#: tests/test_config.py builds a Lightning Trainer with each.
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "32", "16", "bf16")
#: A judge's ``precision`` (:class:`ClassifierConfig`) that defers to the run's ``precision``.
RUN_PRECISION = "run"
#: ``logger``: an experiment logger beside the CSV and TensorBoard logs every stage writes into
#: ``STAGE/logs/`` (``none``: those two only). ``wandb`` (Weights & Biases) and ``mlflow`` need their
#: package (``pip install 'vlvae[wandb]'``, ``'vlvae[mlflow]'``); a training command checks it
#: before it writes anything (:func:`vlvae.training.run.check_logger`).
LOGGERS = ("none", "wandb", "mlflow")
#: ``devices``: a positive number of devices per node, or this word: every device Lightning finds.
AUTO_DEVICES = "auto"
#: The hardware and logging keys: how a run is computed and recorded, not what it computes (top-level
#: keys of :class:`ExperimentConfig`). They are not part of a run's identity: a run folder reopened
#: with other values of these keys is the same run (:func:`identity_differences`).
HARDWARE_KEYS = ("accelerator", "devices", "num_nodes", "strategy", "precision", "num_workers", "logger")


@dataclass
class DataConfig:
    """Data-set generation settings used by ``vlvae reproduce`` (Two Objects)."""

    n: int = 100_000
    size: int = 112
    val_fraction: float = 0.1
    #: round(test_fraction · n) further pairs form the test split the tables score (docs/design.md §6).
    test_fraction: float = 0.1
    zoom: float = 1.0
    supersample: int = 2
    seed: int = 0


@dataclass
class StageConfig:
    """How one training stage is optimised.

    Attributes:
        steps: optimisation steps (the budget is in steps, not epochs).
        batch_size: examples per step, over all processes: the global batch. A distributed fit
            splits it over its ``devices × num_nodes`` processes, each taking its slice, so it must be
            a multiple of that number (:func:`check_global_batches`).
        lr, weight_decay: Adam's.
        lr_decay: multiplicative learning-rate decay per step (``exponential`` schedule).
        lr_schedule: ``exponential`` (the paper's, ``lr_decay`` per step) or ``cosine``
            (warm-up, then half a cosine down to ``lr_final_factor`` · lr at ``steps``).
        lr_warmup_steps: steps of linear learning-rate warm-up (both schedules).
        lr_final_factor: the cosine schedule's final multiplier of ``lr``.
        kl_warmup_steps: steps over which the KL weight rises linearly from 0 to 1 (stage 1).
        w_x, w_y: likelihood weights of the image and text terms (stage 1, docs/design.md §3).
        posterior_family: the family of the distribution stages 2-3 fit: ``flow`` (the paper's) or
            ``gaussian`` (a diagonal-Gaussian baseline); ``kind`` in configs written before.
        val_every: steps between validation passes.
        val_examples: validation examples scored at each pass.
        checkpoint_every: steps between checkpoints (``last.ckpt``); a stage with ``patience``
            checkpoints after every validation pass instead (so a resumed fit stops where an
            uninterrupted one does).
        max_minutes: stop after this wall time (0 = no limit), as a budget besides ``steps``.
        patience: stages 2-3 only: stop after this many validation passes without an
            improvement of the validation objective by more than ``min_delta`` (0 = never; then
            ``steps`` alone ends training); the weights of the best pass are kept.
        min_delta: the smallest change of the validation objective (nats) that counts as improving.
        decoder_steps: stage 1 of the VLVAE only: after its ``steps`` (which train the whole model),
            this many more steps train the image decoder alone (docs/design.md §5 and §8.2, "The
            image decoder trained alone"): z ~ q(z|x) from the encoder as it stands and the shared
            decoder's features held fixed, so the objective's gradient reaches the image decoder
            only; the stage's learning-rate schedule starts again for them (no warm-up). 0 (the
            default): none.
    """

    steps: int = 400_000
    batch_size: int = 20
    lr: float = 4e-4
    weight_decay: float = 1e-7
    lr_decay: float = 0.999995
    lr_schedule: str = "exponential"
    lr_warmup_steps: int = 0
    lr_final_factor: float = 0.0
    kl_warmup_steps: int = 20_000
    w_x: float = 0.02
    w_y: float = 200.0
    posterior_family: str = "flow"
    val_every: int = 5_000
    val_examples: int = 1_000
    checkpoint_every: int = 5_000
    max_minutes: float = 0.0
    patience: int = 0
    min_delta: float = 0.0
    decoder_steps: int = 0


@dataclass
class ClassifierConfig:
    """The independent attribute classifier (docs/design.md §6).

    ``lr_schedule``, ``lr_warmup_steps`` and ``lr_final_factor`` as in :class:`StageConfig`
    (the default, ``exponential`` without decay, is a constant learning rate); ``arch``, ``norm``,
    ``base_channels``, ``n_downsample`` and ``n_res_blocks`` size its image encoder as in
    :class:`vlvae.models.config.ModelConfig`. ``precision`` is the judge's own Lightning precision
    (one of :data:`PRECISIONS`), or ``run`` (:data:`RUN_PRECISION`, the default) for the run's
    ``precision``: a judge is trained once and read in float32, so it may train under bf16-mixed
    where the models it scores do not (docs/design.md §8.2). Unlike the run's ``precision`` (a
    hardware key), it is part of what a run computes: a run folder or judge folder made with another
    value is another run (refused, the key named), and later stages cannot override it. With ``run``
    the judge trains under the run's precision, which its folder does not record.
    """

    steps: int = 20_000
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "exponential"
    lr_warmup_steps: int = 0
    lr_final_factor: float = 0.0
    arch: str = "cyclegan"
    norm: str = "batch"
    base_channels: int = 32
    n_downsample: int = 2
    n_res_blocks: int = 2
    min_accuracy: float = 0.9
    precision: str = RUN_PRECISION


@dataclass
class EvaluationConfig:
    """Tables 1-3: how many validation examples, importance samples and seeds.

    ``k`` importance samples from q(z|x) bound log p(x|y) and log p(x); log p(y) is estimated
    at k = 1, 10, ..., ``text_k`` with a proposal that depends on y alone. Table 3 draws
    ``landing_reference`` samples of the aggregate posterior to set its hole threshold.
    """

    examples: int = 10_000
    k: int = 100
    micro_batch: int = 100
    seeds: int = 3
    text_k: int = 1000
    landing_reference: int = 2000


@dataclass
class ExperimentConfig:
    """A whole run: data, the method, model, the three training stages (``stage1``: the VLVAE or
    the method's stage-1 model; ``text_posterior``; ``prior``), the two judges (``classifier``: the
    data set's attribute classifier; ``caption_judge``: the text-reading judge of docs/design.md §11,
    its fit and image encoder) and evaluation.

    The hardware and logging keys (:data:`HARDWARE_KEYS`; not part of a run's identity, docs/gpus.md):

    Attributes:
        num_workers: data-loader processes per training process (0: load in the training process).
        accelerator: Lightning's accelerator, one of :data:`ACCELERATORS` (``auto``: Lightning picks).
        devices: devices per node for the training stages: a positive number, or ``auto`` (every
            device Lightning finds on the node). The judges (classifiers) train in one process.
        num_nodes: machines (nodes) of a distributed fit; its processes number ``devices × num_nodes``
            (the world size), over which every stage's ``batch_size`` is split.
        strategy: how Lightning runs several processes, one of :data:`STRATEGIES`.
        precision: Lightning's precision, one of :data:`PRECISIONS` (e.g. ``bf16-mixed``).
        logger: an experiment logger beside CSV and TensorBoard, one of :data:`LOGGERS`.
    """

    name: str = "paper"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    model: ModelConfig = None  # type: ignore[assignment]
    stage1: StageConfig = field(default_factory=StageConfig)
    text_posterior: StageConfig = field(
        default_factory=lambda: StageConfig(steps=100_000, val_every=5_000, kl_warmup_steps=0)
    )
    prior: StageConfig = field(
        default_factory=lambda: StageConfig(steps=100_000, val_every=5_000, kl_warmup_steps=0)
    )
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    caption_judge: ClassifierConfig = field(default_factory=ClassifierConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    num_workers: int = 0
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    logger: str = "none"

    def __post_init__(self):
        if self.model is None:
            self.model = ModelConfig()


def _paper() -> ExperimentConfig:
    """docs/design.md §5 exactly: 112 px, z = 50, batch 20, 400k steps, Adam 4e-4, 20k-step warm-up."""
    return ExperimentConfig(name="paper")


def cpu_recipe() -> ExperimentConfig:
    """The 2-core recipe that ``quick`` and CelebA's ``celeba-cpu`` build on, and ``cpu`` with four
    later settings (:func:`_cpu`; ``cpu-long`` builds on ``cpu``): the whole Two Objects pipeline in
    40.4 minutes alone from a clean clone of 8254cb7 on a fast day.

    Why each number (measured on the 2-core development machine with
    ``benchmarks/train_throughput.py`` and ``benchmarks/profile_step.py``; see the README):

    - data: 100,000 pairs at 64 x 64 render in about 2.5 minutes (~700 images/s), so
      stage 1 sees each training image about 9 times rather than 40 times a set of 30,000;
      zoom 1.8 makes a small object about 9 px wide (docs/design.md §8: shapes fail at ~8 px).
    - model: ``arch="strided"`` instead of the paper's CycleGAN-style networks, which kept
      the same budget at 127-142 images/s: stride-2 4x4 convolutions with batch norm and
      nothing at full resolution train at ~775 images/s with 16 base channels (~360/s with
      32). In short runs, per image seen, 16 and 32 channels and batch 32 or 64 learned alike
      (and lr 2e-3 no faster), so the cheapest wins. Batch norm over group norm: group norm
      was 2-3x cheaper per layer but learned slower (classifier 72 vs 86 % at 1,500 steps).
      z = 32 as in the calibration probe; width-250 shared MLPs and a 128-wide GRU.
      Coordinate channels on (docs/design.md §8.2): in a 3,000-step stage 1 with the same seed and
      judge, reconstructions scored 55.0 % against 50.5 % without them (and log p(x|z) +176 nats),
      while 2-core throughput fell by 0-15 % (521-601 against 589-638 images/s, noisy), so they win
      per CPU-second too (``benchmarks/stage1_levers.py``). At the full 10,000 steps the gain was
      gone (69.7 % against 69.6 %, one seed each; 950-982 against 1,089-1,095 images/s the same
      hour), and at cpu-long's 30,000 steps too (77.9 % with them, 78.7 % without). What they
      buy is stability: without them that run collapsed four times in its first 11,000 steps
      (KL up to 461 nats, correctness down to 36 %) before recovering. They stay on for that and
      because every measured table was trained with them (design §8.2). No spatial-broadcast
      first stage (``model.broadcast_side=8``): at the full schedule it trailed by 11.3 points
      after 5,000 steps (51.2 against 62.5 %) at the same speed (design §8.2). The encoder no
      wider than the decoder (``model.encoder_channels`` unset): 32 channels in q(z|x)'s encoder
      alone ended level in the ``cpu`` preset's stage 1 (74.2 against 74.3 % at 10,000 steps) in
      1.4 times the minutes, shapes still at chance (design §8.2).
    - stage 1: 10,000 steps of 64, a budget in steps so that the result does not depend on the
      machine's speed or load (a wall-clock cap is opt-in: ``stage1.max_minutes``). This
      2-core machine has trained it at 346-946 images/s on different days (``benchmarks/
      train_throughput.py --preset cpu --stage vlvae``), so 10,000 steps take 11-31 minutes;
      the earlier 13,000 steps with a 22-minute cap stopped at 7,467-12,634 steps depending
      on the load. Full precision (``32-true``): under ``bf16-mixed`` the ``cpu`` preset's stage 1
      took 78 % of the minutes on this machine's bf16 instructions but ended 2.0 points lower, level
      with float32's curve at that minute (its gain per CPU-second unsettled; design §8.2). Adam lr
      1e-3 with a
      200-step warm-up and a cosine decay to 5 % (batch norm's running statistics lag behind
      fast-changing weights, so the learning rate must end low); lr 3e-3 made the text term
      diverge. KL warm-up 1,000 steps. w_y = 200 as the authors': w_y = 1,000 (on the cpu preset,
      w_x = 0.3) ended 10.3 points lower (64.0 against 74.3 %) with no more shape in z (a probe of
      q(z|x)'s means names it at 63.4 against 62.8 %; docs/design.md §8.2). w_x = 0.1: w_x = 0.3 and 1 scored
      46.6 and 46.5 % at 3,000 steps against 53.1 % (more KL, less log p(x|z): design §8.2); the
      full budget turns that for w_x = 0.3 (:func:`_cpu`). Four stride-2 stages without residual
      layers: three stages (49.7 %) and one residual layer per stage (48.7 %, 17 % fewer images/s)
      learned slower in the 3,000-step test.
    - stages 2-3: cheap once q(z|x) is tabulated (q_Agg ~30, prior ~40, q_True ~16 steps/s of 128).
      Each trains until its validation objective (1,000 held-out validation examples, checked every
      250 steps) has not improved by 0.01 nats for 6 passes, capped at 10,000 steps; the best
      pass's weights are kept. With a fixed 3,000 steps q_Agg and the prior were still improving.
      The flows keep the paper's 50-wide coupling networks here (``cpu`` widens them: :func:`_cpu`).
    - classifier: the strided encoder with 32 base channels and batch norm, 15,000 steps of 64
      with a cosine decay (3,000 steps reached 96.6 % real accuracy, shape 89 %; the CycleGAN-
      style judge of the earlier preset reached 87.5 %, shape 62 %). At 5,000 steps it read the
      shapes of real validation images at 92.9 %, missing small objects and close pairs (cube
      against cylinder); at 15,000 at 96.5 %, every slot >= 95 % (docs/design.md §8.2), for about 7
      more minutes. Chosen for the judge's own validation accuracy (the cpu test tables read with
      it were seen before it was adopted here: docs/results.md).
    - caption judge: the same network and fit at 5,000 steps (4.4 minutes; real texts 58.6 % word
      accuracy, 66.1 % at 15,000 steps for 7 more minutes the 45-minute budget does not have).
    - data: 10 % more pairs (10,000) form the test split the tables score.
    - evaluation: 1,000 test texts, 3 seeds, k = 20.
    """
    cfg = ExperimentConfig(name="cpu")
    cfg.data = DataConfig(n=100_000, size=64, val_fraction=0.1, zoom=1.8, supersample=2)
    cfg.model = ModelConfig(
        image_size=64,
        arch="strided",
        norm="batch",
        coord_channels=True,
        base_channels=16,
        n_downsample=4,
        n_res_blocks=0,
        encoding_dim=200,
        embedding_dim=64,
        text_hidden=128,
        latent_dim=32,
        shared_hidden=250,
        decoder_dim=200,
    )
    cfg.stage1 = StageConfig(
        steps=10_000,
        batch_size=64,
        lr=1e-3,
        lr_schedule="cosine",
        lr_warmup_steps=200,
        lr_final_factor=0.05,
        kl_warmup_steps=1_000,
        w_x=0.1,
        w_y=200.0,
        val_every=500,
        val_examples=512,
        checkpoint_every=500,
    )
    cfg.text_posterior = StageConfig(
        steps=10_000,
        batch_size=128,
        lr=1e-3,
        lr_schedule="cosine",
        lr_warmup_steps=100,
        lr_final_factor=0.05,
        kl_warmup_steps=0,
        val_every=250,
        val_examples=1_000,
        checkpoint_every=500,
        patience=6,
        min_delta=0.01,
    )
    cfg.prior = replace(cfg.text_posterior)
    cfg.classifier = ClassifierConfig(
        steps=5_000,
        batch_size=64,
        lr=1e-3,
        lr_schedule="cosine",
        lr_warmup_steps=100,
        lr_final_factor=0.02,
        arch="strided",
        norm="batch",
        base_channels=32,
        n_downsample=4,
        n_res_blocks=0,
        min_accuracy=0.9,
    )
    cfg.caption_judge = replace(cfg.classifier)
    cfg.classifier = replace(cfg.classifier, steps=15_000)
    cfg.evaluation = EvaluationConfig(examples=1_000, k=20, micro_batch=20, seeds=3)
    return cfg


def _cpu() -> ExperimentConfig:
    """Reduced scale for a 2-core CPU: the recipe of :func:`cpu_recipe` with the image term weighted
    w_x = 0.3, 200-wide coupling networks in the flows of stages 2-3, the prior trained 30,000
    steps, the classifier trained under bf16-mixed and stage 1 followed by 4,000 steps on the image
    decoder alone, in about 61-77 minutes by the machine's speed (76.4 measured from nothing in one go
    at 72f3f56 on a slow day, whose unchanged stages ran 1.2-1.5 times slower than d94e5f4's; 57.3
    measured from nothing at d94e5f4 before the decoder's steps, which took 3.95 minutes more; with
    the float32 classifier 69.9 at fe79f8c and 61.4 at ee06ba1 on a faster day; the recipe alone
    took 40.4 on the fastest day measured).

    - w_x = 0.3 (the recipe's 0.1): at 3,000 steps it scored 46.6 % against 53.1 % (design §8.2),
      but at the full 10,000 steps it ends ahead (validation 74.3-74.4 against 69.8 %, about 600
      more nats of log p(x|z); test reconstructions 75.0-75.1 against 69.3 %, colour 81.5 against 68.0 %
      at seed 0; at a second VLVAE seed 70.4-74.3 against 69.1 %), and w_x = 1 ends below it (72.9 %, a
      weaker text term).
    - flows 200 wide (``model.flow_hidden``; the paper's 50): on the w_x = 0.3 VLVAE every 50-wide
      fit of stages 2-3 reached the 10,000-step cap still improving and q_Agg's samples read 58.4 %;
      200-wide ones fit the same codes better (validation E log q(z|y) -13.4 against -18.1 nats) and
      read 59.2-64.6 % (q_Agg - q_True +12.8 to +17.9 points, four VLVAEs) for about three more
      minutes. Training the 50-wide q_Agg twice as long bought half of that in more minutes.
    - the prior 30,000 steps (the others' 10,000): at 10,000 it still improved at its cap and
      q_phi(z) - N(0, I) read +9.30/+9.35 at the two VLVAE seeds; at 20,000 (the preset from 57a0bdb)
      its validation objective was 1.4-1.6 nats better and the difference +10.90/+9.74 from a clean
      clone; at 30,000 another 0.7 nats and +11.76/+10.17 on the same two VLVAEs (+10.96 on
      average), for about 2-3 more minutes than 20,000 (2.9 and 2.2 in reproduce runs). Its fits
      still end near their caps.

    - the classifier (the judge) trains under bf16-mixed (``classifier.precision``; the models it
      scores keep float32): on this CPU's bf16 instructions it read real validation images at 98.73 %
      (shapes 96.3 %, every slot >= 95 %) against 98.74 % (96.5 %) in float32, in 8.9 against 13.4
      training minutes (stop 44, design §8.2); in the clean-clone run of d94e5f4 the stage took 10.4
      minutes against 13.7 at ee06ba1. The caption judge keeps float32: under bf16-mixed its
      word accuracy on real texts fell to 51.7 % against 58.6 % (194 against 283 seconds; stop 45).

    - stage 1's 10,000 steps are followed by 4,000 on the image decoder alone
      (``stage1.decoder_steps``, stop 46; design §5 and §8.2, "The image decoder trained alone"): the
      10,000 are the earlier preset's stage 1 to the bit, so q(z|x), p(y|z) and the models of
      stages 2-3 are unchanged; the decoder's steps lifted validation correctness from 73.6 to 77.5 %
      (seed 0) and 73.0 to 75.0 % (seed 1) in about 4 minutes (1,080 images/s against the whole
      model's 700), where 12,600 steps of the whole model in the same minutes ended at 76.4 % (seed
      0; its text term better, log p(y|z) -3.21 against -3.56 nats, its q(z|x) another).
      Test tables (seen before adoption): reconstructions 77.87 against 74.98 %, q_Agg 66.80 against
      64.90, q_phi(z) - N(0, I) +11.88 against +11.03 at seed 0; 76.68 against 73.91, 64.08 against
      62.68 and +10.15 against +9.32 at seed 1 (the same judge).

    Each was chosen on validation figures (stage 1's correctness, the flows' objective, the judge's
    accuracy on real validation images); the test tables of design §8.2 were seen before the first
    three were adopted. Measured together from a clean clone of d94e5f4 in docs/results.md ("`cpu`
    with its classifier trained under bf16-mixed"), the decoder's steps in "`cpu` with the image
    decoder trained alone".
    """
    cfg = cpu_recipe()
    cfg.model = replace(cfg.model, flow_hidden=200)
    cfg.stage1 = replace(cfg.stage1, w_x=0.3, decoder_steps=4_000)
    cfg.prior = replace(cfg.prior, steps=30_000)
    cfg.classifier = replace(cfg.classifier, precision="bf16-mixed")
    return cfg


def _cpu_long() -> ExperimentConfig:
    """The cpu preset with stage 1 trained three times longer: an evening on a 2-core laptop (≤ 2 hours).

    Why: at the end of the cpu preset's 10,000 steps stage 1's validation correctness was still rising
    (+3.2 points over its last quarter at bf8cd19, before coordinate channels; +1.6 and +1.9 at the
    two VLVAE seeds of the w_x = 0.3 ``cpu``, 80ba7b4; docs/results.md), and every later number
    is bounded by it. The KL warm-up and the learning-rate schedule (warm-up, cosine to 5 %) are
    stretched with the budget: the schedule is a function of the fraction of training done.

    It builds on the cpu preset (w_x = 0.3, 200-wide flows in stages 2-3, the prior trained 30,000
    steps) since stop 44: measured from a clean clone of 5acb3ef as the earlier cpu-long with ``--set
    stage1.w_x=0.3 --set model.flow_hidden=200 --set prior.steps=30000`` (exactly this preset), stage
    1's validation correctness ended at 81.6 % against 78.8 % for the earlier cpu-long (w_x = 0.1,
    50-wide flows, a 10,000-step prior; 550df0e), log p(x|z) 23,234 against 22,705 nats, flat from
    about 24,000 steps; 30,000 steps of 64 took 40 minutes on a slow day (32 at 550df0e). Both
    chosen on validation figures; the test tables (docs/results.md, "cpu-long on the cpu preset")
    were seen before adoption.

    The classifier trains 15,000 steps as in the cpu preset (shapes of real validation images 96.5 %,
    every slot >= 95 %); the caption judge 15,000 against the cpu preset's 5,000 (11.6-13.9 minutes;
    real texts 66.1 % word accuracy against 58.6 %), which the evening affords. A cpu run's caption
    judge therefore differs and ``--judges-from`` refuses it. Its classifier trains in float32
    (``classifier.precision=run``), as its tables were measured: the cpu preset's bf16-mixed judge
    (stop 45) has not been measured at cpu-long.

    From stop 48 its stage 1 ends, as the cpu preset's does (stop 46), with steps on the image decoder
    alone: 8,000 after the whole model's 30,000 (``stage1.decoder_steps``), twice the cpu preset's
    4,000 because there 8,000 gained about one more point (design §8.2) and the evening affords the
    6.8 minutes they took. Measured from a clean clone of 30ab046 on the 5acb3ef cpu-long run's data, judges
    and stages 2-3 (which read only q(z|x) and p(y|z), equal to the bit after the whole model's
    steps; all 96 tensors outside the image decoder checked equal): stage 1's validation correctness
    83.5 % against 81.6 % at the whole model's last step, in 6.8 more minutes on a slow day; chosen
    on that figure before its test tables were read (docs/results.md, "cpu-long with the image
    decoder trained alone").
    """
    cfg = _cpu()
    cfg.name = "cpu-long"
    cfg.classifier = replace(cfg.classifier, precision=RUN_PRECISION)
    cfg.stage1 = replace(
        cfg.stage1,
        steps=30_000,
        kl_warmup_steps=3_000,
        lr_warmup_steps=600,
        val_every=1_000,
        decoder_steps=8_000,
    )
    cfg.caption_judge = replace(cfg.caption_judge, steps=15_000)
    return cfg


def _quick() -> ExperimentConfig:
    """The cpu recipe on 20,000 pairs with shorter stages (``make demo``): 8.7-15.2 minutes on 2 cores
    (8.7 alone at d3adc99, 15.2 with the same code at 0a6aef3 on a slower day).

    Stage 1 trains 2,000 steps (the earlier 3,000 steps with a 6-minute cap stopped at about 2,000
    on this machine, and at a number that depended on its load). It builds on the recipe (w_x = 0.1,
    50-wide flows), not on the cpu preset's three later settings: at 2,000-3,000 steps w_x = 0.1 learns
    faster (design §8.2), wider flows cost stages 2-3 minutes that the 10-minute demo does not have,
    and the demo's tables (three seeds) were measured with the recipe.
    """
    cfg = cpu_recipe()
    cfg.name = "quick"
    cfg.data = replace(cfg.data, n=20_000)
    cfg.stage1 = replace(cfg.stage1, steps=2_000, kl_warmup_steps=500, val_every=500, val_examples=256)
    cfg.text_posterior = replace(
        cfg.text_posterior, steps=2_500, val_every=250, val_examples=500, checkpoint_every=250, patience=4
    )
    cfg.prior = replace(cfg.text_posterior)
    cfg.classifier = replace(cfg.classifier, steps=1_500, min_accuracy=0.85)
    cfg.caption_judge = replace(cfg.classifier)
    cfg.evaluation = EvaluationConfig(examples=500, k=10, micro_batch=10, seeds=2)
    return cfg


def _tiny() -> ExperimentConfig:
    """Seconds, for tests: every code path, no meaningful numbers."""
    cfg = ExperimentConfig(name="tiny")
    cfg.data = DataConfig(n=64, size=16, val_fraction=0.25, zoom=2.0, supersample=1)
    cfg.model = ModelConfig(
        image_size=16,
        base_channels=4,
        n_downsample=1,
        n_res_blocks=1,
        encoding_dim=16,
        embedding_dim=8,
        text_hidden=16,
        latent_dim=4,
        shared_hidden=16,
        decoder_dim=16,
        flow_hidden=8,
        flow_steps=2,
    )
    small = StageConfig(
        steps=6,
        batch_size=8,
        lr=1e-3,
        lr_decay=1.0,
        kl_warmup_steps=3,
        w_x=0.1,
        w_y=10.0,
        val_every=3,
        val_examples=16,
        checkpoint_every=2,
    )
    cfg.stage1 = small
    cfg.text_posterior = replace(small)
    cfg.prior = replace(small)
    cfg.classifier = ClassifierConfig(
        steps=6, batch_size=8, base_channels=4, n_downsample=1, n_res_blocks=1, min_accuracy=0.0
    )
    cfg.caption_judge = replace(cfg.classifier)
    cfg.evaluation = EvaluationConfig(
        examples=8, k=3, micro_batch=2, seeds=1, text_k=10, landing_reference=100
    )
    return cfg


PRESETS = {
    "paper": _paper,
    "cpu": _cpu,
    "cpu-long": _cpu_long,
    "quick": _quick,
    "tiny": _tiny,
}


def preset(name: str) -> ExperimentConfig:
    """A fresh copy of a named preset (validated by :func:`validate_config`)."""
    if name not in PRESETS:
        raise VLVAEError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return validate_config(PRESETS[name]())


# ----------------------------------------------------------------------------- validation

#: Allowed ranges: (low, low included, high, high included); None = unbounded on that side.
_AT_LEAST_0 = (0, True, None, False)
_AT_LEAST_1 = (1, True, None, False)
_POSITIVE = (0, False, None, False)
_FRACTION = (0, True, 1, True)
_SEED = (0, True, 2**32 - 1, True)  # numpy and Lightning accept seeds in [0, 2**32)
#: A Gaussian log-variance the networks may clamp to: exp(±30) stays far inside float32.
_LOGVAR = (-30, True, 30, True)

#: Largest stage budget in steps (and step counts: warm-ups, validation and checkpoint intervals):
#: a billion steps is ~2,500 times the paper's 400,000; larger numbers overflow PyTorch's samplers.
MAX_STEPS = 10**9
#: Largest likelihood weight (``w_x``, ``w_y``): 50 times the paper's w_y = 200. Larger weights
#: overflow float32 losses (``w_x = 1e308`` trained to NaN).
MAX_LIKELIHOOD_WEIGHT = 10_000.0
#: Largest number of importance samples (``evaluation.k``, ``evaluation.text_k``): 100 times the
#: paper's 1,000; the log weights of every example are kept, so memory grows with it.
MAX_IMPORTANCE_SAMPLES = 100_000
#: The sanity ceiling of a method's own knob that declares no upper bound (:mod:`vlvae.methods`).
_KNOB_CEILING = {float: 1e6, int: 10**9}

#: Sanity ceilings (inclusive) of keys that have no natural upper bound: values above them cannot
#: train or evaluate (they overflow, allocate terabytes or never finish), so they are refused
#: before anything is written. Each is far above any preset's value.
_STAGE_LIMITS = {
    "steps": MAX_STEPS,
    "batch_size": 65_536,
    "lr": 10.0,
    "weight_decay": 1.0,
    "lr_warmup_steps": MAX_STEPS,
    "kl_warmup_steps": MAX_STEPS,
    "w_x": MAX_LIKELIHOOD_WEIGHT,
    "w_y": MAX_LIKELIHOOD_WEIGHT,
    "val_every": MAX_STEPS,
    "val_examples": 10**7,
    "checkpoint_every": MAX_STEPS,
    "max_minutes": 1e6,  # about two years
    "patience": 10**6,
    "min_delta": 1e6,
    "decoder_steps": MAX_STEPS,
}
_LIMITS = {
    "DataConfig": {"n": 10**8, "size": 4096, "zoom": 100.0, "supersample": 16},
    "StageConfig": _STAGE_LIMITS,
    "ClassifierConfig": {
        "steps": MAX_STEPS,
        "batch_size": 65_536,
        "lr": 10.0,
        "lr_warmup_steps": MAX_STEPS,
        "base_channels": 4096,
        "n_downsample": 12,
        "n_res_blocks": 64,
    },
    "EvaluationConfig": {
        "examples": 10**7,
        "k": MAX_IMPORTANCE_SAMPLES,
        "micro_batch": MAX_IMPORTANCE_SAMPLES,
        "seeds": 1000,
        "text_k": MAX_IMPORTANCE_SAMPLES,
        "landing_reference": 10**7,
    },
    "ModelConfig": {
        "image_size": 4096,
        "image_channels": 64,
        "base_channels": 4096,
        "encoder_channels": 4096,
        "n_downsample": 12,
        "n_res_blocks": 64,
        "refine_channels": 4096,
        "encoding_dim": 65_536,
        "embedding_dim": 65_536,
        "text_hidden": 65_536,
        "latent_dim": 65_536,
        "shared_hidden": 65_536,
        "decoder_dim": 65_536,
        "vocab_size": 10**7,
        "text_length": 100_000,
        # c of the Beta likelihood: lgamma(c) overflows near 1e305; 1e6 is 10,000 times the paper's 100.
        "beta_concentration": 1e6,
        "flow_steps": 1000,
        "flow_hidden": 65_536,
    },
    "ExperimentConfig": {"num_workers": 1024, "devices": 4096, "num_nodes": 100_000},
}

_STAGE_RANGES = {
    "steps": _AT_LEAST_1,
    "batch_size": _AT_LEAST_1,
    "lr": _POSITIVE,
    "weight_decay": _AT_LEAST_0,
    "lr_decay": (0, False, 1, True),
    "lr_warmup_steps": _AT_LEAST_0,
    "lr_final_factor": _FRACTION,
    "kl_warmup_steps": _AT_LEAST_0,
    "w_x": _POSITIVE,
    "w_y": _POSITIVE,
    "val_every": _AT_LEAST_1,
    "val_examples": _AT_LEAST_0,
    "checkpoint_every": _AT_LEAST_1,
    "max_minutes": _AT_LEAST_0,
    "patience": _AT_LEAST_0,
    "min_delta": _AT_LEAST_0,
    "decoder_steps": _AT_LEAST_0,
}
_RANGES = {
    "DataConfig": {
        "n": _AT_LEAST_1,
        "size": (8, True, None, False),
        "val_fraction": (0, False, 1, False),
        "test_fraction": (0, True, 1, True),
        "zoom": _POSITIVE,
        "supersample": _AT_LEAST_1,
        "seed": _SEED,
    },
    "StageConfig": _STAGE_RANGES,
    "ClassifierConfig": {
        "steps": _AT_LEAST_1,
        "batch_size": _AT_LEAST_1,
        "lr": _POSITIVE,
        "lr_warmup_steps": _AT_LEAST_0,
        "lr_final_factor": _FRACTION,
        "base_channels": _AT_LEAST_1,
        "n_downsample": _AT_LEAST_0,
        "n_res_blocks": _AT_LEAST_0,
        "min_accuracy": _FRACTION,
    },
    "EvaluationConfig": {
        name: _AT_LEAST_1 for name in ("examples", "k", "micro_batch", "seeds", "text_k", "landing_reference")
    },
    "ModelConfig": {
        "image_size": (8, True, None, False),
        "image_channels": _AT_LEAST_1,
        "base_channels": _AT_LEAST_1,
        "encoder_channels": _AT_LEAST_0,
        "n_downsample": _AT_LEAST_0,
        "n_res_blocks": _AT_LEAST_0,
        "refine_channels": _AT_LEAST_0,
        "encoding_dim": _AT_LEAST_1,
        "embedding_dim": _AT_LEAST_1,
        "text_hidden": _AT_LEAST_1,
        "latent_dim": (2, True, None, False),
        "shared_hidden": _AT_LEAST_1,
        "decoder_dim": _AT_LEAST_1,
        "dropout": (0, True, 1, False),
        "vocab_size": _AT_LEAST_1,
        "text_length": _AT_LEAST_1,
        "beta_concentration": _POSITIVE,
        "pixel_low": (0, False, 1, False),
        "pixel_high": (0, False, 1, False),
        "logvar_min": _LOGVAR,
        "logvar_max": _LOGVAR,
        "flow_steps": _AT_LEAST_1,
        "flow_hidden": _AT_LEAST_1,
    },
    "ExperimentConfig": {
        "seed": _SEED,
        "num_workers": _AT_LEAST_0,
        "devices": _AT_LEAST_1,
        "num_nodes": _AT_LEAST_1,
    },
}


def _choices() -> dict[str, dict[str, tuple[str, ...]]]:
    """The enumerated string keys and their allowed values, from where each is defined."""
    return {
        "MethodConfig": {"name": method_names()},
        "StageConfig": {"lr_schedule": LR_SCHEDULES, "posterior_family": POSTERIOR_FAMILIES},
        "ClassifierConfig": {
            "lr_schedule": LR_SCHEDULES,
            "arch": ARCHITECTURES,
            "norm": NORMS,
            "precision": (RUN_PRECISION, *PRECISIONS),
        },
        "ModelConfig": {"arch": ARCHITECTURES, "norm": NORMS},
        "ExperimentConfig": {
            "precision": PRECISIONS,
            "accelerator": ACCELERATORS,
            "strategy": STRATEGIES,
            "logger": LOGGERS,
            # a number in its range (above), or this word
            "devices": (AUTO_DEVICES,),
        },
    }


def _range_text(low, low_in, high, high_in) -> str:
    if high is None:
        return f"at least {low}" if low_in else f"greater than {low}"
    return f"in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"


def _value_problem(value, allowed: tuple, ceiling) -> str | None:
    """What is wrong with a numeric ``value`` for range ``allowed`` and sanity ``ceiling`` (inclusive;
    None: none): ``must be ...``, or None when it is fine."""
    low, low_in, high, high_in = allowed
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number {_range_text(*allowed)}"
    if not math.isnan(value) and ceiling is not None and high is None and value > ceiling:
        return (
            f"must be at most {ceiling:g} (larger values overflow, exhaust memory or never finish)"
            if isinstance(ceiling, float)
            else f"must be at most {ceiling:,} (larger values overflow, exhaust memory or never finish)"
        )
    ok = math.isfinite(value) and (value >= low if low_in else value > low)
    ok = ok and (high is None or (value <= high if high_in else value < high))
    return None if ok else f"must be {_range_text(*allowed)}"


def _limits_of(obj) -> tuple[dict, dict]:
    """(ranges, sanity ceilings) of the numeric fields of a config section ``obj``."""
    kind = "MethodConfig" if isinstance(obj, MethodConfig) else type(obj).__name__
    hints = typing.get_type_hints(type(obj))
    # A method's own knobs carry their ranges with their fields (vlvae.methods); one without an upper
    # bound gets the knobs' sanity ceiling.
    declared = {f.name: f.metadata["range"] for f in fields(obj) if "range" in f.metadata}
    ceilings = {
        name: _KNOB_CEILING[hints[name]]
        for name, allowed in declared.items()
        if allowed[2] is None and hints.get(name) in _KNOB_CEILING
    }
    return {**_RANGES.get(kind, {}), **declared}, {**_LIMITS.get(kind, {}), **ceilings}


def validate_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """Check every numeric key against its range and every enumerated key against its values.

    Every number must be finite and in its range; keys without a natural upper bound have a
    sanity ceiling (:data:`MAX_STEPS`, :data:`MAX_LIKELIHOOD_WEIGHT`, :data:`MAX_IMPORTANCE_SAMPLES`,
    ...) far above any preset's value, above which training or evaluation would overflow, exhaust
    memory or never finish. Called by :func:`preset`, :func:`apply_overrides` and
    :func:`load_config`, so that each command refuses a bad value before it writes anything.

    Returns:
        ``cfg`` itself.

    Raises:
        VLVAEError: one line naming the first bad key, its value and what is allowed, e.g.
            ``configuration key 'stage1.batch_size' must be at least 1, got 0``.
    """
    choices = _choices()

    def check(obj, where: str) -> None:
        kind = "MethodConfig" if isinstance(obj, MethodConfig) else type(obj).__name__
        (ranges, ceilings), allowed = _limits_of(obj), choices.get(kind, {})
        for f in fields(obj):
            value, key = getattr(obj, f.name), f"{where}{f.name}"
            if is_dataclass(value):
                check(value, f"{key}.")
            elif (
                f.name in ranges
                and f.name in allowed
                and (isinstance(value, bool) or not isinstance(value, int))
            ):
                # a key that takes a whole number or a word (``devices``: 4 or ``auto``)
                if value not in allowed[f.name] or not isinstance(value, str):
                    raise VLVAEError(
                        f"configuration key {key!r} must be an integer {_range_text(*ranges[f.name])} "
                        f"or {' or '.join(allowed[f.name])}, got {value!r}"
                    )
            elif f.name in ranges and not isinstance(value, bool):
                problem = _value_problem(value, ranges[f.name], ceilings.get(f.name))
                if problem:
                    raise VLVAEError(f"configuration key {key!r} {problem}, got {value!r}")
            elif f.name in allowed and value not in allowed[f.name]:
                raise VLVAEError(
                    f"configuration key {key!r} must be one of {', '.join(allowed[f.name])}, got {value!r}"
                )

    check(cfg, "")
    if isinstance(cfg, ExperimentConfig):
        check_decoder_steps(cfg)
        world = world_size_of(cfg)
        if world is not None:
            check_global_batches(cfg, world)
    return cfg


def check_decoder_steps(cfg: ExperimentConfig) -> None:
    """Refuse ``decoder_steps`` where it has no meaning, in one line naming the key and the fix: in
    the sections of stages 2-3, and for a model other than the VLVAE with q(z|x) (another method's
    networks, or joint inference, whose q(z|x, y) the image-decoder steps do not feed)."""
    for section in _STAGE_SECTIONS[1:]:
        if getattr(cfg, section).decoder_steps:
            raise VLVAEError(
                f"configuration key '{section}.decoder_steps' applies to stage 1 only; set it to 0 "
                "(stages 2-3 train q(z|y) or the prior, not the image decoder)"
            )
    if not cfg.stage1.decoder_steps:
        return
    if cfg.method.name != "vlvae":
        raise VLVAEError(
            f"configuration key 'stage1.decoder_steps' is for the VLVAE (method vlvae), not "
            f"{cfg.method.name!r}; set it to 0"
        )
    if cfg.model.joint_inference:
        raise VLVAEError(
            "configuration key 'stage1.decoder_steps' needs q(z|x), not joint inference "
            "(model.joint_inference=true); set one of them off"
        )


def decoder_from(stage: StageConfig) -> int | None:
    """The step from which a stage trains the image decoder alone (``steps``, when ``decoder_steps``
    follow them: stage 1 of the VLVAE, docs/design.md §5), else None. The schedule restarts there,
    the task holds the other networks from there, and stage 1's convergence summary splits there."""
    return stage.steps if stage.decoder_steps else None


def stage_budget(stage: StageConfig) -> int:
    """All the optimisation steps of a stage: its ``steps`` and, in stage 1, the image decoder's
    ``decoder_steps`` after them."""
    return stage.steps + stage.decoder_steps


def world_size_of(cfg: ExperimentConfig) -> int | None:
    """The number of processes of a distributed fit of ``cfg``: ``devices × num_nodes``; None for
    ``devices=auto``, whose number only Lightning knows (:func:`vlvae.training.run.world_size`)."""
    if isinstance(cfg.devices, str):
        return None
    return int(cfg.devices) * int(cfg.num_nodes)


def check_global_batches(cfg: ExperimentConfig, world: int, found: str = "") -> None:
    """Refuse a training stage whose ``batch_size`` (the global batch) does not split evenly over the
    ``world`` processes of a distributed fit: one line naming both numbers and the fix.

    ``found`` says where the number of devices came from (``devices=auto``: ``", 4 found"``). The
    judges (``classifier``, ``caption_judge``) train in one process (:func:`single_process`): their
    batch is not split.
    """
    how = f"devices={cfg.devices}{found} x num_nodes={cfg.num_nodes}"
    for section in _STAGE_SECTIONS:
        batch = getattr(cfg, section).batch_size
        if isinstance(batch, bool) or not isinstance(batch, int) or batch % world == 0:
            continue
        lower, upper = batch // world * world, (batch // world + 1) * world
        nearest = f"{lower} or {upper}" if lower else str(upper)
        raise VLVAEError(
            f"configuration key '{section}.batch_size' is the global batch, split over {world} processes "
            f"({how}), but {batch} is not a multiple of {world}; set {section}.batch_size "
            f"to a multiple of {world} (e.g. {nearest}), or choose devices and num_nodes whose product "
            f"divides {batch}"
        )


def single_process(cfg: ExperimentConfig, precision: str = RUN_PRECISION) -> ExperimentConfig:
    """A copy of ``cfg`` that fits in one process on one device (the judges' fits; the accelerator
    kept), under ``precision`` (a judge's own, :class:`ClassifierConfig`) unless it is
    :data:`RUN_PRECISION` (the run's kept)."""
    kept = cfg.precision if precision == RUN_PRECISION else precision
    return replace(cfg, devices=1, num_nodes=1, strategy="auto", precision=kept)


def _flat(data, prefix: str = "") -> dict:
    """A nested dict as ``{dotted key: value}``."""
    if not isinstance(data, dict):
        return {prefix[:-1]: data}
    flat = {}
    for key, value in data.items():
        flat.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def _shown(value) -> str:
    return "(absent)" if value is _ABSENT else repr(value) if isinstance(value, str) else str(value)


_ABSENT = object()


def record_differences(stored: dict, now: dict, where: str, ignored: tuple[str, ...] = ()) -> list[str]:
    """How the nested dict ``now`` differs from ``stored`` (kept in ``where``, e.g. ``the run``): one
    ``"stage1.steps: 2000 in the run, 3000 now"`` per differing key (dotted, in ``stored``'s order,
    then ``now``'s new keys; a key one side lacks reads ``(absent)``), the dotted keys ``ignored`` left
    out. Empty: the same."""
    old, new = _flat(stored), _flat(now)
    keys = [*old, *(k for k in new if k not in old)]
    return [
        f"{key}: {_shown(old.get(key, _ABSENT))} in {where}, {_shown(new.get(key, _ABSENT))} now"
        for key in keys
        if key not in ignored and old.get(key, _ABSENT) != new.get(key, _ABSENT)
    ]


def identity_differences(stored: ExperimentConfig, now: ExperimentConfig) -> list[str]:
    """How ``now`` differs from a run's ``stored`` config in what the run computes: one
    ``"stage1.steps: 2000 in the run, 3000 now"`` per differing key (dotted, in the config's order),
    the hardware and logging keys (:data:`HARDWARE_KEYS`) left out. Empty: the same run."""
    return record_differences(_to_plain(stored), _to_plain(now), "the run", HARDWARE_KEYS)


def with_hardware(cfg: ExperimentConfig, source: ExperimentConfig) -> ExperimentConfig:
    """A copy of ``cfg`` with the hardware and logging keys (:data:`HARDWARE_KEYS`) of ``source``."""
    return replace(cfg, **{key: getattr(source, key) for key in HARDWARE_KEYS})


def apply_hardware_overrides(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """``cfg`` with ``key=value`` overrides of hardware and logging keys only (:data:`HARDWARE_KEYS`),
    e.g. for the later stages of an existing run: an override of any other key is refused in one line
    (it would change what the run computes), as is a value out of its range (:func:`apply_overrides`)."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if "=" in item and key not in HARDWARE_KEYS:
            raise VLVAEError(
                f"--set {key} would change what the run computes; only {', '.join(HARDWARE_KEYS)} "
                "may change for an existing run (start a new run to change the rest)"
            )
    return apply_overrides(cfg, overrides)


def check_option(option: str, value, key: str):
    """Check a command-line option that sets configuration key ``key`` (e.g. ``--k`` sets
    ``evaluation.k``) against that key's range and sanity ceiling, before anything is written.

    Returns:
        ``value`` (None passes: the option was not given).

    Raises:
        VLVAEError: ``--k must be at most 100,000 (...), got 100000000000``.
    """
    if value is None:
        return value
    section, _, name = key.rpartition(".")
    obj = getattr(ExperimentConfig(), section) if section else ExperimentConfig()
    ranges, ceilings = _limits_of(obj)
    problem = _value_problem(value, ranges[name], ceilings.get(name))
    if problem:
        raise VLVAEError(f"{option} {problem}, got {value!r}")
    return value


def _to_plain(obj):
    if is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


#: Keys of the ``method`` section that every run wrote before methods declared their own knobs
#: (JMVAE-kl's ``alpha`` was a field of every run's method section): a run of a method that does
#: not declare one is read without it.
_LEGACY_METHOD_KEYS = ("alpha",)


def _method_class(data: dict) -> type[MethodConfig]:
    """The config class of the ``method`` section ``data`` (by its ``name``); for an unknown name,
    the plain :class:`MethodConfig` (validation then names the registered methods)."""
    name = data.get("name", MethodConfig.name)
    return get_method(name).config if name in method_names() else MethodConfig


def _method_section(data: dict) -> dict:
    """A ``method`` section as read from a file: legacy keys its method does not declare left out."""
    cls = _method_class(data)
    known = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in known or k not in _LEGACY_METHOD_KEYS}


def _from_plain(cls, data: dict, where: str = ""):
    if cls is MethodConfig:
        cls = _method_class(data)
        if cls is MethodConfig and data.get("name", MethodConfig.name) not in method_names():
            data = {"name": data["name"]}  # an unknown method: validation names the registered ones
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        key = f"{where}{sorted(unknown)[0]}"
        raise VLVAEError(
            f"unknown configuration key {key!r}; valid keys at this level: "
            f"{', '.join(sorted(where + k for k in known))}"
        )
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value, hint = data[f.name], hints[f.name]
        if is_dataclass(hint):
            if not isinstance(value, dict):
                raise VLVAEError(f"configuration key {where}{f.name!r} is a section, not a value")
            value = _from_plain(hint, value, f"{where}{f.name}.")
        elif hint in (int, float, bool, str):
            value = _coerce(value, hint, f"{where}{f.name}")
        elif hint == int | str and not isinstance(value, bool):
            # a number or a word (``devices``: 4 or ``auto``): a whole number written as text is a number
            text = str(value).strip()
            value = int(text) if text.lstrip("-").isdigit() else value
            if isinstance(value, float) and value.is_integer():
                value = int(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _coerce(value, kind, key):
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
    else:
        try:
            if kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return (
                kind(value)
                if kind is not int
                else int(float(value))
                if isinstance(value, str)
                else int(value)
            )
        except (TypeError, ValueError, OverflowError):
            pass
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    raise VLVAEError(f"configuration key {key!r} needs {names[kind]}, got {value!r}")


def apply_overrides(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """Apply ``key=value`` overrides (dotted keys, e.g. ``stage1.steps=100``) to a config.

    Keys renamed since (:data:`RENAMED_SECTIONS`, :data:`RENAMED_STAGE_KEYS`: ``vlvae.steps`` is
    ``stage1.steps``, ``text_posterior.kind`` is ``text_posterior.posterior_family``) are accepted as
    their new names.

    ``method.name=NAME`` makes the ``method`` section that method's (its knobs at their defaults,
    knobs of the same name kept), so that its knobs (``method.alpha=...``) can follow it.

    Raises:
        VLVAEError: an override without ``=``, an unknown key, a value of the wrong type, or one
            out of its range (:func:`validate_config`).
    """
    data = _to_plain(cfg)
    for item in overrides:
        if "=" not in item:
            raise VLVAEError(f"--set needs key=value (e.g. stage1.steps=100), got {item!r}")
        key, raw = item.split("=", 1)
        key = _renamed(key.strip())
        value = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={raw}"]))["v"]
        node, parts = data, key.strip().split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                where = ".".join(parts[:depth]) or "the top level"
                options = ", ".join(sorted(node)) if isinstance(node, dict) else "(none: it is a value)"
                hint = ""
                if parts[:depth] == ["method"] and isinstance(node, dict):
                    hint = (
                        f" (method {node.get('name')!r} declares no knob {part!r}; "
                        "set method.name=... before a method's knobs)"
                    )
                raise VLVAEError(f"unknown configuration key {key!r}; keys under {where}: {options}{hint}")
            if depth == len(parts) - 1:
                node[part] = value
            else:
                node = node[part]
        if parts == ["method", "name"] and value in method_names():
            knobs = {k: v for k, v in data["method"].items() if k != "name"}
            data["method"] = _to_plain(method_config(value, **knobs))
    return validate_config(_from_plain(ExperimentConfig, data))


def knob_of(item: str) -> str:
    """The knob a ``method.<knob>=value`` override sets."""
    return item.split("=", 1)[0].strip().split(".", 1)[1]


def split_method_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(the ``method.<knob>=...`` overrides, the others), in their order (``method.name`` is no knob)."""
    knobs, rest = [], []
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        (knobs if key.startswith("method.") and key != "method.name" else rest).append(item)
    return knobs, rest


def with_method(cfg: ExperimentConfig, name: str, knob_overrides: list[str] = ()) -> ExperimentConfig:
    """A copy of ``cfg`` for method ``name``: its ``method`` section that method's, with those of the
    ``method.<knob>=...`` overrides whose knob it declares applied."""
    mine = [o for o in knob_overrides if knob_of(o) in knob_names(name)]
    return apply_overrides(cfg, [f"method.name={name}", *mine])


#: Keys renamed since configs were first written, old -> new. Old config.yaml files and ``--set``
#: keys are read with the new names. Sections: the stage-1 section (``vlvae``, the name of one
#: method, for every method's stage 1). Keys of a stage's section: ``kind`` (its posterior family).
RENAMED_SECTIONS = {"vlvae": "stage1"}
RENAMED_STAGE_KEYS = {"kind": "posterior_family"}
_STAGE_SECTIONS = ("stage1", "text_posterior", "prior")


def _renamed(key: str) -> str:
    """A dotted key with its renamed parts (:data:`RENAMED_SECTIONS`, :data:`RENAMED_STAGE_KEYS`)
    given their new names."""
    parts = key.split(".")
    parts[0] = RENAMED_SECTIONS.get(parts[0], parts[0])
    if len(parts) == 2 and parts[0] in _STAGE_SECTIONS:
        parts[1] = RENAMED_STAGE_KEYS.get(parts[1], parts[1])
    return ".".join(parts)


def _upgraded(data: dict) -> dict:
    """A config file's contents with the keys renamed since (:data:`RENAMED_SECTIONS`,
    :data:`RENAMED_STAGE_KEYS`) given their new names, and a ``caption_judge`` section where it
    has none: before that section existed the caption judge trained with the ``classifier`` one."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for old, new in RENAMED_SECTIONS.items():
        if old in data and new not in data:
            data[new] = data.pop(old)
    if "caption_judge" not in data and isinstance(data.get("classifier"), dict):
        data["caption_judge"] = dict(data["classifier"])
    for section in _STAGE_SECTIONS:
        if isinstance(data.get(section), dict):
            data[section] = dict(data[section])
            for old, new in RENAMED_STAGE_KEYS.items():
                if old in data[section]:
                    data[section].setdefault(new, data[section].pop(old))
                    data[section].pop(old, None)
    if isinstance(data.get("method"), dict):
        data["method"] = _method_section(data["method"])
    return data


def save_config(cfg: ExperimentConfig, path: Path) -> None:
    """Write the config as YAML (atomically)."""
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(_to_plain(cfg))))


def load_config(path: Path) -> ExperimentConfig:
    """Read a config written by :func:`save_config`."""
    path = Path(path)
    if not path.is_file():
        raise VLVAEError(f"{path} is missing; is this a run folder made by `vlvae train vlvae`?")
    try:
        data = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as exc:  # omegaconf raises several YAML error types
        raise VLVAEError(f"{path} is not a readable config ({exc}); restore it or start a new run") from exc
    if not data:
        raise VLVAEError(
            f"{path} is empty; restore it, or delete the run folder {path.parent} and train it again"
        )
    if not isinstance(data, dict):
        raise VLVAEError(
            f"{path} holds a {type(data).__name__}, not a configuration; restore it, or delete the run "
            f"folder {path.parent} and train it again"
        )
    return validate_config(_from_plain(ExperimentConfig, _upgraded(data)))

"""The ``vlvae`` command: data, training, sampling, evaluation and reproduction.

Every sub-command has its own ``--help``. Errors in the user's input are
printed as one line that says what is wrong and how to fix it (exit code 2),
before anything is written: options and ``--set`` values are checked against
their ranges (:func:`vlvae.config.validate_config`, :func:`vlvae.config.check_option`), output
paths by :mod:`vlvae.paths` (an empty path option is refused as it is parsed), data sets whole
(:func:`vlvae.data.format.check_dataset`), and every command that writes a folder holds its lock
(:mod:`vlvae.locking`). Usage errors (``--steps abc``, a missing option) are one line too.

Every command that runs models outside training (``evaluate``, ``compare``, ``sample``, ``serve``
and ``reproduce``'s evaluation) takes ``--device`` (:func:`vlvae.device.resolve_device`), checked
first; training stages take the config's ``accelerator`` and ``devices`` keys.
"""

from __future__ import annotations

import logging
import socket
import sys
import warnings
from pathlib import Path

import lightning  # noqa: F401  (sets its loggers' levels on import; main() sets ours after)
import typer

# typer vendors click: its usage errors (``--steps abc``) are this package's exceptions.
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from vlvae import __version__
from vlvae.archive import PRETRAINED, export_run, open_inference, pretrained_path
from vlvae.config import apply_overrides, check_option
from vlvae.data.format import check_dataset, read_vocabulary
from vlvae.data.preview import image_text_grid, preview_grid
from vlvae.datasets import data_dataset, dataset_names, get_dataset, preset, train_judge, verify
from vlvae.device import AUTO, DEVICE_CHOICES, resolve_device
from vlvae.errors import VLVAEError
from vlvae.evaluation.driver import compare_runs, evaluate_run, load_scorer
from vlvae.inference import MAX_SAMPLES, PRIORS, TEXT_POSTERIORS, check_sample_count
from vlvae.methods import get_method, method_names
from vlvae.methods.stages import TEXT_POSTERIOR, choices, text_posterior_stage
from vlvae.paths import PATH_OPTION, check_output_file
from vlvae.recipes.across_runs import parse_labelled_runs, run_across_runs
from vlvae.recipes.figure1 import run_latent2d
from vlvae.recipes.reproduce import reproduce
from vlvae.runinfo import git_commit
from vlvae.serve import create_app
from vlvae.training.run import fit_vlvae, train_prior, train_text_posterior

__all__ = ["app", "main", "version_line"]

app = typer.Typer(
    help="vlvae: text-to-image and image-to-text generation with multimodal latent-variable "
    "models (Cremer & Kushman 2018, learning aggregate posteriors).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Make, preview and verify data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
# Each data set's own commands (``vlvae data two-objects``, ``vlvae data celeba``, ``vlvae data import``).
for _name in dataset_names():
    for _command, _function in get_dataset(_name).commands.items():
        data_app.command(_command)(_function)


#: The exit code typer gives a KeyboardInterrupt (128 + SIGINT).
INTERRUPTED = 130

#: ``vlvae sample --posterior own``: a baseline's own q(z|y), trained in its stage 1.
OWN = "own"


#: The most training replicates, processes or threads a command may ask for.
MAX_REPLICATES = 1000
MAX_WORKERS = 1024


def version_line() -> str:
    """``vlvae 0.1.0`` and, in a git checkout, ``(commit SHA)`` (``+dirty`` with uncommitted changes)."""
    commit = git_commit()
    return f"vlvae {__version__}" + (f" (commit {commit})" if commit != "unknown" else "")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version (and the git commit of a checkout) and exit.",
    ),
):
    pass


def _device_option(what: str = "the models"):
    """``--device``: one choice for every command that runs models outside training."""
    return typer.Option(
        AUTO,
        "--device",
        help=f"Where {what} run: {DEVICE_CHOICES} (auto: a CUDA GPU when torch sees one, else the CPU). "
        "The judges run on the CPU; a device this machine lacks is refused before anything is written.",
    )


_RUN_HELP = "Run folder, or a model archive (vlvae export)."
_DATA_HELP = "The run's data set, where it is not where the run recorded it (moved apart from the run)."
_PRETRAINED_HELP = "A model shipped with vlvae instead of --run: " + "; ".join(
    f"{name} ({what})" for name, (_, what, _) in PRETRAINED.items()
)


def _model_source(run: Path | None, pretrained: str | None) -> Path:
    """The run folder or archive a command opens: ``--run`` or ``--pretrained``, exactly one."""
    if (run is None) == (pretrained is None):
        raise VLVAEError("give exactly one of --run (a run folder or model archive) and --pretrained")
    return run if run is not None else pretrained_path(pretrained)


def _check_png(out: Path) -> None:
    """The image commands write PNG files: refuse another suffix rather than write PNG bytes under it."""
    if out.suffix.lower() != ".png":
        raise VLVAEError(
            f"--out {out} does not end in .png; this command writes PNG images only: "
            f"give a .png file name, e.g. {out.with_suffix('.png')}"
        )


def _one_of(names: list[str]) -> str:
    """``'a', 'b' or 'c'``."""
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


@data_app.command("preview")
def data_preview(
    root: Path = typer.Argument(..., help="Data-set folder.", **PATH_OPTION),
    out: Path = typer.Option(..., help="PNG file to write.", **PATH_OPTION),
    n: int = typer.Option(16, help=f"Number of images (1 to {MAX_SAMPLES})."),
    split: str = typer.Option("train", help="train or val."),
):
    """Save a grid of images with their texts."""
    if not 1 <= n <= MAX_SAMPLES:
        raise VLVAEError(f"--n must be between 1 and {MAX_SAMPLES} images, got {n}")
    check_output_file(out, "image file")
    _check_png(out)
    preview_grid(root, out, n=n, split=split)
    typer.echo(f"wrote {out}")


@data_app.command("verify")
def data_verify(
    root: Path = typer.Argument(..., help="Data-set folder.", **PATH_OPTION),
    checksums: bool = typer.Option(True, help="Check every file's sha256 against the manifest."),
):
    """Check shapes, checksums, that every word is in the vocabulary and the data set's own rule (Two Objects:
    every text true of its scene); exit non-zero if not."""
    summary = verify(root, checksums=checksums)
    typer.echo(f"OK: {summary['counts']}, {summary['texts_checked']} texts checked")


figure_app = typer.Typer(help="The paper's figures that need their own model.", no_args_is_help=True)
app.add_typer(figure_app, name="figure")


@figure_app.command("latent2d")
def figure_latent2d(
    data: Path = typer.Option(
        ...,
        help="One-object data set (vlvae data two-objects --objects 1 --colours blue,red).",
        **PATH_OPTION,
    ),
    out: Path = typer.Option(
        ..., help="Run folder for the z = 2 model; the figure goes to OUT/figures/.", **PATH_OPTION
    ),
    preset: str = typer.Option("cpu", help="cpu (a few minutes) or tiny (tests)."),
    steps: int | None = typer.Option(None, help="Stage-1 steps (overrides the preset)."),
    set_: list[str] = typer.Option([], "--set", help="Override config keys."),
    text: list[str] = typer.Option(
        [],
        help="Texts to draw (two words each, e.g. --text 'large blue' "
        "--text 'small red'); default: two frequent texts.",
    ),
    progress: bool = typer.Option(True, help="Show progress bars."),
):
    """Fig. 1: text posteriors p(z|y), q_Agg and q_True over the aggregate of the image posteriors
    (z in 2-D)."""
    check_option("--steps", steps, "stage1.steps")
    path = run_latent2d(data, out, preset, steps, set_, progress, list(text) or None)
    typer.echo(f"wrote {path}")


@figure_app.command("runs")
def figure_runs(
    run: list[str] = typer.Option(
        ...,
        help="LABEL=RUN_FOLDER, repeatable, drawn in order (e.g. --run quick=runs/quick/run "
        "--run cpu=runs/cpu/run); runs of one data set.",
    ),
    out: Path = typer.Option(..., help="The PNG to write.", **PATH_OPTION),
    classifier: Path | None = typer.Option(
        None,
        help="One judge for every run: each image is captioned with its correctness against the text.",
        **PATH_OPTION,
    ),
    n: int = typer.Option(4, help="Examples (rows): validation images 0 … n − 1 of the first run's data."),
    seed: int = typer.Option(0, help="Seed of every q(z|y) sample."),
    device: str = _device_option(),
):
    """The same texts across runs (e.g. presets quick, cpu, cpu-long): each run's reconstruction and a
    q_Agg and a q_True sample per text, upsampled so a person can judge them."""
    path = run_across_runs(parse_labelled_runs(run), out, classifier, n, seed, device)
    typer.echo(f"wrote {path}")


train_app = typer.Typer(
    help="Train the VLVAE, the text posteriors, the aggregate prior and the classifier.", no_args_is_help=True
)
app.add_typer(train_app, name="train")


def _check_replicates(replicates: int, option: str = "--replicates") -> None:
    if not 1 <= replicates <= MAX_REPLICATES:
        raise VLVAEError(f"{option} must be between 1 and {MAX_REPLICATES}, got {replicates}")


def _report(metrics: dict, what: str) -> None:
    val = ", ".join(f"{k}={v:.3f}" for k, v in metrics.get("validation", {}).items())
    typer.echo(f"{what}: {metrics.get('steps')} steps; validation: {val or 'none'}")


@train_app.command("vlvae")
def train_vlvae_cmd(
    data: Path = typer.Option(..., help="Data-set folder (from a `vlvae data` command).", **PATH_OPTION),
    out: Path = typer.Option(
        ..., help="Run folder to create (or reopen with the same configuration).", **PATH_OPTION
    ),
    preset_name: str = typer.Option(
        "cpu",
        "--preset",
        help="Named configuration: paper (GPU, docs/design.md §5), cpu, cpu-long, quick or tiny "
        "(a data set's own presets too, e.g. celeba-cpu).",
    ),
    steps: int | None = typer.Option(None, help="Stage-1 optimisation steps (overrides the preset)."),
    max_minutes: float | None = typer.Option(
        None,
        help="Opt-in safety: stop stage 1 after this many minutes even before its step budget. The "
        "result then depends on the machine's speed and load; the report says when it fired.",
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override any config key, e.g. --set stage1.w_x=0.1 --set devices=2. Repeatable."
    ),
    resume: bool = typer.Option(False, help="Continue a killed run from its last checkpoint."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    classifier: Path | None = typer.Option(
        None,
        help="A trained classifier folder: every validation pass "
        "then also logs the correctness of the reconstructions.",
        **PATH_OPTION,
    ),
    method: str | None = typer.Option(
        None,
        help="The multimodal VAE to train, a registered method: "
        + ", ".join(method_names())
        + " (default vlvae, the paper's; joint: "
        "q(z|x,y), Fig. 7).",
    ),
):
    """Stage 1: train the VLVAE (Eqns 1-2) with image-only inference q(z|x), or another method (--method)."""
    if method is not None:
        get_method(method)  # an unknown name: one line naming the registered ones
        set_ = [f"method.name={method}"] + list(set_)
    if steps is not None:
        set_ = [f"stage1.steps={steps}"] + list(set_)
    if max_minutes is not None:
        set_ = [f"stage1.max_minutes={max_minutes}"] + list(set_)
    cfg = apply_overrides(preset(preset_name), list(set_))
    check_dataset(data)  # the whole data set, before the classifier is read or anything is written
    scorer = None
    if classifier is not None:
        scorer = load_scorer(data_dataset(data), classifier, read_vocabulary(data), data)[0].score
    _report(fit_vlvae(data, out, cfg, resume, progress, scorer=scorer), method or "VLVAE")


@train_app.command("text-posterior")
def train_text_posterior_cmd(
    run: Path = typer.Option(..., help="Run folder with a trained VLVAE.", **PATH_OPTION),
    objective: str = typer.Option(
        ...,
        help="Which text posterior (the stage registry's): "
        + "; ".join(f"{name}: {stage.curve_title}" for name, stage in choices(TEXT_POSTERIOR).items())
        + ".",
    ),
    resume: bool = typer.Option(False, help="Continue a killed run from its last checkpoint."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    replicates: int = typer.Option(
        1,
        help="Training replicates: fit the stage this many times with different "
        "seeds (RUN/q_<objective>, then .r1, .r2, ...); evaluate reports their spread.",
    ),
):
    """Stage 2: train q(z|y) with the VLVAE frozen."""
    _check_replicates(replicates)
    stage = text_posterior_stage(objective)
    for r in range(replicates):
        _report(
            train_text_posterior(run, objective, resume, progress, replicate=r),
            stage.name + (f" (replicate {r})" if replicates > 1 else ""),
        )


@train_app.command("prior")
def train_prior_cmd(
    run: Path = typer.Option(..., help="Run folder with a trained VLVAE.", **PATH_OPTION),
    resume: bool = typer.Option(False, help="Continue a killed run from its last checkpoint."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    replicates: int = typer.Option(1, help="Training replicates (RUN/prior, then RUN/prior.r1, ...)."),
):
    """Stage 3: train the aggregate prior q(z) (§4.2) with the VLVAE frozen."""
    _check_replicates(replicates)
    for r in range(replicates):
        _report(
            train_prior(run, resume, progress, replicate=r),
            "aggregate prior" + (f" (replicate {r})" if replicates > 1 else ""),
        )


@train_app.command("classifier")
def train_classifier_cmd(
    data: Path = typer.Option(..., help="Data-set folder (real images only are used).", **PATH_OPTION),
    out: Path = typer.Option(..., help="Folder for the classifier.", **PATH_OPTION),
    preset_name: str = typer.Option(
        "cpu",
        "--preset",
        help="Named configuration whose `classifier` section is used (`caption_judge` for a data set "
        "judged by the caption judge).",
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="Override config keys, e.g. --set classifier.steps=5000 (or caption_judge.steps=5000).",
    ),
    resume: bool = typer.Option(False, help="Continue a killed run from its last checkpoint."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Train the independent judge of the data set (its package's: the attribute classifier of Two Objects,
    CelebA's label classifier, the caption judge of imported captions) that scores generated images."""
    metrics = train_judge(data, out, preset_name, set_, resume, progress)
    acc = metrics["real_accuracy"]
    slots = ", ".join(f"{k} {100 * v:.1f}" for k, v in acc.get("per_slot", {}).items())
    typer.echo(
        f"classifier accuracy on real validation data: {100 * acc['overall']:.2f} %"
        + (f" ({slots})" if slots else "")
    )


@app.command("sample")
def sample_cmd(
    run: Path | None = typer.Option(None, help=_RUN_HELP, **PATH_OPTION),
    out: Path = typer.Option(..., help="PNG file to write.", **PATH_OPTION),
    text: str | None = typer.Option(
        None,
        help='Text to draw, e.g. "small red metal cube left large blue rubber sphere", or any words for '
        "a data set of free captions (with --posterior).",
    ),
    posterior: str = typer.Option(
        "agg",
        help=" or ".join(f"{name} ({label})" for name, (_, label) in TEXT_POSTERIORS.items())
        + ": which q(z|y) draws z for --text; "
        "own: a baseline's own q(z|y) (runs of --method jmvae, telbo, mvae).",
    ),
    prior: str = typer.Option(
        "standard",
        help="Without --text: "
        + " or ".join(f"{name} ({label})" for name, (_, label) in PRIORS.items())
        + ".",
    ),
    n: int = typer.Option(3, help=f"Number of samples (1 to {MAX_SAMPLES})."),
    seed: int = typer.Option(0, help="Random seed (a GPU draws other images than the CPU for one seed)."),
    device: str = _device_option(),
    data: Path | None = typer.Option(None, help=_DATA_HELP, **PATH_OPTION),
    pretrained: str | None = typer.Option(None, help=_PRETRAINED_HELP),
):
    """Generate images from a text (z ~ q(z|y)) or from a prior, each with its decoded text."""
    on = resolve_device(device)
    source = _model_source(run, pretrained)
    check_sample_count(n)
    check_option("--seed", seed, "seed")
    if text is not None and posterior not in (*TEXT_POSTERIORS, OWN):
        raise VLVAEError(f"--posterior must be {_one_of([*TEXT_POSTERIORS, OWN])}, got {posterior!r}")
    if text is None and prior not in PRIORS:
        raise VLVAEError(f"--prior must be {_one_of(list(PRIORS))}, got {prior!r}")
    check_output_file(out, "image file")
    _check_png(out)
    inference = open_inference(source, None, on, data)
    if text is not None:
        samples = inference.from_text(text, posterior, n, seed)
        unknown = inference.unknown_words(text)
        if unknown:
            read_as = inference.vocab.unknown
            typer.echo(f"note: {', '.join(map(repr, unknown))} not in the vocabulary; read as {read_as!r}")
        title = f"q_{posterior}(z|y), y = {text}"
    else:
        samples = inference.from_prior(prior, n, seed)
        title = f"z ~ {PRIORS[prior][1]}"
    images, texts = samples.images, samples.texts
    image_text_grid(images, texts, out, columns=min(n, 4), title=title)
    typer.echo(f"wrote {out}")


@app.command("serve")
def serve_cmd(
    run: Path | None = typer.Option(
        None,
        help="Run folder (its VLVAE trained; the other stages are used when present), or a model archive "
        "(vlvae export).",
        **PATH_OPTION,
    ),
    classifier: Path | None = typer.Option(
        None,
        help="Classifier folder: every image is then judged (correctness beside each sample); an archive "
        "brings its own.",
        **PATH_OPTION,
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, help="Port to listen on (1 to 65535)."),
    threads: int = typer.Option(
        1,
        help="torch threads per model call (1: requests run side by side, one per worker; "
        "raise it for few clients on many cores).",
    ),
    workers: int | None = typer.Option(
        None,
        help="Threads that decode uploads, run image → text and encode PNGs (default: one per core, ≥ 2).",
    ),
    batch_flows: bool = typer.Option(
        False,
        "--batch-flows",
        help="Run a flow's transform once for all waiting requests: about 1.5× the throughput under "
        "many clients, but a batched answer can differ from the same request alone by a float "
        "rounding (a pixel level, or a word at a near tie). Off: every answer is that of `vlvae sample`.",
    ),
    device: str = _device_option(),
    data: Path | None = typer.Option(None, help=_DATA_HELP, **PATH_OPTION),
    pretrained: str | None = typer.Option(None, help=_PRETRAINED_HELP),
):
    """An interactive page and a JSON API: text → images (q_Agg beside q_True), prior samples, image →
    reconstruction and caption, the run's report. API documentation at /docs."""
    import uvicorn  # noqa: PLC0415  deferred: the web server is needed only by `vlvae serve`

    on = resolve_device(device)
    source = _model_source(run, pretrained)
    if not 1 <= port <= 65535:
        raise VLVAEError(f"--port must be between 1 and 65535, got {port}")
    if not 1 <= threads <= MAX_WORKERS:
        raise VLVAEError(f"--threads must be between 1 and {MAX_WORKERS}, got {threads}")
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise VLVAEError(f"--workers must be between 1 and {MAX_WORKERS}, got {workers}")
    inference = open_inference(source, classifier, on, data)
    try:  # uvicorn would report a busy port as a traceback-free exit 1 without naming the fix
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise VLVAEError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or --host"
        ) from exc
    missing = [stage for stage, why in inference.stages().items() if why is not None]
    typer.echo(
        f"serving {source} at http://{host}:{port}/ (API documentation at /docs; models on {on})"
        + (f"; not trained: {', '.join(missing)}" if missing else "")
        + "; Ctrl-C stops"
    )
    page = create_app(inference, workers=workers, torch_threads=threads, exact=not batch_flows)
    uvicorn.run(page, host=host, port=port, log_level="warning")


_MICRO_BATCH_HELP = (
    "Importance samples of log p(x|y) and log p(x) scored at a time, for 16 images at a time: "
    "memory, not the numbers (raise it on a GPU with memory to spare, lower it if one runs out)"
)


@app.command("evaluate")
def evaluate_cmd(
    run: Path = typer.Option(
        ..., help="Run folder of any method, with the stages its method takes trained.", **PATH_OPTION
    ),
    classifier: Path = typer.Option(..., help="Classifier folder (vlvae train classifier).", **PATH_OPTION),
    caption_judge: Path | None = typer.Option(
        None,
        help="A caption judge trained on the same data (vlvae train classifier on imported captions, or "
        "reproduce's caption_judge/): its word accuracy is reported beside the classifier's correctness.",
        **PATH_OPTION,
    ),
    examples: int | None = typer.Option(
        None,
        help="Examples scored, the first of the test split (validation where there is none; "
        "default: the run's config).",
    ),
    k: int | None = typer.Option(None, help="Importance samples for the bounds on log p(x|y) and log p(x)."),
    text_k: int | None = typer.Option(
        None,
        help="Largest number of importance samples for log p(y) "
        "(reported at 1, 10, 100, ... up to it; default: the run's config).",
    ),
    seeds: int | None = typer.Option(None, help="Repetitions of the correctness draws."),
    min_accuracy: float | None = typer.Option(
        None,
        help="Refuse classifiers less accurate than this on real data (default: stored with the classifier).",
    ),
    figures: bool = typer.Option(True, help="Draw the figures."),
    device: str = _device_option("the models, the scored examples and the importance samples"),
    micro_batch: int | None = typer.Option(
        None, help=_MICRO_BATCH_HELP + " (default: the run's config, evaluation.micro_batch)."
    ),
    data: Path | None = typer.Option(None, help=_DATA_HELP, **PATH_OPTION),
):
    """Every registered metric of a run of any method (Tables 1-3, captions, ...) and figures:
    RUN/metrics.json, RUN/report.md."""
    on = resolve_device(device)
    options = (("--examples", examples), ("--k", k), ("--text-k", text_k), ("--seeds", seeds))
    for name, value in (*options, ("--micro-batch", micro_batch)):
        check_option(name, value, f"evaluation.{name[2:].replace('-', '_')}")
    if min_accuracy is not None and not 0.0 <= min_accuracy <= 1.0:
        raise VLVAEError(f"--min-accuracy must be in [0, 1], got {min_accuracy}")
    evaluate_run(
        run,
        classifier,
        examples,
        k,
        seeds,
        min_accuracy,
        figures,
        text_k=text_k,
        caption_judge=caption_judge,
        device=on,
        micro_batch=micro_batch,
        data=data,
    )
    typer.echo((Path(run) / "report.md").read_text())


@app.command("export")
def export_cmd(
    run: Path = typer.Argument(..., help="Run folder with its VLVAE trained.", **PATH_OPTION),
    out: Path = typer.Option(..., help="The archive to write, e.g. model.tar.", **PATH_OPTION),
    classifier: Path | None = typer.Option(
        None, help="The judge to include (a classifier folder for the run's data).", **PATH_OPTION
    ),
    data: Path | None = typer.Option(None, help=_DATA_HELP, **PATH_OPTION),
):
    """One file to hand to a colleague: the weights of every finished stage, the config, the vocabulary,
    a slim copy of the data (the page's examples), the judge and a model card (README.md). Use it with
    `vlvae sample --run model.tar`, `vlvae serve --run model.tar` or `vlvae.load("model.tar")`."""
    index = export_run(run, out, classifier, data)
    size = Path(out).stat().st_size
    typer.echo(
        f"wrote {out} ({len(index['members'])} files, {size / 1e6:.1f} MB; its model card is README.md)"
    )


@app.command("reproduce")
def reproduce_cmd(
    out: Path = typer.Option(
        ..., help="Output folder: data/, run/ (with report.md) and classifier/.", **PATH_OPTION
    ),
    preset_name: str = typer.Option(
        "cpu",
        "--preset",
        help="quick (8.7-15.2 min measured on 2 cores), cpu (about 61-77 min by the machine's speed, "
        "shows the paper's effect), cpu-long (about 104 min, the cpu preset with stage 1 three "
        "times longer, 8,000 image-decoder steps and the caption judge 15,000 steps) or paper (GPU scale).",
    ),
    dataset: str = typer.Option(
        dataset_names()[0],
        help="The data set to build: "
        + ", ".join(n for n in dataset_names() if get_dataset(n).build is not None)
        + " (ignored with --data).",
    ),
    root: Path | None = typer.Option(
        None,
        help="The download a data set is built from, for a data set that reads one (e.g. CelebA's).",
        **PATH_OPTION,
    ),
    data: Path | None = typer.Option(
        None,
        help="A finished data set to use instead of building one (e.g. from `vlvae data import`): "
        "the data step is skipped and the presets are sized from its images.",
        **PATH_OPTION,
    ),
    set_: list[str] = typer.Option([], "--set", help="Override config keys, e.g. --set stage1.steps=100."),
    max_minutes: float | None = typer.Option(
        None,
        help="Opt-in safety: stop stage 1 after this many minutes even before its step budget. The "
        "result then depends on the machine's speed and load; the report says when it fired.",
    ),
    workers: int = typer.Option(2, help="Processes for data generation."),
    replicates: int = typer.Option(
        1,
        help="Train q_True, q_Agg and the prior this many times each (different "
        "seeds, the same VLVAE); the report gives mean ± std over these replicates.",
    ),
    vlvae_replicates: int = typer.Option(
        1,
        help="Train the VLVAE this many times too (run/, run.r1/, ...; each "
        "with --replicates of stages 2-3); summary.md gives mean ± std over them.",
    ),
    methods: str = typer.Option(
        "",
        help="Comma-separated methods to train besides the VLVAE (registered: "
        + ", ".join(method_names())
        + "): each into methods/NAME/ with its stages 2-3 "
        "(q_Agg post hoc for the baselines); compare.md puts them in one table.",
    ),
    device: str = _device_option("the evaluation's models (training: the config's accelerator key)"),
    judges_from: Path | None = typer.Option(
        None,
        help="An earlier reproduce's output folder: copy its finished judges (classifier/, caption_judge/) "
        "instead of training them again, if they were trained on this run's data set (give it with "
        "--data) with this preset's settings (classifier, caption_judge) and seeds; e.g. a variant of a "
        "cpu-long run on its data: --preset cpu-long --set model.coord_channels=false --data "
        "runs/cpu-long/data --judges-from runs/cpu-long (cpu's judges differ from cpu-long's: its caption "
        "judge trains fewer steps, its classifier under bf16-mixed; either way they are refused).",
        **PATH_OPTION,
    ),
):
    """Everything in order: data, classifier, VLVAE, q_True, q_Agg, prior, evaluation (finished stages
    skipped)."""
    on = resolve_device(device)
    _check_replicates(replicates)
    _check_replicates(vlvae_replicates, "--vlvae-replicates")
    if not 1 <= workers <= MAX_WORKERS:
        raise VLVAEError(f"--workers must be between 1 and {MAX_WORKERS}, got {workers}")
    names = tuple(m.strip() for m in methods.split(",") if m.strip())
    if max_minutes is not None:
        set_ = [f"stage1.max_minutes={max_minutes}"] + list(set_)
    reproduce(
        out,
        preset_name,
        dataset,
        root,
        set_,
        workers,
        replicates=replicates,
        vlvae_replicates=vlvae_replicates,
        methods=names,
        data=data,
        device=on,
        judges_from=judges_from,
    )
    typer.echo((Path(out) / ("summary.md" if vlvae_replicates > 1 else "run/report.md")).read_text())
    if names:
        typer.echo((Path(out) / "compare.md").read_text())


@app.command("compare")
def compare_cmd(
    runs: list[Path] = typer.Argument(..., help="Run folders of any methods, trained on one data set."),
    classifier: Path = typer.Option(
        ..., help="Classifier folder of that data set (vlvae train classifier).", **PATH_OPTION
    ),
    out: Path = typer.Option(..., help="Folder for compare.md, compare.json and Fig. 7.", **PATH_OPTION),
    examples: int | None = typer.Option(
        None,
        help="Examples scored, the first of the test split (validation where there is none; "
        "default: the first run's config).",
    ),
    seeds: int | None = typer.Option(None, help="Repetitions of the correctness draws."),
    k: int | None = typer.Option(None, help="Importance samples of the log p(x|y) bound."),
    device: str = _device_option("the models of each evaluation"),
    micro_batch: int | None = typer.Option(
        None, help=_MICRO_BATCH_HELP + " (default: the first run's config)."
    ),
):
    """One table over methods: text→image and prior correctness, captions, log p(x|y), posterior
    spread, time.

    Each run is evaluated as `vlvae evaluate` does (writing its metrics.json and report.md), unless
    its metrics.json already holds this judge's evaluation of its present weights with the same
    settings, made by the same code (the same commit of a clean checkout and package versions),
    which is reused (whichever device made it); the table renders those metrics."""
    on = resolve_device(device)
    for name, value in (
        ("--examples", examples),
        ("--k", k),
        ("--seeds", seeds),
        ("--micro-batch", micro_batch),
    ):
        check_option(name, value, f"evaluation.{name[2:].replace('-', '_')}")
    compare_runs(runs, classifier, out, examples, seeds, k, device=on, micro_batch=micro_batch)
    typer.echo((Path(out) / "compare.md").read_text())


def main() -> None:
    """Entry point: run the app, printing VLVAEErrors and usage errors (``--steps abc``, a missing
    option) as one line, ``error: ...``, with exit code 2."""
    # Lightning's banners and tips drown the one progress line per stage; its warnings still show.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message="Found .* module\\(s\\) in eval mode")  # the frozen VLVAE
    # The step-driven sampler makes mid-epoch resumption exact, which Lightning cannot know.
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before")
    try:
        code = app(standalone_mode=False)
    except VLVAEError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except NoArgsIsHelpError as exc:  # a bare command: its help is already printed
        sys.exit(exc.exit_code)
    except ClickException as exc:
        where = f"; see `{exc.ctx.command_path} --help`" if getattr(exc, "ctx", None) is not None else ""
        # (typer words a parser's ValueError as "Value error, ...")
        message = " ".join(exc.format_message().replace("Value error, ", "").split()).rstrip(".")
        typer.echo(f"error: {message}{where}", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(1)

    if code == INTERRUPTED:  # Ctrl-C outside a fit (a fit prints its own line naming the step to resume from)
        typer.echo("error: interrupted; files already written are complete, so rerun the command", err=True)
    # as typer's standalone mode does: exit with the code of an explicit exit (--help: 0), else 0
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


if __name__ == "__main__":
    main()

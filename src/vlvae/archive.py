"""A trained model in one file: ``vlvae export`` writes it, :func:`load` and ``--run model.tar`` read it.

An archive (a tar file, ``model.tar``, or gzip-compressed, ``model.tar.gz``) holds what
:class:`vlvae.inference.Inference` needs and nothing that runs code::

    vlvae-model.json        the index: format, version, what each folder is, and the sha256 and size
                            of every other member (first in the archive)
    README.md               the model card: what the model is, the command and commit that trained
                            it, its data's provenance, its headline figures, intended use and limits
    run/                    config.yaml, run.json, and per stage (stage1, q_agg, q_true, prior; the
                            first training of each) weights.safetensors and metrics.json; the run's
                            metrics.json, report.md and figures/ when it was evaluated
    data/                   a slim copy of the data set: manifest.json (its counts those of the copy,
                            ``subset_of`` the fingerprint and counts of the set it was cut from),
                            vocab.json, the first 64 images of its val split (the page's examples)
                            and 8 of its train split
    classifier/             the judge (classifier.json, weights.safetensors, metrics.json), when
                            exported with one

Weights are safetensors files (tensors only, never pickles: reading them runs no code). ``run.json``
in the archive names its data as ``../data`` with that slim copy's fingerprint (``data_fingerprint``);
the full set's stays as ``data_fingerprint_full`` and in the slim manifest's ``subset_of``, for
provenance only (no command takes a slim copy for the full set). ``run/metrics.json`` and
``run/report.md`` keep the paths of the machine that evaluated the run.

Reading (:func:`open_archive`) checks before anything is used: the file is a tar (plain or gzip) of
this format and version whose first member is the index; every member, before its body is read, is
a regular file with a normalised relative name (no ``..``, ``.``, backslash or colon) that the index
lists with that size, and its sha256 is checked as it is copied; every listed member is there. Only
listed bytes are read, so memory and disk stay bounded by the index. A truncated, tampered or foreign
archive is refused in one line. The checksums find damage and edits, not a forger who rewrites the
index too; the safetensors weights keep even such a file from running code. The members are
extracted into a temporary folder of the cache (``$VLVAE_CACHE``, else ``$XDG_CACHE_HOME/vlvae``,
else ``~/.cache/vlvae``), the run in it is checked, and it is renamed to ``models/<sha256 of the
index>``; an existing extraction is used only when every file still matches the index, and nothing
half-written stays behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import numpy as np

from vlvae import __version__
from vlvae.config import load_config
from vlvae.data.format import load_images, read_manifest, splits_of
from vlvae.errors import VLVAEError
from vlvae.evaluation.judge import check_classifier_fits
from vlvae.inference import Inference
from vlvae.io import as_disk_full, atomic_path, canonical_sha256, read_json, sha256_file
from vlvae.methods import get_method
from vlvae.paths import check_output_file
from vlvae.runinfo import git_commit
from vlvae.runs import STAGES, check_run_data, data_fingerprint, open_run, stage_dir

__all__ = [
    "FORMAT",
    "VERSION",
    "INDEX",
    "EXAMPLES",
    "Archive",
    "is_archive",
    "export_run",
    "open_archive",
    "cache_root",
    "PRETRAINED",
    "pretrained_path",
    "open_inference",
    "load",
]

#: The index member's ``format`` and ``version``; an archive of another version is refused.
FORMAT = "vlvae-model"
VERSION = 1
#: The index member: the first in the archive.
INDEX = "vlvae-model.json"
#: Images kept in the archive's slim data: the val split's are the page's examples; the train split
#: keeps a few, so that the copy is a whole data set (:func:`vlvae.data.format.check_dataset`).
EXAMPLES = {"train": 8, "val": 64}
#: Suffixes of an archive written gzip-compressed (any other: a plain tar).
GZIP_SUFFIXES = (".gz", ".tgz")
#: What a stage folder contributes to an archive (its checkpoint, logs and optimiser state do not).
_STAGE_FILES = ("weights.safetensors", "metrics.json")
#: What a classifier folder contributes.
_CLASSIFIER_FILES = ("classifier.json", "weights.safetensors", "metrics.json")
#: What an evaluated run contributes besides its stages.
_RUN_FILES = ("config.yaml", "metrics.json", "report.md")
#: The models shipped with the package: name (``--pretrained``) -> (archive in ``vlvae/pretrained/``, what
#: it is, the command that rebuilds it from a checkout).
PRETRAINED = {
    "two-objects": (
        "two-objects.tar.gz",
        "the quick preset's VLVAE on Two Objects (64 px; make demo's model), with q_Agg, q_True and the "
        "learned prior; without its judge, which would double its size",
        "vlvae reproduce --preset quick --out runs/quick && vlvae export runs/quick/run "
        "--out src/vlvae/pretrained/two-objects.tar.gz",
    ),
}
#: The folder of the shipped archives.
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
#: The largest archive member read (a damaged index could claim anything), and the largest index.
_MAX_MEMBER = 4 << 30
_MAX_INDEX = 1 << 20


@dataclass(frozen=True)
class Archive:
    """An archive checked and extracted: its folders in the cache, and its index."""

    root: Path
    index: dict

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def classifier(self) -> Path | None:
        return self.root / "classifier" if self.index.get("classifier") else None


#: Names that are archives whether or not they exist (so a mistyped one is reported as a missing archive).
ARCHIVE_SUFFIXES = (".tar", ".tgz", ".tar.gz")


def is_archive(path: Path) -> bool:
    """Whether ``path`` names an archive (a file, or a name ending in .tar, .tar.gz or .tgz) rather than
    a run folder."""
    path = Path(path)
    return path.is_file() or (not path.is_dir() and path.name.endswith(ARCHIVE_SUFFIXES))


def cache_root() -> Path:
    """Where archives are extracted: ``$VLVAE_CACHE``, else ``$XDG_CACHE_HOME/vlvae``, else
    ``~/.cache/vlvae``."""
    if os.environ.get("VLVAE_CACHE"):
        return Path(os.environ["VLVAE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vlvae"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------- writing


def _slim_data(data: Path, manifest: dict, examples: dict[str, int]) -> tuple[dict[str, bytes], str]:
    """The members of the archive's slim data copy (manifest, vocabulary, and the first
    ``examples[split]`` images and records of the train and val splits) and the copy's fingerprint."""
    members = {"data/vocab.json": (data / "vocab.json").read_bytes()}
    counts = {}
    for split in ("train", "val"):
        images = load_images(data, split)[: examples[split]]
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(images))
        members[f"data/{split}/images.npy"] = buffer.getvalue()
        scenes = read_json(data / split / "scenes.json", "rebuild the data set")
        scenes["scenes"] = scenes["scenes"][: len(images)]  # check_dataset has checked the list
        members[f"data/{split}/scenes.json"] = json.dumps(scenes).encode()
        counts[split] = len(images)
    slim = {key: value for key, value in manifest.items() if key not in ("counts", "sha256")}
    slim["counts"] = counts
    slim["subset_of"] = {
        "fingerprint": data_fingerprint(data),
        "counts": {split: manifest.get("counts", {}).get(split) for split in splits_of(manifest)},
        "note": f"the first {examples['train']} train and {examples['val']} val images, cut by vlvae export",
    }
    members["data/manifest.json"] = json.dumps(slim, indent=1).encode()
    return members, canonical_sha256(slim)


def _percent(entry, difference: bool = False) -> str | None:
    """``41.4 % ± 0.7`` of a correctness entry (mean, standard error over examples), ``+2.8 points ±
    0.4`` of a difference, or None."""
    if not isinstance(entry, dict) or not isinstance(entry.get("mean"), (int, float)):
        return None
    error = entry.get("stderr_over_examples", entry.get("stderr"))
    value = f"{100 * entry['mean']:+.1f} points" if difference else f"{100 * entry['mean']:.1f} %"
    return value + (f" ± {100 * error:.1f}" if isinstance(error, (int, float)) else "")


def _cell(text: str) -> str:
    """Text for a Markdown table cell (its bars escaped)."""
    return text.replace("|", "\\|")


def _headline(metrics: dict | None) -> list[str]:
    """Markdown lines of a run's headline figures: the judge's correctness of images from each text
    posterior, each prior and q(z|x), and the paper's two differences."""
    if not metrics:
        return ["The run was not evaluated when it was exported (no `metrics.json`)."]
    table = metrics.get("correctness")
    if not isinstance(table, dict):
        return ["The run's metrics.json holds no correctness table."]
    labels = {**metrics.get("distributions", {}).get("text_posteriors", {})}
    labels.update(metrics.get("distributions", {}).get("priors", {}))
    rows = []
    for group in ("conditional", "prior", "differences"):
        for name, entry in (table.get(group) or {}).items():
            rows.append((labels.get(name, name), _percent(entry, group == "differences")))
    rows.append(("reconstruction, z = mean of q(z|x)", _percent(table.get("reconstruction"))))
    settings = metrics.get("settings", {})
    judge = metrics.get("classifier") or {}
    accuracy = (judge.get("real_accuracy") or {}).get("overall")
    lines = [
        f"Correctness: the share of an image's attributes the judge ({judge.get('judge', 'classifier')}) "
        f"reads as the text says, over {settings.get('examples', '?')} examples of the "
        f"{settings.get('split', '?')} split (± standard error over examples; differences paired):",
        "",
        "| images from | correctness |",
        "|---|---|",
        *(f"| {_cell(label)} | {value} |" for label, value in rows if value is not None),
        "",
    ]
    if isinstance(accuracy, (int, float)):
        lines.append(f"The judge reads real validation images at {100 * accuracy:.1f} % accuracy.")
    lines.append("The whole report is `run/report.md` in this archive (`vlvae serve` shows it at /report).")
    return lines


def _machine_line(machine: dict) -> str:
    """The model card's line on where the run folder was made (each stage's metrics.json names the
    machine that trained it)."""
    gpus = machine.get("cuda_devices", [])
    return f"- run folder made on {machine['cpu']}" + (f" with {', '.join(gpus)}" if gpus else "")


def _model_card(run: Path, cfg, info: dict, manifest: dict, metrics: dict | None, classifier: bool) -> str:
    """The archive's README.md."""
    method = get_method(cfg.method.name)
    versions = info.get("versions", {})
    stages = [s for s in STAGES if (stage_dir(run, s) / "weights.safetensors").is_file()]
    counts = manifest.get("counts", {})
    lines = [
        f"# vlvae model: {method.title} on {manifest.get('dataset', 'an unnamed data set')}",
        "",
        "## What it is",
        "",
        f"A {method.title} trained with vlvae (multimodal latent-variable models of images and text; "
        "Cremer & Kushman 2018, arXiv:1806.02346): text → images through q(z|y), prior samples, "
        f"image → caption. Images {cfg.model.image_size} × {cfg.model.image_size} px, "
        f"z of {cfg.model.latent_dim} dimensions. Stages: {', '.join(stages)}.",
        "",
        "## How it was made",
        "",
        f"- preset `{info.get('preset', cfg.name)}`, seed {info.get('seed', cfg.seed)}",
        f"- vlvae commit `{info.get('git_commit', 'unknown')}`"
        + (f", vlvae {versions['vlvae']}" if "vlvae" in versions else ""),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        *([_machine_line(info["machine"])] if info.get("machine") else []),
        f"- the command: `vlvae reproduce --preset {info.get('preset', cfg.name)} --out DIR` "
        "(or its stages one by one: `vlvae train vlvae`, `vlvae train text-posterior`, `vlvae train prior`)",
        "",
        "## Data",
        "",
        f"- data set `{manifest.get('dataset')}`, counts {json.dumps(counts)}, "
        f"data seed {manifest.get('seed', 'not recorded')}",
        f"- fingerprint `{info.get('data_fingerprint') or 'not recorded (the run predates them)'}` "
        "(sha256 of its manifest, which records the sha256 of every array)",
        f"- this archive holds only the first {EXAMPLES['val']} val images (the page's examples) and "
        f"{EXAMPLES['train']} train images of the set (`data/`); train again on the full set to reproduce it",
        "",
        "## Headline figures",
        "",
        *_headline(metrics),
        "",
        "## Intended use and limits",
        "",
        "- Research and teaching: how the text posterior q(z|y) and the prior p(z) shape generated "
        "images. Not a general text-to-image model: it knows only its data set's words and scenes.",
        "- Texts outside the training vocabulary are read as the unknown word (free captions) or "
        "refused (texts of fixed slots).",
        "- "
        + (
            "The judge (`classifier/`) scores images of this data set only."
            if classifier
            else "Exported without its judge: images are not scored."
        ),
        "",
        "## Use",
        "",
        "```bash",
        "vlvae sample --run model.tar --text '...' --out samples.png",
        "vlvae serve --run model.tar",
        "```",
        "",
        "```python",
        "import vlvae",
        "model = vlvae.load('model.tar')",
        "samples = model.from_text('...', 'agg', n=4)   # samples.images: uint8 (4, H, W, 3)",
        "```",
        "",
    ]
    return "\n".join(lines)


def _folder_members(folder: Path, prefix: str, names) -> dict[str, bytes]:
    return {f"{prefix}/{name}": (folder / name).read_bytes() for name in names if (folder / name).is_file()}


def export_run(run: Path, out: Path, classifier: Path | None = None, data: Path | None = None) -> dict:
    """Write the archive of a trained run to ``out`` (a file; written whole, then renamed).

    Args:
        run: a run folder with stage 1 trained (the other stages are included when finished).
        out: the archive to write (``model.tar``; ``model.tar.gz`` or ``.tgz``: gzip-compressed, about
            20 % smaller); an existing file is replaced only when whole.
        classifier: the judge to include (a classifier folder that fits the run's data).
        data: the run's data set where it is not where ``run.json`` says.

    Returns:
        The archive's index.

    Raises:
        VLVAEError: not a run, stage 1 not trained, the data or judge missing or not the run's; before
            anything is written.
    """
    run, out = Path(run), Path(out)
    check_output_file(out, "model archive")
    cfg, info = open_run(run, data)
    data = check_run_data(run, cfg, info)
    manifest = read_manifest(data)
    if not (stage_dir(run, STAGES[0]) / "weights.safetensors").is_file():
        raise VLVAEError(
            f"{run} has no trained stage 1; train it with `vlvae train vlvae --data DATA --out {run}`"
        )
    if classifier is not None:
        check_classifier_fits(classifier, data, f"the data of {run}")
    members: dict[str, bytes] = {}
    for name in _RUN_FILES:
        if (run / name).is_file():
            members[f"run/{name}"] = (run / name).read_bytes()
    for stage in STAGES:
        folder = stage_dir(run, stage)
        if (folder / "metrics.json").is_file():  # finished stages only
            members.update(_folder_members(folder, f"run/{folder.name}", _STAGE_FILES))
    figures = run / "figures"
    if figures.is_dir():
        for path in sorted(figures.glob("*.png")):
            members[f"run/figures/{path.name}"] = path.read_bytes()
    slim, slim_fingerprint = _slim_data(data, manifest, EXAMPLES)
    members.update(slim)
    record = {key: value for key, value in info.items() if key != "data_absolute"}
    record["data"] = "../data"
    # The run inside the archive is tied to the slim copy; the full set stays named as its provenance.
    record["data_fingerprint"] = slim_fingerprint
    record["data_fingerprint_full"] = info.get("data_fingerprint")
    members["run/run.json"] = json.dumps(record, indent=1).encode()
    if classifier is not None:
        members.update(_folder_members(Path(classifier), "classifier", _CLASSIFIER_FILES))
    metrics = None
    if "run/metrics.json" in members:
        try:
            metrics = json.loads(members["run/metrics.json"])
        except ValueError as exc:
            raise VLVAEError(
                f"{run}/metrics.json is corrupt ({exc}); evaluate the run again: vlvae evaluate --run {run}"
            ) from exc
    card = _model_card(run, cfg, info, manifest, metrics, classifier is not None)
    members["README.md"] = card.encode()
    index = {
        "format": FORMAT,
        "version": VERSION,
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "exported_by": {"vlvae": __version__, "git_commit": git_commit()},
        "trained_at": info.get("git_commit"),
        "run": "run",
        "data": "data",
        "classifier": "classifier" if classifier is not None else None,
        "members": {
            name: {"sha256": _sha256(body), "size": len(body)} for name, body in sorted(members.items())
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, sum(len(b) for b in members.values()) + (1 << 20)) as tmp:
        mode = "w:gz" if out.suffix in GZIP_SUFFIXES else "w"
        with tarfile.open(tmp, mode, format=tarfile.PAX_FORMAT) as tar:
            for name, body in [(INDEX, json.dumps(index, indent=1).encode()), *sorted(members.items())]:
                entry = tarfile.TarInfo(name)
                entry.size, entry.mode, entry.mtime = len(body), 0o644, 0
                tar.addfile(entry, io.BytesIO(body))
    return index


# --------------------------------------------------------------------------------------- reading


def _refuse(path: Path, why: str) -> VLVAEError:
    return VLVAEError(
        f"{path} is not a usable vlvae model archive: {why}; export it again with `vlvae export`"
    )


def _safe_name(name: str) -> bool:
    """A member name that names one file inside the archive's folder, written one way only: relative,
    normalised (no ``.``, ``..``, doubled or trailing slashes), no backslash and no colon."""
    pure = PurePosixPath(name)
    return (
        bool(name)
        and str(pure) == name
        and not pure.is_absolute()
        and ".." not in pure.parts
        and "\\" not in name
        and ":" not in name
    )


def _read_index(path: Path, tar: tarfile.TarFile) -> tuple[dict, dict]:
    """The archive's index (its first member) and the members it lists, checked."""
    first = tar.next()
    if first is None or first.name != INDEX or not first.isfile():
        raise _refuse(path, f"its first member is not {INDEX}")
    if first.size > _MAX_INDEX:
        raise _refuse(path, f"its {INDEX} is {first.size} bytes")
    try:
        index = json.loads(tar.extractfile(first).read())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _refuse(path, f"its {INDEX} is not JSON ({' '.join(str(exc).split())[:80]})") from exc
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise _refuse(path, f"its {INDEX} is not a {FORMAT} index")
    if index.get("version") != VERSION:
        raise VLVAEError(
            f"{path} is a {FORMAT} archive of version {index.get('version')!r}; this vlvae "
            f"({__version__}) reads version {VERSION}; export it again with this version's `vlvae export`"
        )
    listed = index.get("members")
    if not isinstance(listed, dict) or not listed:
        raise _refuse(path, f"its {INDEX} lists no members")
    for name, entry in listed.items():
        size = entry.get("size") if isinstance(entry, dict) else None
        if not _safe_name(name) or name == INDEX:
            raise _refuse(path, f"member name {name!r} is not allowed")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= _MAX_MEMBER:
            raise _refuse(path, f"its {INDEX} gives member {name!r} no usable size")
        if not isinstance(entry.get("sha256"), str):
            raise _refuse(path, f"its {INDEX} gives member {name!r} no sha256")
    parents = {str(parent) for name in listed for parent in PurePosixPath(name).parents}
    clash = sorted(parents & set(listed))
    if clash:
        raise _refuse(path, f"member {clash[0]!r} is both a file and a folder")
    for needed in ("run/config.yaml", "run/run.json", "data/manifest.json"):
        if needed not in listed:
            raise _refuse(path, f"it has no {needed}")
    return index, listed


def _copy_checked(path: Path, source, size: int, target: Path) -> str:
    """Copy ``size`` bytes of a member to ``target`` in chunks; its sha256."""
    digest = hashlib.sha256()
    copied = 0
    with open(target, "wb") as out:
        while True:
            chunk = source.read(1 << 20)
            if not chunk:
                break
            copied += len(chunk)
            if copied > size:
                break
            digest.update(chunk)
            out.write(chunk)
    if copied != size:
        raise _refuse(path, f"member {target.name!r} has another size than its index says (damaged?)")
    return digest.hexdigest()


def _extract_checked(path: Path, work: Path) -> dict:
    """Extract an archive into the empty folder ``work``, every check of the module docstring passed:
    the index first, then each member, before its body is read, a regular file the index lists with
    that size, then its sha256. Nothing unlisted is read, so the memory and disk used are bounded by
    the index's sizes. Returns the index."""
    if not path.is_file():
        raise VLVAEError(
            f"model archive {path} does not exist; make one with `vlvae export RUN --out {path}`"
        )
    try:
        with tarfile.open(path, "r:*") as tar:  # a plain or a gzip-compressed tar
            index, listed = _read_index(path, tar)
            seen = set()
            while (entry := tar.next()) is not None:  # after the index, in the order written
                name = entry.name
                if not entry.isfile():
                    raise _refuse(path, f"member {name!r} is not a regular file")
                if name not in listed or name in seen:
                    raise _refuse(path, f"member {name!r} is not in its index (or is there twice)")
                if entry.size != listed[name]["size"]:
                    raise _refuse(path, f"member {name!r} does not match its checksum (damaged or edited)")
                seen.add(name)
                file = work.joinpath(*PurePosixPath(name).parts)
                file.parent.mkdir(parents=True, exist_ok=True)
                if _copy_checked(path, tar.extractfile(entry), entry.size, file) != listed[name]["sha256"]:
                    raise _refuse(path, f"member {name!r} does not match its checksum (damaged or edited)")
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise _refuse(path, f"it is truncated or not a tar file ({' '.join(str(exc).split())})") from exc
    missing = sorted(set(listed) - seen)
    if missing:
        raise _refuse(path, f"member {missing[0]!r} is missing (truncated?)")
    (work / INDEX).write_text(json.dumps(index, indent=1))  # last: marks a whole extraction
    return index


def _intact(folder: Path, index: dict) -> bool:
    """Whether an extracted folder holds every member of ``index`` unchanged (size and sha256)."""
    try:
        for name, entry in index["members"].items():
            file = folder.joinpath(*PurePosixPath(name).parts)
            if file.stat().st_size != entry["size"] or sha256_file(file) != entry["sha256"]:
                return False
        return json.loads((folder / INDEX).read_text()) == index
    except (OSError, ValueError):
        return False


def _check_extracted(root: Path) -> None:
    """The extracted run opens: its config, vocabulary and data (the slim copy) are checked."""
    cfg = load_config(root / "run" / "config.yaml")
    check_run_data(root / "run", cfg, open_run(root / "run")[1])


def open_archive(path: Path, cache: Path | None = None) -> Archive:
    """Check an archive, extract it into a temporary folder of the cache, check the run there, and
    keep it as ``models/<sha256 of the index>``; an existing extraction is used only when every file
    in it still matches the index (otherwise it is replaced). Nothing half-written stays behind.

    Raises:
        VLVAEError: the archive is missing, truncated, of another format or version, or a member is
            missing, unlisted, unsafe or does not match its checksum; one line.
    """
    path = Path(path)
    root = Path(cache) if cache is not None else cache_root()
    models = root / "models"
    try:
        models.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".extracting.", dir=models))
    except OSError as exc:
        raise VLVAEError(
            f"cannot extract {path} into {models} ({exc.strerror or exc}); "
            "set VLVAE_CACHE to a writable folder"
        ) from exc
    try:
        try:
            index = _extract_checked(path, work)
        except OSError as exc:
            raise as_disk_full(exc, models, f"the extraction of {path}") or VLVAEError(
                f"cannot extract {path} into {models} ({exc.strerror or exc}); set VLVAE_CACHE to a "
                "writable folder"
            ) from exc
        _check_extracted(work)
        target = models / canonical_sha256(index)
        if not _intact(target, index):
            if target.exists():  # damaged, edited or half-deleted since: replaced by the fresh copy
                shutil.rmtree(target, ignore_errors=True)
            try:
                work.rename(target)
            except OSError as exc:  # another reader put a copy there first
                if not _intact(target, index):
                    raise VLVAEError(
                        f"cannot keep the extraction of {path} at {target} ({exc.strerror or exc}); "
                        "set VLVAE_CACHE to a writable folder"
                    ) from exc
        return Archive(target, index)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def pretrained_path(name: str) -> Path:
    """The archive of a model shipped with the package, by its name; one line when the name is
    unknown or the archive is not in this installation."""
    if name not in PRETRAINED:
        raise VLVAEError(f"--pretrained must be one of {', '.join(map(repr, PRETRAINED))}, got {name!r}")
    file, _, rebuild = PRETRAINED[name]
    path = PRETRAINED_DIR / file
    if not path.is_file():
        raise VLVAEError(
            f"the pretrained model {name!r} is not in this installation ({path} is missing); build it "
            f"from a checkout with `{rebuild}`, or use --run with a run folder or archive"
        )
    return path


def open_inference(
    path: Path, classifier: Path | None = None, device="cpu", data: Path | None = None
) -> Inference:
    """:meth:`Inference.open` of a run folder or of an archive (its own judge unless ``classifier``
    names another)."""
    if is_archive(path):
        if data is not None:
            raise VLVAEError(f"--data is for a run folder; the archive {path} brings its own data")
        archive = open_archive(path)
        return Inference.open(archive.run, classifier or archive.classifier, device)
    return Inference.open(path, classifier, device, data)


def load(path: str | Path, device: str = "cpu", classifier: str | Path | None = None) -> Inference:
    """A trained model ready to use, from an archive (``vlvae export``) or a run folder.

    Example:
        >>> import vlvae  # doctest: +SKIP
        >>> model = vlvae.load("model.tar")  # doctest: +SKIP
        >>> model.from_text("small red metal cube left large blue rubber sphere", "agg", n=4).images.shape
        ... # doctest: +SKIP
        (4, 64, 64, 3)

    Args:
        path: a ``model.tar`` or a run folder.
        device: where the models run (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        classifier: a judge for a run folder (an archive brings its own).

    Returns:
        :class:`vlvae.inference.Inference`: ``from_text``, ``from_prior``, ``reconstruct``, ``caption``.
    """
    return open_inference(Path(path), None if classifier is None else Path(classifier), device)

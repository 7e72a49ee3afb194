"""The data-set registry: a new data set is one package plus one registry name, and nothing outside a
data set's package branches on its name.

A data set is registered here from outside the package (a module made in this file, put where the
registry looks), and the tiny pipeline runs on it: its builder, the caption judge, stage 1, q_True,
q_Agg, the prior, evaluation with Tables 1-3.
"""

import ast
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import vlvae.datasets as registry
from vlvae.data.format import finalise_dataset
from vlvae.data.vocabulary import Vocabulary
from vlvae.datasets import DataSet, Judge, dataset_names, get_dataset
from vlvae.datasets.caption_judge import CAPTION_JUDGE, load_judge
from vlvae.recipes.reproduce import reproduce
from vlvae.seeds import caption_judge_seed
from vlvae.training.caption_judge import train_caption_judge

SRC = Path(__file__).resolve().parents[2] / "src" / "vlvae"


# ----------------------------------------------------------------------------- no module names a data set


def _names() -> set[str]:
    names = set()
    for name in dataset_names():
        names |= {name, get_dataset(name).title}
    return names


def _constants(node) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _violations(path: Path, names: set[str]) -> list[str]:
    """Places in a module outside the data sets' packages that branch on a data set's name or import a
    data set's package."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            hits = names & set(_constants(ast.Tuple(elts=[node.left, *node.comparators])))
            if hits:
                found.append(f"{path.name}:{node.lineno} compares with {sorted(hits)}")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
            "get_dataset",
            "dataset_title",
        ):
            hits = names & set(_constants(node))
            if hits:
                found.append(f"{path.name}:{node.lineno} looks up {sorted(hits)}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for module in modules:
                parts = module.split(".")
                if parts[:2] == ["vlvae", "datasets"] and len(parts) > 2 and parts[2] in dataset_names():
                    found.append(f"{path.name}:{node.lineno} imports {module}")
                    break
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[:2] == ["vlvae", "datasets"] and len(parts) > 2 and parts[2] in dataset_names():
                    found.append(f"{path.name}:{node.lineno} imports {alias.name}")
    return found


def test_no_module_outside_a_data_sets_package_branches_on_its_name():
    names = _names()
    packages = [SRC / "datasets" / name for name in dataset_names()]
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if any(package in path.parents for package in packages):
            continue
        found += _violations(path, names)
    assert not found, "modules outside a data set's package name it:\n" + "\n".join(found)


def test_the_source_check_catches_a_branch_on_a_name(tmp_path):
    """The check above can fail: a module that compares with a name, looks one up or imports a package
    is caught."""
    bad = tmp_path / "bad.py"
    name = dataset_names()[0]
    bad.write_text(
        f"from vlvae.datasets.{name} import DATASET\nif x == {name!r}:\n    pass\ny = get_dataset({name!r})\n"
    )
    assert len(_violations(bad, _names())) == 3


# ----------------------------------------------------------------------------- one registered from outside

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
PLACES = ("left", "right")


def _build_squares(out: Path, cfg, source, workers: int, progress: bool) -> None:
    """A square of a colour on one side of a 16 px image; the text names both ("red left")."""
    rng = np.random.default_rng(cfg.data.seed)
    out.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, n in (("train", 96), ("val", 48)):
        images = np.full((n, 16, 16, 3), 128, np.uint8)
        records = []
        for i in range(n):
            colour, place = rng.choice(list(COLOURS)), rng.choice(PLACES)
            lo = 1 if place == "left" else 9
            images[i, 4:12, lo : lo + 6] = COLOURS[colour]
            records.append({"text": [str(colour), str(place)]})
        (out / split).mkdir(exist_ok=True)
        np.save(out / split / "images.npy", images)
        splits[split] = (records, {})
    vocab = Vocabulary(
        words=(*COLOURS, *PLACES), slots=(tuple(COLOURS), PLACES), slot_names=("colour", "place")
    )
    finalise_dataset(out, splits, vocab, {"dataset": "squares", "image_size": 16, "text_length": 2})


def _squares_module() -> types.ModuleType:
    module = types.ModuleType("vlvae.datasets.squares")
    module.DATASET = DataSet(
        name="squares",
        title="Squares",
        judge=Judge(
            key=CAPTION_JUDGE,
            title="caption judge",
            train=lambda data, out, cfg, name, resume, progress: train_caption_judge(
                data, out, cfg, resume, progress
            ),
            load=load_judge,
            section="caption_judge",
            seed=caption_judge_seed,
        ),
        build=_build_squares,
    )
    return module


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    """``reproduce --dataset squares --preset tiny`` with Squares registered from outside the package."""
    patch = pytest.MonkeyPatch()
    patch.setattr(registry, "_PACKAGES", registry._PACKAGES + ("squares",))
    patch.setitem(sys.modules, "vlvae.datasets.squares", _squares_module())
    out = tmp_path_factory.mktemp("squares") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reproduce(out, "tiny", dataset="squares", workers=1, progress=False)
        yield out
    finally:
        torch.set_num_threads(threads)
        patch.undo()


def test_a_data_set_registered_from_outside_runs_the_tiny_pipeline(squares):
    metrics = json.loads((squares / "run" / "metrics.json").read_text())
    assert metrics["dataset"] == "squares"
    report = (squares / "run" / "report.md").read_text()
    for fragment in ("Table 1", "Table 2", "Table 3"):
        assert fragment in report
    classifier = json.loads((squares / "classifier" / "classifier.json").read_text())
    assert classifier["judge"] == CAPTION_JUDGE and classifier["dataset"] == "squares"
    for table in ("conditional", "prior"):
        for value in metrics["correctness"][table].values():
            assert 0.0 <= value["mean"] <= 1.0


def test_judges_from_takes_the_judge_of_a_caption_judged_data_set(squares, tmp_path, capsys):
    """A data set judged by the caption judge keeps it in classifier/, trained with the caption
    judge's section and seed: --judges-from copies it (checked against those, not the classifier's)."""
    capsys.readouterr()
    again = tmp_path / "again"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reproduce(
            again,
            "tiny",
            dataset="squares",
            workers=1,
            progress=False,
            data=squares / "data",
            judges_from=squares,
            overrides=["stage1.steps=4"],
        )
    finally:
        torch.set_num_threads(threads)
    assert "copied from" in capsys.readouterr().out
    for name in ("classifier.json", "metrics.json", "weights.safetensors"):
        assert (again / "classifier" / name).read_bytes() == (squares / "classifier" / name).read_bytes()

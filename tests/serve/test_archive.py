"""Runs that travel: relative data paths and fingerprints, `vlvae export`, archives read by `vlvae.load`,
`vlvae sample --run model.tar` and `vlvae serve --run model.tar`, and archives refused when damaged."""

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from fastapi.testclient import TestClient

import vlvae
from vlvae.archive import (
    EXAMPLES,
    INDEX,
    PRETRAINED,
    export_run,
    open_archive,
    open_inference,
    pretrained_path,
)
from vlvae.data.format import check_dataset, read_manifest
from vlvae.errors import VLVAEError
from vlvae.inference import Inference
from vlvae.runs import data_fingerprint, init_run, open_run, read_run_info
from vlvae.serve import create_app

TEXT = "small red metal cube left large blue rubber sphere"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Every test extracts archives into its own cache folder."""
    monkeypatch.setenv("VLVAE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    """(archive, the copy of the tiny folder it was exported from): the archive of the tiny run with its
    judge, exported from a copy that is then deleted (run, data and judge)."""
    where = tmp_path_factory.mktemp("exported")
    copy = where / "tiny"
    shutil.copytree(tiny, copy, ignore=shutil.ignore_patterns("*.ckpt", "logs"))
    archive = where / "shared" / "model.tar"
    export_run(copy / "run", archive, copy / "classifier")
    shutil.rmtree(copy)
    return archive


def one_error_line(code, err, *fragments):
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


# ------------------------------------------------------------------------ a run finds its data


def test_run_json_records_a_relative_path_an_absolute_one_and_a_fingerprint(tiny):
    record = json.loads((tiny / "run" / "run.json").read_text())
    assert record["data"] == "../data"
    assert record["data_absolute"] == str((tiny / "data").resolve())
    assert (
        record["data_fingerprint"] == data_fingerprint(tiny / "data")
        and len(record["data_fingerprint"]) == 64
    )


def test_a_run_moved_with_its_data_finds_it_by_the_relative_path(tiny, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(tiny / "run", moved / "run", ignore=shutil.ignore_patterns("*.ckpt", "logs"))
    shutil.copytree(tiny / "data", moved / "data")
    info = read_run_info(moved / "run")
    assert info["data"] == str(moved / "data")
    a = Inference.open(moved / "run").from_text(TEXT, "agg", n=2, seed=3)
    b = Inference.open(tiny / "run").from_text(TEXT, "agg", n=2, seed=3)
    np.testing.assert_array_equal(a.images, b.images)


def test_a_run_moved_alone_finds_its_data_by_the_absolute_path(tiny, tmp_path):
    shutil.copytree(tiny / "run", tmp_path / "run", ignore=shutil.ignore_patterns("*.ckpt", "logs"))
    assert read_run_info(tmp_path / "run")["data"] == str((tiny / "data").resolve())


def test_data_moved_apart_is_named_and_given_with_data(tiny, tmp_path, vlvae):
    run = tmp_path / "a" / "run"
    data = tmp_path / "b" / "data"
    shutil.copytree(tiny / "run", run, ignore=shutil.ignore_patterns("*.ckpt", "logs"))
    shutil.copytree(tiny / "data", data)
    record = json.loads((run / "run.json").read_text())
    record["data_absolute"] = str(tmp_path / "gone")  # as if the data had moved from there
    (run / "run.json").write_text(json.dumps(record))
    out = tmp_path / "s.png"
    code, _, err = vlvae("sample", "--run", run, "--text", TEXT, "--out", out)
    one_error_line(code, err, "is not at", "--data DIR")
    assert not out.exists()
    code, output, err = vlvae("sample", "--run", run, "--data", data, "--text", TEXT, "--out", out)
    assert code == 0, err
    assert out.is_file()


def test_the_place_holding_the_recorded_data_set_wins(tiny, tmp_path):
    """A run moved alone next to another data set (at its relative path) uses the absolute path, which
    holds the set it was trained on."""
    shutil.copytree(tiny / "run", tmp_path / "run", ignore=shutil.ignore_patterns("*.ckpt", "logs"))
    shutil.copytree(tiny / "data", tmp_path / "data")
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    manifest["seed"] = manifest.get("seed", 0) + 1
    (tmp_path / "data" / "manifest.json").write_text(json.dumps(manifest))
    assert read_run_info(tmp_path / "run")["data"] == str((tiny / "data").resolve())


def test_a_run_reached_through_a_link_finds_its_data(tiny, tmp_path):
    real = tmp_path / "x" / "y"
    shutil.copytree(tiny / "run", real / "run", ignore=shutil.ignore_patterns("*.ckpt", "logs"))
    shutil.copytree(tiny / "data", real / "data")
    record = json.loads((real / "run" / "run.json").read_text())
    record["data_absolute"] = str(tmp_path / "gone")
    (real / "run" / "run.json").write_text(json.dumps(record))
    (tmp_path / "link").symlink_to(real)
    assert Inference.open(tmp_path / "link" / "run").from_text(TEXT, "agg", n=1).images.shape[0] == 1


def test_stage_one_records_a_moved_data_set_and_refuses_another(tiny, tmp_path):
    run, moved = tmp_path / "run", tmp_path / "moved" / "data"
    shutil.copytree(tiny / "run", run, ignore=shutil.ignore_patterns("*.ckpt", "logs"))
    shutil.copytree(tiny / "data", moved)
    cfg, _ = open_run(run)
    init_run(run, moved, cfg)
    record = json.loads((run / "run.json").read_text())
    assert record["data"] == "../moved/data" and record["data_absolute"] == str(moved.resolve())
    other = tmp_path / "other"
    shutil.copytree(tiny / "data", other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["seed"] = manifest.get("seed", 0) + 1
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VLVAEError, match="choose another --out"):
        init_run(run, other, cfg)


def test_the_archives_slim_data_is_not_the_full_set(exported, tiny):
    """The run inside an archive is tied to its slim copy; the full set's run refuses that copy."""
    archive = open_archive(exported)
    with pytest.raises(VLVAEError, match="fingerprint differs"):
        Inference.open(tiny / "run", data=archive.data)
    record = json.loads((archive.run / "run.json").read_text())
    assert record["data_fingerprint"] == data_fingerprint(archive.data)
    assert record["data_fingerprint_full"] == data_fingerprint(tiny / "data")


def test_another_data_set_is_refused_by_its_fingerprint(tiny, tmp_path):
    other = tmp_path / "data"
    shutil.copytree(tiny / "data", other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["seed"] = manifest.get("seed", 0) + 1  # another build, same vocabulary and sizes
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VLVAEError, match="is not the data set .* fingerprint differs"):
        Inference.open(tiny / "run", data=other)
    cfg, info = open_run(tiny / "run", other)
    assert info["data"] == str(other)


# ------------------------------------------------------------------------ export and open


def test_export_holds_every_stage_the_judge_a_slim_data_copy_and_a_model_card(exported, tiny):
    with tarfile.open(exported) as tar:
        names = tar.getnames()
        card = tar.extractfile("README.md").read().decode()
        index = json.loads(tar.extractfile(INDEX).read())
    assert names[0] == INDEX and set(index["members"]) == set(names[1:])
    for stage in ("stage1", "q_agg", "q_true", "prior"):
        assert f"run/{stage}/weights.safetensors" in names and f"run/{stage}/metrics.json" in names
    assert "run/report.md" in names and "classifier/weights.safetensors" in names
    assert not [n for n in names if n.endswith(".ckpt") or "/logs/" in n]  # no pickles, no logs
    info = json.loads((tiny / "run" / "run.json").read_text())
    facts = (info["git_commit"], info["data_fingerprint"], "preset `tiny`", "Intended use", "Headline")
    for fact in (*facts, f"run folder made on {info['machine']['cpu']}"):
        assert fact in card, fact
    assert index["trained_at"] == info["git_commit"] and index["classifier"] == "classifier"


def test_an_archive_opens_with_the_original_run_and_data_deleted(exported, tiny, tmp_path):
    archive = open_archive(exported)
    manifest = check_dataset(archive.data)  # the slim copy is a whole data set
    full = read_manifest(tiny / "data")
    assert manifest["counts"] == {
        "train": min(EXAMPLES["train"], full["counts"]["train"]),
        "val": min(EXAMPLES["val"], full["counts"]["val"]),
    }
    assert manifest["subset_of"]["fingerprint"] == data_fingerprint(tiny / "data")
    from_archive = vlvae.load(exported)
    from_run = Inference.open(tiny / "run", tiny / "classifier")
    a, b = from_archive.from_text(TEXT, "agg", n=3, seed=5), from_run.from_text(TEXT, "agg", n=3, seed=5)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.texts == b.texts
    np.testing.assert_allclose(a.correctness, b.correctness)  # the archive's judge is the same judge
    np.testing.assert_array_equal(
        from_archive.from_prior("learned", 4, 1).images, from_run.from_prior("learned", 4, 1).images
    )


def test_serve_and_sample_take_an_archive(exported, tmp_path, vlvae):
    client = TestClient(create_app(open_inference(exported)))
    assert client.get("/").status_code == 200
    health = client.get("/api/health").json()
    assert all(health["stages"].values()), health  # every stage travelled
    assert client.get("/api/vocab").json()["dataset"] == "two_objects"
    answer = client.get("/api/text", params={"text": TEXT, "n": 2, "seed": 0})
    assert answer.status_code == 200, answer.text
    assert client.get("/api/validation/3").status_code == 200  # the slim data's examples
    assert client.get("/report").status_code == 200  # the run's report travels with it
    out = tmp_path / "samples.png"
    code, output, err = vlvae("sample", "--run", exported, "--text", TEXT, "--n", "2", "--out", out)
    assert code == 0, err
    assert out.is_file()


def test_import_vlvae_stays_light():
    code = "import sys, vlvae; print('torch' in sys.modules, callable(vlvae.load), 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True", "True"]


# ------------------------------------------------------------------------ damaged archives


def rewrite(source, target, change):
    """A copy of an archive with ``change(members)`` applied to its {name: bytes}."""
    with tarfile.open(source) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    change(members)
    with tarfile.open(target, "w") as tar:
        for name, body in members.items():
            entry = tarfile.TarInfo(name)
            entry.size = len(body)
            tar.addfile(entry, io.BytesIO(body))
    return target


def _list(members, name, body):
    """Add a member and list it in the index with its true size and sha256."""
    members[name] = body
    index = json.loads(members[INDEX])
    index["members"][name] = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
    members[INDEX] = json.dumps(index).encode()


def _index(members, **changes):
    index = json.loads(members[INDEX])
    index.update(changes)
    members[INDEX] = json.dumps(index).encode()


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda m: m.__setitem__("run/config.yaml", m["run/config.yaml"] + b"\n# edited\n"), "checksum"),
        (lambda m: m.pop("run/stage1/weights.safetensors"), "is missing"),
        (lambda m: m.__setitem__("extra.txt", b"x"), "not in its index"),
        (lambda m: m.__setitem__("../escape.txt", b"x"), "not in its index"),
        (lambda m: _list(m, "../escape.txt", b"x"), "not allowed"),
        (lambda m: _list(m, "./run/config.yaml", b"x"), "not allowed"),
        (lambda m: _list(m, "/etc/evil", b"x"), "not allowed"),
        (lambda m: _list(m, "run\\evil", b"x"), "not allowed"),
        (lambda m: _list(m, "run/config.yaml/x", b"x"), "both a file and a folder"),
        (lambda m: _index(m, version=99), "version 99"),
        (lambda m: _index(m, format="something-else"), "not a vlvae-model index"),
        (lambda m: m.pop(INDEX), f"first member is not {INDEX}"),
        (lambda m: m.__setitem__(INDEX, b"[" * 200_000), "is not JSON"),
    ],
)
def test_a_damaged_archive_is_refused_in_one_line(exported, tmp_path, vlvae, change, fragment):
    bad = rewrite(exported, tmp_path / "bad.tar", change)
    with pytest.raises(VLVAEError, match=fragment.replace("(", r"\(")):
        open_archive(bad)
    code, _, err = vlvae("sample", "--run", bad, "--text", TEXT, "--out", tmp_path / "x.png")
    one_error_line(code, err, fragment)
    assert not (tmp_path / "x.png").exists()
    assert not list((tmp_path / "cache" / "models").glob("*")) and not list(
        (tmp_path / "cache" / "models").glob(".*")
    )


def test_a_truncated_archive_or_another_file_is_refused(exported, tmp_path, vlvae):
    data = exported.read_bytes()
    for name, body in (("cut.tar", data[: len(data) // 2]), ("text.tar", b"not an archive at all")):
        (tmp_path / name).write_bytes(body)
        code, _, err = vlvae("serve", "--run", tmp_path / name)
        one_error_line(code, err, "not a usable vlvae model archive")


def test_a_compressed_archive_is_read_like_a_plain_one(tiny, exported, tmp_path):
    packed = tmp_path / "model.tar.gz"
    export_run(tiny / "run", packed, tiny / "classifier")
    with tarfile.open(packed, "r:gz") as tar:
        assert tar.getnames()[0] == INDEX
    a = vlvae.load(packed).from_text(TEXT, "true", n=2, seed=9)
    b = vlvae.load(exported).from_text(TEXT, "true", n=2, seed=9)
    np.testing.assert_array_equal(a.images, b.images)
    (tmp_path / "cut.tar.gz").write_bytes(packed.read_bytes()[:-5000])
    with pytest.raises(VLVAEError, match="truncated"):
        open_archive(tmp_path / "cut.tar.gz")


def test_a_damaged_cache_is_extracted_again(exported, tmp_path):
    first = open_archive(exported)
    (first.run / "report.md").write_text("edited")
    (first.run / "q_agg" / "weights.safetensors").unlink()
    again = open_archive(exported)
    assert again.root == first.root
    assert (again.run / "report.md").read_text() != "edited"
    assert (again.run / "q_agg" / "weights.safetensors").is_file()
    assert sorted(p.name for p in (tmp_path / "cache" / "models").iterdir()) == [first.root.name]


def test_data_is_refused_with_an_archive_and_a_missing_archive_is_named(exported, tmp_path, vlvae):
    out = tmp_path / "x.png"
    code, _, err = vlvae("sample", "--run", exported, "--data", tmp_path, "--text", TEXT, "--out", out)
    one_error_line(code, err, "brings its own data")
    code, _, err = vlvae("sample", "--run", tmp_path / "nothing.tar.gz", "--text", TEXT, "--out", out)
    one_error_line(code, err, "model archive", "does not exist", "vlvae export")
    code, _, err = vlvae(
        "sample", "--run", exported, "--pretrained", "two-objects", "--text", TEXT, "--out", out
    )
    one_error_line(code, err, "exactly one of --run")
    assert not out.exists()


def test_a_link_in_an_archive_is_refused(exported, tmp_path):
    bad = tmp_path / "link.tar"
    shutil.copy(exported, bad)
    with tarfile.open(bad, "a") as tar:
        entry = tarfile.TarInfo("run/evil")
        entry.type, entry.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(entry)
    with pytest.raises(VLVAEError, match="not a regular file"):
        open_archive(bad)


# ------------------------------------------------------------------------ the command line


def test_export_refuses_bad_input_before_writing(tiny, tmp_path, vlvae):
    out = tmp_path / "m.tar"
    code, _, err = vlvae("export", tmp_path / "nothing", "--out", out)
    one_error_line(code, err, "not a vlvae run folder")
    code, _, err = vlvae("export", tiny / "run", "--out", tmp_path)
    one_error_line(code, err, "is a folder")
    assert not out.exists()
    code, output, err = vlvae("export", tiny / "run", "--out", out, "--classifier", tiny / "classifier")
    assert code == 0 and "model card is README.md" in output, err


def test_run_and_pretrained_are_one_choice(vlvae, tmp_path, tiny):
    code, _, err = vlvae("sample", "--text", TEXT, "--out", tmp_path / "x.png")
    one_error_line(code, err, "exactly one of --run")
    code, _, err = vlvae("sample", "--pretrained", "nope", "--text", TEXT, "--out", tmp_path / "x.png")
    one_error_line(code, err, "--pretrained must be one of")
    assert set(PRETRAINED) == {"two-objects"}


def test_the_shipped_model_samples_or_says_how_to_build_it(vlvae, tmp_path):
    try:
        path = pretrained_path("two-objects")
    except VLVAEError as exc:
        assert "vlvae export" in str(exc)
        pytest.skip(f"no shipped model in this checkout: {exc}")
    out = tmp_path / "p.png"
    code, output, err = vlvae("sample", "--pretrained", "two-objects", "--text", TEXT, "--out", out)
    assert code == 0 and out.is_file(), err
    assert open_archive(path).index["format"] == "vlvae-model"

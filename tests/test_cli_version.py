"""``vlvae --version`` and the package's metadata: the licence file, the citation and the version agree."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vlvae import __version__, cli
from vlvae.runinfo import git_commit

ROOT = Path(__file__).resolve().parents[1]


def test_version_prints_the_package_version_and_commit(vlvae):
    code, out, err = vlvae("--version")
    assert code == 0 and err == ""
    commit = git_commit()
    expected = f"vlvae {__version__}" + ("" if commit == "unknown" else f" (commit {commit})")
    assert out == expected + "\n"
    assert re.fullmatch(r"vlvae \d+\.\d+\.\d+(\S*)?( \(commit [0-9a-f]{40}(\+dirty)?\))?\n", out)


def test_version_without_a_checkout_leaves_the_commit_out(vlvae, monkeypatch):
    monkeypatch.setattr(cli, "git_commit", lambda: "unknown")
    code, out, _ = vlvae("--version")
    assert code == 0 and out == f"vlvae {__version__}\n"


def test_version_is_eager_and_the_bare_command_still_shows_help(vlvae):
    code, out, _ = vlvae("--version", "evaluate")  # --version wins over a command missing its options
    assert code == 0 and out.startswith("vlvae ")
    code, out, _ = vlvae("--help")
    assert code == 0 and "--version" in out


def test_version_as_a_program():
    result = subprocess.run(
        [sys.executable, "-m", "vlvae.cli", "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"vlvae {__version__}")


def test_the_version_the_licence_and_the_citation_agree():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == __version__
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License\n") and "Copyright (c) 2026 the vlvae authors" in licence
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert citation["version"] == __version__ and citation["license"] == "MIT"
    (paper,) = citation["references"]
    assert paper["title"].startswith("On the importance of learning aggregate posteriors")
    assert [a["family-names"] for a in paper["authors"]] == ["Cremer", "Kushman"]
    assert paper["year"] == 2018 and "1806.02346" in paper["url"]

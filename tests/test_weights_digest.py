"""The digest of a weights file names its content: the same tensors and metadata give the same digest
whatever order the writer put the header's metadata in (it differs between processes)."""

import hashlib
import json

import torch
from safetensors.torch import load_file, save_file

from vlvae.runs import weights_sha256


def _reordered(path, out):
    """A copy of a safetensors file with its metadata's keys in reverse order (same tensors)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"] = dict(reversed(list(header["__metadata__"].items())))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (n - len(text))  # the same length, so the tensor offsets still hold
    out.write_bytes(raw[:8] + text + raw[8 + n :])
    return out


def test_the_same_content_gives_the_same_digest(tmp_path):
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4, dtype=torch.int64)}
    save_file(tensors, str(tmp_path / "w.safetensors"), metadata={"tag": "vlvae", "arch": "strided"})
    other = _reordered(tmp_path / "w.safetensors", tmp_path / "v.safetensors")
    assert other.read_bytes() != (tmp_path / "w.safetensors").read_bytes()  # the files differ
    assert all(torch.equal(load_file(str(other))[k], v) for k, v in tensors.items())
    assert weights_sha256(other) == weights_sha256(tmp_path / "w.safetensors")
    tensors["a"][0, 0] = 1.0  # one value changed: another digest
    save_file(tensors, str(tmp_path / "x.safetensors"), metadata={"tag": "vlvae", "arch": "strided"})
    assert weights_sha256(tmp_path / "x.safetensors") != weights_sha256(tmp_path / "w.safetensors")


def test_a_file_that_is_not_safetensors_is_hashed_whole(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\xff" * 20)
    assert weights_sha256(path) == hashlib.sha256(b"\xff" * 20).hexdigest()

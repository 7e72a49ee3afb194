"""``--device``: what :func:`vlvae.device.resolve_device` accepts on machines with and without GPUs
(torch's view of CUDA monkeypatched), and that every command taking it refuses a device the machine
lacks in one line before anything is written."""

import pytest
import torch

from vlvae.device import fork_rng, resolve_device
from vlvae.errors import VLVAEError


@pytest.fixture
def gpus(monkeypatch):
    """``gpus(n)``: torch reports n CUDA GPUs (0: none, as on a machine without a driver)."""

    def set_count(n: int):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return set_count


def test_auto_is_the_cpu_without_a_gpu_and_the_first_gpu_with_one(gpus):
    gpus(0)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    gpus(2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("AUTO") == torch.device("cuda", 0)


def test_cpu_is_always_the_cpu(gpus):
    for n in (0, 1):
        gpus(n)
        assert resolve_device("cpu") == torch.device("cpu")
        assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_cuda_names_a_gpu_with_its_index(gpus):
    gpus(2)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert resolve_device(" cuda:0 ") == torch.device("cuda", 0)


def test_cuda_without_a_gpu_is_one_line_naming_the_fix(gpus):
    gpus(0)
    for spec in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(VLVAEError, match=r"^--device cuda(:\d)?: .*; use --device cpu") as info:
            resolve_device(spec)
        assert "\n" not in str(info.value)


def test_a_gpu_index_beyond_the_machines_gpus_is_refused(gpus):
    gpus(2)
    with pytest.raises(VLVAEError, match=r"cuda:2: this machine has 2 CUDA GPUs \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")
    gpus(1)
    with pytest.raises(VLVAEError, match=r"has 1 CUDA GPU \(cuda:0 to cuda:0\)"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("spec", ["gpu", "tpu", "mps", "cuda:", "cuda:-1", "cuda:x", "cuda0", "", "1"])
def test_other_forms_are_refused_naming_the_forms(gpus, spec):
    gpus(1)
    with pytest.raises(VLVAEError, match="--device must be auto, cpu, cuda or cuda:N"):
        resolve_device(spec)


def test_the_option_is_named_as_given():
    with pytest.raises(VLVAEError, match="^device must be"):
        resolve_device("tpu", option="device")


def test_fork_rng_puts_the_cpu_state_back():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with fork_rng(torch.device("cpu")):
        torch.manual_seed(123)
        torch.rand(10)
    assert torch.equal(torch.rand(3), expected)


# ----------------------------------------------------------------------------- the commands


def _snapshot(folder):
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_every_command_refuses_a_missing_gpu_before_writing(vlvae, tmp_path, gpus, spec):
    gpus(0 if spec == "cuda" else 1)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("not read\n")
    before = _snapshot(tmp_path)
    commands = {
        "evaluate": ["evaluate", "--run", run, "--classifier", tmp_path / "cls"],
        "compare": ["compare", run, "--classifier", tmp_path / "cls", "--out", tmp_path / "cmp"],
        "sample": ["sample", "--run", run, "--out", tmp_path / "s.png"],
        "serve": ["serve", "--run", run, "--port", "1"],
        "reproduce": ["reproduce", "--out", tmp_path / "repro", "--preset", "tiny"],
    }
    for name, args in commands.items():
        code, out, err = vlvae(*args, "--device", spec)
        assert code == 2, (name, out, err)
        assert err.startswith(f"error: --device {spec}: ") and err.count("\n") == 1, (name, err)
        assert _snapshot(tmp_path) == before, f"{name} wrote before refusing --device {spec}"


def test_a_bad_device_form_is_one_line_on_every_command(vlvae, tmp_path):
    for args in (
        ["evaluate", "--run", tmp_path, "--classifier", tmp_path],
        ["compare", tmp_path, "--classifier", tmp_path, "--out", tmp_path / "cmp"],
        ["sample", "--run", tmp_path, "--out", tmp_path / "s.png"],
        ["serve", "--run", tmp_path],
        ["reproduce", "--out", tmp_path / "repro"],
    ):
        code, _, err = vlvae(*args, "--device", "gpu0")
        assert code == 2 and err == (
            "error: --device must be auto, cpu, cuda or cuda:N (N a GPU's index), got 'gpu0'\n"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_training_commands_take_no_device_option(vlvae, tmp_path):
    """Training keeps Lightning's accelerator key (``--set accelerator=...``)."""
    code, _, err = vlvae("train", "vlvae", "--data", tmp_path, "--out", tmp_path / "r", "--device", "cpu")
    assert code == 2 and "--device" in err

"""What every run records about itself: the machine beside the versions and the commit."""

import builtins
import json

import torch

from vlvae import runinfo
from vlvae.evaluation.report import _machine_words
from vlvae.runinfo import machine_info, run_info


def test_run_info_records_the_machine_and_data_sets_leave_it_out():
    assert {"versions", "git_commit", "machine"} <= set(run_info())
    assert set(run_info(machine=False)) == {"versions", "git_commit"}
    machine = machine_info()
    assert machine["cpu"] and machine["system"] and isinstance(machine["cuda_devices"], list)
    assert machine["cpu_count"] is None or machine["cpu_count"] >= 1


def test_a_built_data_set_s_manifest_does_not_name_the_machine(data):
    manifest = json.loads((data / "manifest.json").read_text())
    assert "machine" not in manifest and "git_commit" in manifest


def test_the_recorded_threads_follow_torch():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert machine_info()["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)
    assert machine_info()["torch_threads"] == before


def test_without_proc_cpuinfo_the_processor_falls_back_to_platform(monkeypatch):
    real_open = builtins.open

    def no_cpuinfo(path, *args, **kwargs):
        if str(path) == "/proc/cpuinfo":
            raise OSError("not here")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_cpuinfo)
    monkeypatch.setattr(runinfo.platform, "processor", lambda: "")
    monkeypatch.setattr(runinfo.platform, "machine", lambda: "arm64")
    assert runinfo.cpu_model() == "arm64"
    monkeypatch.setattr(runinfo.platform, "processor", lambda: "unknown")
    monkeypatch.setattr(runinfo.platform, "machine", lambda: "")
    assert runinfo.cpu_model() == "unknown"


def test_a_cuda_driver_error_is_recorded_not_raised(monkeypatch):
    def broken(*_):
        raise RuntimeError("CUDA error: busy or unavailable")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", broken)
    assert machine_info()["cuda_devices"] == ["unavailable"]


def test_the_report_names_the_machine_and_a_gpu_and_reads_older_metrics_without_one():
    machine = {"cpu": "Some CPU 9000", "cpu_count": 16, "torch_threads": 2}
    assert _machine_words({"machine": machine, "device": "cpu"}) == (
        " on Some CPU 9000 (2 torch threads of 16 cores)"
    )
    gpu = _machine_words({"machine": {**machine, "cpu_count": None}, "device": "cuda:0 (NVIDIA H100)"})
    assert gpu == " on Some CPU 9000 (2 torch threads of ? cores) with cuda:0 (NVIDIA H100)"
    assert _machine_words({}) == ""

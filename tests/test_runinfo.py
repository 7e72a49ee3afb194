"""What every run records about itself: the machine beside the versions and the commit."""

import os
import re
from pathlib import Path

import torch

from vlvae.evaluation.report import _machine_words
from vlvae.runinfo import cpu_model, machine_info, run_info


def test_run_info_records_versions_commit_and_the_machine():
    info = run_info()
    assert {"versions", "git_commit", "machine"} <= set(info)
    machine = info["machine"]
    assert machine["cpu_count"] == os.cpu_count()
    assert machine["cuda_devices"] == (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )


def test_the_recorded_threads_follow_torch():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert machine_info()["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)
    assert machine_info()["torch_threads"] == before


def test_the_processor_is_linux_s_model_name_where_there_is_one():
    cpuinfo = Path("/proc/cpuinfo")
    names = re.findall(r"^model name\s*:\s*(.+?)\s*$", cpuinfo.read_text(), re.M) if cpuinfo.is_file() else []
    if names:
        assert cpu_model() == names[0]
    else:  # another system: a non-empty name all the same
        assert cpu_model()


def test_the_report_names_the_machine_and_reads_older_metrics_without_one():
    machine = {"cpu": "Some CPU 9000", "cpu_count": 16, "torch_threads": 2}
    assert _machine_words({"machine": machine}) == " on Some CPU 9000 (2 torch threads of 16 cores)"
    assert _machine_words({}) == ""

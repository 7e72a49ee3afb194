"""Test-session settings shared by every test."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One torch thread for the whole session (module fixtures included): the tensors here are
    tiny, and two OpenMP threads on a busy 2-core machine made them up to 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

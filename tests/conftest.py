"""Shared fixtures: a temporary run store, a small real dataset, quiet threading."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _isolated_workspace(tmp_path, monkeypatch):
    """Every test writes runs under its own temporary folder, never ./runs."""
    monkeypatch.setenv("WORKBENCH_RUNS", str(tmp_path / "runs"))
    yield


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's bundled 8x8 digits as a workbench Dataset."""
    from workbench.data import load_dataset

    return load_dataset("digits")


#: the devices device-dependent tests run on: the CPU always, CUDA where present
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    """Parametrises a test over every available device (``cpu``, and ``cuda`` on a GPU machine)."""
    return torch.device(request.param)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA: skipped (with the reason) where there is none."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is present")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

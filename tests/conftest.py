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

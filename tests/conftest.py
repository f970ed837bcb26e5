"""Shared fixtures: isolated workspaces and the path to the staged real datasets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from streamsim.store import Workspace

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A fresh workspace in a temporary directory, also exported as STREAMSIM_HOME."""
    root = tmp_path / "ws"
    monkeypatch.setenv("STREAMSIM_HOME", str(root))
    return Workspace.resolve(root)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch intra-op thread for the test: float reductions in a fixed order whatever the
    machine, and tiny tensors run much faster than with two threads on a loaded 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def shared_dataset(name: str) -> Path:
    """Path of a staged dataset in ../shared/data, skipping the test when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"staged dataset {name!r} not found at {path} (../shared/data is absent)")
    return path

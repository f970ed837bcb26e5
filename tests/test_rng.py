"""Owned torch random streams (streamsim.rng): the block's draws depend only on its seed, and
no generator outside the block is changed, CUDA's included."""

from __future__ import annotations

import pytest
import torch

from streamsim import rng


def test_a_seeded_block_repeats_its_draws_and_restores_the_cpu_generator() -> None:
    before = torch.get_rng_state()
    with rng.seeded(3):
        a = torch.rand(5)
    assert torch.equal(torch.get_rng_state(), before)
    with rng.seeded(3):
        b = torch.rand(5)
    with rng.seeded(4):
        c = torch.rand(5)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_a_cpu_block_never_seeds_the_cuda_generators(monkeypatch: pytest.MonkeyPatch) -> None:
    """`torch.manual_seed` would reseed every CUDA device and `fork_rng(devices=[])` would not
    restore them: on a CUDA machine that is a global side effect of a CPU run."""
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append("all"))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append("one"))
    with rng.seeded(7):
        torch.rand(1)
    assert calls == []


def test_cpu_has_no_device_state() -> None:
    assert rng.cuda_index("cpu") is None
    assert rng.cuda_index("cuda:1") == 1
    assert rng.device_state("cpu") is None
    rng.set_device_state(None, "cpu")  # a no-op, as for a file written on CPU


@pytest.mark.gpu
def test_a_cuda_block_repeats_its_draws_and_restores_the_device_generator() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA: the device generator is what is under test")
    before_cpu, before_dev = torch.get_rng_state(), torch.cuda.get_rng_state()
    with rng.seeded(3, "cuda"):
        a = torch.rand(5, device="cuda")
        saved = rng.device_state("cuda")
        a_next = torch.rand(5, device="cuda")
    assert torch.equal(torch.get_rng_state(), before_cpu)
    assert torch.equal(torch.cuda.get_rng_state(), before_dev)
    with rng.seeded(3, "cuda"):
        assert torch.equal(torch.rand(5, device="cuda"), a)
        rng.set_device_state(saved, "cuda")
        assert torch.equal(torch.rand(5, device="cuda"), a_next)

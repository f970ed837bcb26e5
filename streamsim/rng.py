"""Owned torch random streams: seeded for one block of code, the global generators left as found.

Training and online learning draw dropout masks (and BERT4Rec-style masking) from torch's
default generators. To make a run deterministic without seeding anything globally, the block
runs inside `seeded(seed, device)`: the CPU generator and, for a CUDA device, that device's
generator are forked (`torch.random.fork_rng`), seeded, and restored on exit.

`torch.manual_seed` is not used here on purpose: it also seeds every CUDA device, and
`fork_rng(devices=[])` restores only the CPU generator, so on a CUDA machine it would leave the
device generators reseeded after the block. `device_state` / `set_device_state` carry the
device generator through a resume file (`streamsim.resume`); on CPU there is none (None).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor


def cuda_index(device: str | torch.device) -> int | None:
    """The CUDA device index of `device`, or None for a non-CUDA device."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    return dev.index if dev.index is not None else torch.cuda.current_device()


@contextmanager
def seeded(seed: int, device: str | torch.device = "cpu") -> Iterator[None]:
    """Run the block with the CPU generator (and `device`'s, if CUDA) seeded from `seed`;
    every generator touched is restored afterwards."""
    index = cuda_index(device)
    with torch.random.fork_rng(devices=[] if index is None else [index]):
        torch.random.default_generator.manual_seed(seed)
        if index is not None:
            with torch.cuda.device(index):  # fork_rng has initialised CUDA: seeds at once
                torch.cuda.manual_seed(seed)
        yield


def device_state(device: str | torch.device) -> Tensor | None:
    """The state of `device`'s generator (CUDA), or None where the CPU generator is all."""
    index = cuda_index(device)
    return None if index is None else torch.cuda.get_rng_state(index)


def set_device_state(state: Tensor | None, device: str | torch.device) -> None:
    """Restore what `device_state` returned; a no-op for None or a non-CUDA device."""
    index = cuda_index(device)
    if state is not None and index is not None:
        torch.cuda.set_rng_state(state, index)


def batch_seed(seed: int, batch_id: int) -> int:
    """A per-batch seed that depends only on (seed, batch id): resumable and deterministic."""
    digest = hashlib.sha256(f"{seed}:{batch_id}".encode()).digest()
    return int.from_bytes(digest[:7], "little")

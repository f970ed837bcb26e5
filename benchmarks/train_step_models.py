"""Training-step time of Caser, BERT4Rec, TTT4Rec, TTT-Linear rec and TiM4Rec against SASRec.

Default configs; one Adam step of `model.loss` (forward + backward + update) on a random batch
of B = 256 histories (L = 50, lengths uniform in 1..50) over a catalogue of 12 000 items, one
torch thread, CPU. Prints ms/step and the ratio to SASRec measured in the same run. The last
row is Caser through RecBole's per-height conv2d loop (`horizontal_pool_ref`, the oracle)
instead of the stacked conv1d path the model uses.

    .venv/bin/python benchmarks/train_step_models.py

Results and their reading: docs/performance.md ("Training-step time per model").
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from unittest import mock

import torch

import models
import models.caser
from models.base import SeqBatch

NAMES = ("sasrec", "caser", "bert4rec", "ttt4rec", "ttt_linear_rec", "tim4rec", "caser-ref")


@contextlib.contextmanager
def _variant(name: str) -> Iterator[str]:
    """`caser-ref`: Caser with its horizontal convolutions through the reference loop."""
    if name != "caser-ref":
        yield name
        return
    with mock.patch.object(models.caser, "horizontal_pool", models.caser.horizontal_pool_ref):
        yield "caser"


def main(batch_size: int = 256, max_len: int = 50, n_items: int = 12_000, reps: int = 3) -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    n = torch.randint(1, max_len + 1, (batch_size,), generator=g)
    valid = torch.arange(max_len)[None] < n[:, None]
    items = torch.randint(1, n_items + 1, (batch_size, max_len), generator=g) * valid
    gaps = torch.randint(0, 86_400, (batch_size, max_len), generator=g)
    times = (1_600_000_000 + torch.cumsum(gaps, 1)) * valid
    targets = torch.randint(1, n_items + 1, (batch_size,), generator=g)
    batch = SeqBatch(items, times, n, times.max(1).values + 1, targets)
    base = None
    for name in NAMES:
        with _variant(name) as registered:
            model = models.create(registered, n_items=n_items).train()
            opt = torch.optim.Adam(model.parameters(), 1e-3)

            def step(model: models.Recommender = model, opt: torch.optim.Adam = opt) -> None:
                opt.zero_grad()
                model.loss(batch).backward()
                opt.step()

            step()  # warm-up
            start = time.perf_counter()
            for _ in range(reps):
                step()
            seconds = (time.perf_counter() - start) / reps
        base = base or seconds
        print(f"{name:15s} {seconds * 1000:8.1f} ms/step  {seconds / base:.2f}x sasrec", flush=True)


if __name__ == "__main__":
    main()

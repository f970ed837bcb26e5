"""GRU4Rec training step: the padded one-layer run vs RecBole's packed sequences (the oracle).

One `loss(batch).backward()` of GRU4Rec (default config, 1,682 items as in ml-100k, B = 256)
through each encoder, at L = 200 and L = 50, with history lengths uniform in 1..L and with
short, Beauty-like lengths (geometric, mean ~8, capped at L). Best of 3 after one warm-up, one
torch thread; prints seconds per step, the speed-up measured in the same run, and the largest
relative difference of any parameter gradient between the two paths (fp32).

    .venv/bin/python benchmarks/gru4rec_paths.py
"""

from __future__ import annotations

import contextlib
import functools
from unittest import mock

import torch
from path_timing import best_of, padded_batch

import models
from models.base import SeqBatch
from models.gru4rec import GRU4Rec
from streamsim.rng import seeded


def _path(model: GRU4Rec, path: str) -> contextlib.AbstractContextManager[object]:
    """`packed`: the model's one-layer forward routed through `_encode_packed`."""
    if path == "padded":
        return contextlib.nullcontext()
    return mock.patch.object(model, "_encode_padded", model._encode_packed)


def _loss_backward(model: GRU4Rec, batch: SeqBatch) -> None:
    model.zero_grad()
    with seeded(1):  # the same dropout mask for both paths
        model.loss(batch).backward()


def main(batch_size: int = 256, n_items: int = 1682) -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    print(f"torch={torch.__version__} threads=1 B={batch_size} items={n_items}")
    head = f"{'L':>4} {'lengths':9} {'packed (s)':>11} {'padded (s)':>11} {'speed-up':>9}"
    print(head + "  grad rel.diff")
    for width in (200, 50):
        uniform = torch.randint(1, width + 1, (batch_size,), generator=g)
        short = (torch.rand(batch_size, generator=g).log() / torch.tensor(0.88).log()).long() + 1
        for label, lengths in (("uniform", uniform), ("short", short.clamp(max=width))):
            batch = padded_batch(lengths, width, n_items, g)
            model = models.create("gru4rec", n_items=n_items, config={"max_len": width})
            assert isinstance(model, GRU4Rec)
            model.train()
            grads, seconds = {}, {}
            for path in ("packed", "padded"):
                with _path(model, path):
                    seconds[path] = best_of(functools.partial(_loss_backward, model, batch))
                grads[path] = [p.grad.clone() for p in model.parameters() if p.grad is not None]
            diff = max(
                float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))
                for a, b in zip(grads["padded"], grads["packed"], strict=True)
            )
            ratio = seconds["packed"] / seconds["padded"]
            print(
                f"{width:>4} {label:9} {seconds['packed']:>11.3f} {seconds['padded']:>11.3f} "
                f"{ratio:>8.2f}x  {diff:.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()

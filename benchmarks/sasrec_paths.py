"""SASRec training step: the last layer run for row n−1 only vs every position (the oracle).

One `loss(batch).backward()` of SASRec (default config: 2 layers, D = 64, dropout 0.5, B = 256)
in training mode through `forward` (the last layer with one query row) and through
`forward_all_positions` (RecBole: every layer over every position, then gather), at L = 200
with 1,682 items (ml-100k) and at L = 50 with 12,101 items (Amazon Beauty), history lengths
uniform in 1..L. Best of 3 after one warm-up, one torch thread; prints seconds per step, the
speed-up measured in the same run, and the relative difference ‖g_fast − g_ref‖ / ‖g_ref‖ of
the whole parameter gradient between the two paths with dropout off (eval mode: in training the
paths draw different dropout masks). Per tensor, the key biases' gradients are rounding noise
(softmax ignores a shift shared by every key), so a per-tensor relative maximum says nothing.

    .venv/bin/python benchmarks/sasrec_paths.py
"""

from __future__ import annotations

import contextlib
import functools
from unittest import mock

import torch
from path_timing import best_of, padded_batch

import models
from models.base import SeqBatch
from models.sasrec import SASRec
from streamsim.rng import seeded


def _path(model: SASRec, path: str) -> contextlib.AbstractContextManager[object]:
    """`all-positions`: the model's forward routed through `forward_all_positions`."""
    if path == "last-query":
        return contextlib.nullcontext()
    return mock.patch.object(model, "forward", model.forward_all_positions)


def _loss_backward(model: SASRec, batch: SeqBatch) -> None:
    model.zero_grad()
    model.loss(batch).backward()


def _grads(model: SASRec, batch: SeqBatch) -> list[torch.Tensor]:
    model.eval()
    _loss_backward(model, batch)
    model.train()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def main(batch_size: int = 256) -> None:
    torch.set_num_threads(1)
    with seeded(0):  # model initialisation and dropout, restored on return
        _run(batch_size)


def _run(batch_size: int) -> None:
    g = torch.Generator().manual_seed(0)
    print(f"torch={torch.__version__} threads=1 B={batch_size} layers=2 D=64")
    head = f"{'L':>4} {'items':>6} {'all-positions (s)':>18} {'last-query (s)':>15}"
    print(head + " speed-up  grad rel.diff (eval)")
    for width, n_items in ((200, 1682), (50, 12101)):
        lengths = torch.randint(1, width + 1, (batch_size,), generator=g)
        batch = padded_batch(lengths, width, n_items, g)
        model = models.create("sasrec", n_items=n_items, config={"max_len": width})
        assert isinstance(model, SASRec)
        model.train()
        grads, seconds = {}, {}
        for path in ("all-positions", "last-query"):
            with _path(model, path):
                seconds[path] = best_of(functools.partial(_loss_backward, model, batch))
                grads[path] = _grads(model, batch)
        fast, ref = (
            torch.cat([t.flatten() for t in grads[k]]) for k in ("last-query", "all-positions")
        )
        diff = float((fast - ref).norm() / ref.norm())
        ratio = seconds["all-positions"] / seconds["last-query"]
        print(
            f"{width:>4} {n_items:>6} {seconds['all-positions']:>18.3f} "
            f"{seconds['last-query']:>15.3f} {ratio:>8.2f}x  {diff:.1e}",
            flush=True,
        )


if __name__ == "__main__":
    main()

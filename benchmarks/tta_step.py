"""One test-time step: gradients of every parameter (`loss.backward()`) vs of the test-time
parameters only (`torch.autograd.grad`, what the adapter does), same run, same batch.

    python benchmarks/tta_step.py [--items 12000] [--batch 256] [--max-len 50] [--repeats 5]

For each (model, step rule): the best of `--repeats` wall times of loss + gradient + SGD update
of the test-time parameters on one micro-batch of random histories, both ways, and the ratio.
The models are built with their default sizes over `--items` items (a Beauty-sized catalogue by
default). TTT4Rec adapts only its TTT layers' projections, so the item table's gradient (through
the full-catalogue scores of the entropy step) is skipped; T2ARec adapts every parameter by
default (`freeze_embeddings_at_test = false`), so only its frozen-table variant can gain.
"""

from __future__ import annotations

import argparse
import time

import torch

import models
from models.base import SeqBatch
from streamsim.adapt import Adapter, PolicySpec

CASES = (
    ("ttt4rec", {}, "entropy"),
    ("ttt4rec", {}, "model"),
    ("t2arec", {}, "entropy"),
    ("t2arec", {"freeze_embeddings_at_test": True}, "entropy"),
    ("t2arec", {"freeze_embeddings_at_test": True}, "model"),
)


def batch(n_items: int, size: int, max_len: int) -> SeqBatch:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, max_len + 1, (size,), generator=g)
    valid = torch.arange(max_len)[None, :] < lengths[:, None]
    items = torch.randint(1, n_items + 1, (size, max_len), generator=g) * valid
    times = 1_600_000_000 + torch.cumsum(torch.randint(0, 86_400, (size, max_len), generator=g), 1)
    times = times * valid
    return SeqBatch(items, times, lengths, times.max(dim=1).values + 60)


def step_seconds(adapter: Adapter, inputs: SeqBatch, *, restricted: bool) -> float:
    start = time.perf_counter()
    loss = adapter._loss(inputs, None, None)
    if restricted:
        grads = torch.autograd.grad(loss, adapter.tta_params, allow_unused=True)
        for p, g in zip(adapter.tta_params, grads, strict=True):
            p.grad = g
    else:
        loss.backward()
    assert adapter.tta_opt is not None
    adapter.tta_opt.step()
    adapter.tta_opt.zero_grad(set_to_none=True)
    for p in adapter.model.parameters():
        p.grad = None
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=12_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    inputs = batch(args.items, args.batch, args.max_len)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.items} items,"
          f" batch {args.batch}, L = {args.max_len}")  # fmt: skip
    print("| model | config | rule | all parameters (s) | test-time parameters (s) | ratio |")
    print("|---|---|---|---:|---:|---:|")
    for name, config, rule in CASES:
        model = models.create(name, n_items=args.items, config={"max_len": args.max_len, **config})
        model.eval()
        adapter = Adapter(model, PolicySpec(name="c", tta="continual", tta_lr=1e-4, tta_step=rule))
        times = {False: [], True: []}
        for _ in range(args.repeats):  # alternating, so load changes hit both alike
            for restricted in (False, True):
                times[restricted].append(step_seconds(adapter, inputs, restricted=restricted))
        full, fast = min(times[False]), min(times[True])
        shown = ", ".join(f"{k}={v}" for k, v in config.items()) or "default"
        print(f"| {name} | {shown} | {rule} | {full:.3f} | {fast:.3f} | {full / fast:.2f}x |")


if __name__ == "__main__":
    main()

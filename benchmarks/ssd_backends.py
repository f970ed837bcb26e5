"""SSD scan backends: parity against the fp64 oracle and T2ARec throughput per backend.

Usage: ``python benchmarks/ssd_backends.py [--device cuda] [--batch 256] [--length 200]``.

Prints, for the pure-PyTorch chunked scan (baseline) and, on CUDA with mamba_ssm importable,
the fused Triton scan: the relative error of y and of the final state against
`models.ssd.ssd_sequential` in float64, and T2ARec `loss(batch).backward()` sequences/s, with
the ratio to the torch baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch

import models
from models import ssd_backend
from models.base import SeqBatch
from models.ssd import ssd_sequential


def _batch(bsz: int, length: int, n_items: int, device: str, seed: int) -> SeqBatch:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, length + 1, (bsz,), generator=g)
    lengths[0] = length
    valid = torch.arange(length)[None, :] < lengths[:, None]
    items = torch.randint(1, n_items + 1, (bsz, length), generator=g) * valid
    times = 1_600_000_000 + torch.cumsum(torch.randint(0, 86_400, (bsz, length), generator=g), 1)
    request = times[:, -1] + 3_600
    targets = torch.randint(1, n_items + 1, (bsz,), generator=g)
    return SeqBatch(items, times * valid, lengths, request, targets).to(device)


def _parity(backend: str, device: str) -> tuple[float, float]:
    g = torch.Generator().manual_seed(0)
    kw = {"dtype": torch.float64, "generator": g}
    x, dt = torch.randn(4, 97, 2, 64, **kw), torch.rand(4, 97, 2, **kw) * 0.3
    A, B, C = (
        -(torch.rand(2, **kw) * 5 + 0.5),
        torch.randn(4, 97, 32, **kw),
        torch.randn(4, 97, 32, **kw),
    )
    y_ref, s_ref = ssd_sequential(x, dt, A, B, C)
    args = [t.float().to(device) for t in (x, dt, A, B, C)]
    y, s = ssd_backend.ssd_scan(*args, chunk=50, backend=backend)
    rel = [float((a.double().cpu() - b).norm() / b.norm()) for a, b in ((y, y_ref), (s, s_ref))]
    return rel[0], rel[1]


def _throughput(backend: str, batch: SeqBatch, n_items: int, length: int, device: str) -> float:
    model = models.create(
        "t2arec", n_items=n_items, config={"backend": backend, "max_len": length}
    ).to(device)
    for _ in range(2):
        model.loss(batch).backward()
    reps = 10 if device == "cuda" else 2
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        model.loss(batch).backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return batch.size * reps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--items", type=int, default=12_000)
    args = parser.parse_args()
    backends = ["torch"]
    if args.device == "cuda" and ssd_backend.mamba_ssm_available():
        backends.append("mamba_ssm")
    print(f"device={args.device} torch={torch.__version__} backends={backends}")
    batch = _batch(args.batch, args.length, args.items, args.device, seed=1)
    base = None
    for backend in backends:
        rel_y, rel_s = _parity(backend, args.device)
        rate = _throughput(backend, batch, args.items, args.length, args.device)
        base = base or rate
        print(
            f"{backend:10s} rel.err y {rel_y:.1e} state {rel_s:.1e} | T2ARec loss+backward "
            f"B={args.batch} L={args.length}: {rate:,.0f} seq/s ({rate / base:.2f}x torch)"
        )


if __name__ == "__main__":
    main()

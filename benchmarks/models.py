"""Model throughput: forward, forward+backward and one test-time-alignment batch, in seq/s.

Usage: ``python benchmarks/models.py [--device cpu|cuda] [--batch 256] [--lengths 50 200]
[--n-items 12000] [--models t2arec mamba4rec sasrec] [--min-seconds 2]``.

For each model (default configs, `max_len` = L) and each history length L, on a batch of B
full-length histories (L events each) over a catalogue of `n_items` items:

- ``forward``: `model.score(batch)` in eval mode without gradients (the user representation and
  the full-catalogue scores);
- ``fwd+bwd``: `model.loss(batch).backward()` in train mode (T2ARec: L_rec + μ1·L_time +
  μ2·L_state);
- ``tta`` (T2ARec only): one full test-time-alignment batch exactly as the replay runs it through
  `streamsim.adapt.Adapter` with policy ``reset``: snapshot, `test_time_loss` + backward + one SGD
  step, the adapter's after-step loss, re-score, restore (Algorithm 1).

Each cell prints sequences/s, the model FLOPs per sequence counted by
`torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions, attention; element-wise work
is not counted), the achieved GFLOP/s, and that as a fraction of the roofline measured in the
same run: a plain fp32 2048×2048 @ 2048×2048 matmul (TF32 off) on the same device.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# run as a script, this file's folder comes first on sys.path and its name would shadow the
# `models` package; drop that entry before importing it
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import models  # noqa: E402
from models.base import Recommender, SeqBatch  # noqa: E402
from streamsim.adapt import Adapter  # noqa: E402
from streamsim.scenario import PolicySpec  # noqa: E402

DAY = 86_400


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], device: str, min_seconds: float) -> float:
    """Median seconds per call: two warm-up calls, then at least 3 calls and `min_seconds`."""
    for _ in range(2):
        fn()
    _sync(device)
    times: list[float] = []
    total = 0.0
    while len(times) < 3 or total < min_seconds:
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
        total += times[-1]
    return statistics.median(times)


def _flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def matmul_roofline(device: str, min_seconds: float) -> float:
    """GFLOP/s of a plain fp32 2048² matmul (TF32 disabled) on `device`."""
    n = 2048
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        seconds = _timed(lambda: a @ b, device, min_seconds)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * n**3 / seconds / 1e9


def make_batch(bsz: int, length: int, n_items: int, device: str, seed: int = 0) -> SeqBatch:
    """B full-length histories with random items and gaps of up to a day."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, n_items + 1, (bsz, length), generator=g)
    times = 1_600_000_000 + torch.cumsum(torch.randint(0, DAY, (bsz, length), generator=g), 1)
    lengths = torch.full((bsz,), length)
    request = times[:, -1] + torch.randint(1, DAY, (bsz,), generator=g)
    targets = torch.randint(1, n_items + 1, (bsz,), generator=g)
    return SeqBatch(items, times, lengths, request, targets).to(device)


def _model(name: str, n_items: int, length: int, device: str) -> Recommender:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = models.create(name, n_items=n_items, config={"max_len": length})
    return model.to(device)


def bench_cells(
    name: str, batch: SeqBatch, n_items: int, device: str, min_seconds: float
) -> dict[str, tuple[float, int]]:
    """{mode: (seconds per batch, FLOPs per batch)} for one model at one length."""
    length = int(batch.items.shape[1])
    model = _model(name, n_items, length, device)
    inputs = batch.without_targets()
    out: dict[str, tuple[float, int]] = {}

    def forward() -> None:
        with torch.no_grad():
            model.score(inputs)

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=True)
        model.loss(batch).backward()

    model.eval()
    out["forward"] = (_timed(forward, device, min_seconds), _flops(forward))
    model.train()
    out["fwd+bwd"] = (_timed(fwd_bwd, device, min_seconds), _flops(fwd_bwd))
    model.zero_grad(set_to_none=True)
    if model.has_test_time_loss:
        adapter = Adapter(model, PolicySpec(name="reset", tta="reset", tta_steps=1))
        before = {k: v.clone() for k, v in model.state_dict().items()}

        def tta() -> None:
            adapter.adapt(inputs)
            with torch.no_grad():
                model.score(inputs)
            adapter.after_scoring()

        out["tta"] = (_timed(tta, device, min_seconds), _flops(tta))
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), "reset must restore"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--n-items", type=int, default=12_000)
    parser.add_argument("--models", nargs="+", default=["t2arec", "mamba4rec", "sasrec"])
    parser.add_argument("--min-seconds", type=float, default=2.0)
    args = parser.parse_args()
    device = args.device

    roof = matmul_roofline(device, args.min_seconds)
    name = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(f"device: {name}; torch {torch.__version__}; B={args.batch}, items={args.n_items}")
    print(f"roofline: fp32 2048^2 matmul = {roof:,.1f} GFLOP/s (1.00x)")
    print()
    header = f"{'model':<10} {'L':>4} {'mode':<8} {'seq/s':>10} {'MFLOP/seq':>10} "
    header += f"{'GFLOP/s':>9} {'of roofline':>11}"
    print(header)
    for length in args.lengths:
        batch = make_batch(args.batch, length, args.n_items, device)
        for model_name in args.models:
            cells = bench_cells(model_name, batch, args.n_items, device, args.min_seconds)
            for mode, (seconds, flops) in cells.items():
                gflops = flops / seconds / 1e9
                print(
                    f"{model_name:<10} {length:>4} {mode:<8} {args.batch / seconds:>10,.0f} "
                    f"{flops / args.batch / 1e6:>10.2f} {gflops:>9.1f} {gflops / roof:>10.1%}",
                    flush=True,
                )


if __name__ == "__main__":
    main()

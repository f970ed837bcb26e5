"""Model throughput: forward, forward+backward and one test-time-alignment batch (seq/s).

Usage: ``python benchmarks/model_throughput.py [--batch 256] [--lengths 50 200] [--reps 2]``.

For T2ARec (if registered), Mamba4Rec and SASRec at each length: sequences/s for `forward`
(inference mode), `loss(batch).backward()`, and (T2ARec only) one full test-time-alignment batch
(snapshot, one SGD step on `test_time_loss`, re-score, restore). Model FLOPs are counted with
`torch.utils.flop_counter.FlopCounterMode` (matmuls and convolutions only; elementwise scan work
is not counted) and reported as GFLOP/s and as a fraction of a plain fp32 2048² matmul measured
in the same run (the roofline baseline).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from path_timing import best_of
from torch.utils.flop_counter import FlopCounterMode

import models
from models.base import Recommender, SeqBatch
from streamsim.train import ModelSpec, build_model

N_ITEMS = 12_000


def _batch(bsz: int, length: int, seed: int = 1) -> SeqBatch:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (bsz,), generator=g)
    lengths[0] = length
    valid = torch.arange(length)[None, :] < lengths[:, None]
    items = torch.randint(1, N_ITEMS + 1, (bsz, length), generator=g) * valid
    times = 1_600_000_000 + torch.cumsum(torch.randint(0, 86_400, (bsz, length), generator=g), 1)
    targets = torch.randint(1, N_ITEMS + 1, (bsz,), generator=g)
    return SeqBatch(items, times * valid, lengths, times[:, -1] + 3_600, targets)


def _flops(fn: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def _matmul_roofline(reps: int) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    seconds = best_of(lambda: a @ b, max(reps, 3))
    return 2 * 2048**3 / seconds / 1e9


def _tta(model: Recommender, batch: SeqBatch) -> Callable[[], object]:
    inputs = batch.without_targets()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3)

    def run() -> object:
        snapshot = {k: v.clone() for k, v in model.state_dict().items()}
        opt.zero_grad(set_to_none=True)
        model.test_time_loss(inputs).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            scores = model.score(inputs)
        model.load_state_dict(snapshot)
        return scores

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    names = [
        n for n in ("t2arec", "mamba4rec", "sasrec") if n in {e.name for e in models.list_models()}
    ]
    roof = _matmul_roofline(args.reps)
    print(f"torch={torch.__version__} threads={torch.get_num_threads()} B={args.batch}")
    print(f"roofline: fp32 2048x2048 matmul {roof:.1f} GFLOP/s")
    print("model      L    mode      seq/s   GFLOP/seq  GFLOP/s  of roofline")
    for length in args.lengths:
        batch = _batch(args.batch, length)
        for name in names:
            spec = ModelSpec(name=name, config=(("max_len", length),))
            model = build_model(spec, n_items=N_ITEMS, seed=0).eval()  # scoped seeded init

            def fwd(m: Recommender = model, b: SeqBatch = batch) -> object:
                with torch.inference_mode():
                    return m.score(b.without_targets())

            def train(m: Recommender = model, b: SeqBatch = batch) -> object:
                m.zero_grad(set_to_none=True)
                m.loss(b).backward()
                return None

            modes: list[tuple[str, Callable[[], object]]] = [("fwd", fwd), ("fwd+bwd", train)]
            if model.has_test_time_loss:
                modes.append(("tta", _tta(model, batch)))
            for mode, fn in modes:
                if mode != "fwd":
                    model.train(mode == "fwd+bwd")
                flops = _flops(fn)
                seconds = best_of(fn, args.reps)
                rate = flops / seconds / 1e9
                print(
                    f"{name:10s} {length:<4d} {mode:8s} {args.batch / seconds:8,.0f} "
                    f"{flops / args.batch / 1e9:10.4f} {rate:8.1f} {rate / roof:10.1%}"
                )
                model.eval()


if __name__ == "__main__":
    main()

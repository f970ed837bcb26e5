"""How T2ARec's three training losses pull on the weights, step by step (LOO training data).

    python benchmarks/t2arec_loss_balance.py --data ../shared/data --dataset ml-100k --steps 800
    python benchmarks/t2arec_loss_balance.py --data ../shared/data --dataset amazon-beauty-5core

Trains T2ARec with its default configuration exactly as `streamsim evaluate --protocol loo`
does (Adam, batch 256, lr 0.001, shuffled LOO training examples, the same seeds) and, every
`--every` steps, splits the batch's loss L_rec + μ1·L_time + μ2·L_state into its terms and
reports, for each term, its value and the norm of its gradient over all parameters, as a ratio
to ‖∇L_rec‖ measured on the same batch and the same dropout masks. Next to them: Δ_{n+1} (the
step size of the re-fed token, whose −2nd power dilutes L_state), the share of rows where the
dilution clamp `delta_min` is active, and the share of zero-second gaps among the batch's
consecutive history events. After every `--valid-every` steps the validation NDCG@10 (no
test-time alignment) is measured. Written to answer one question from docs/benchmarks.md: why
L_state at μ2 = 1.0 stops T2ARec from learning on ML-100k but not on Amazon Beauty.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from math import inf
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.base import SeqBatch
from models.t2arec import T2ARec
from streamsim.commands import parse_pairs
from streamsim.evaluate import loo_examples
from streamsim.ingest import ingest
from streamsim.scenario import ModelSpec
from streamsim.store import Workspace, dataset_info
from streamsim.train import build_model, evaluate_examples


def grad_norm(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> float:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.pow(2).sum() for g in grads if g is not None), torch.zeros(()))))


def zero_gap_share(batch: SeqBatch) -> float:
    """Share of 0-second gaps among consecutive events inside the batch's histories."""
    pos = torch.arange(batch.times.shape[1])
    inside = pos[None, 1:] < batch.lengths[:, None]
    gaps = batch.times[:, 1:] - batch.times[:, :-1]
    return float(((gaps == 0) & inside).sum() / inside.sum().clamp(min=1))


def losses(model: T2ARec, batch: SeqBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
    """L_rec, μ1·L_time, μ2·L_state from one encoding (the same dropout masks), and the encoding.

    Uses T2ARec's private `_encode`/`_alignment`, the same two calls `T2ARec.loss` makes, so
    that the three terms can be differentiated separately.
    """
    cfg = model.config
    enc = model._encode(batch)
    logits = (enc.o_n @ model.item_emb.weight.T).index_fill(
        1, torch.zeros(1, dtype=torch.long), -inf
    )
    assert batch.targets is not None
    l_rec = F.cross_entropy(logits, batch.targets)
    l_time, l_state, dt_next = model._alignment(batch, enc)
    return l_rec, cfg.mu_time_train * l_time, cfg.mu_state_train * l_state, (enc, dt_next)


def measure(
    model: T2ARec, batch: SeqBatch, terms: tuple[Any, ...], params: list[torch.nn.Parameter]
) -> dict[str, float]:
    """The trace row of one training step, from that step's own loss terms (before its update)."""
    l_rec, t_term, s_term, (enc, dt_next) = terms
    g_rec = grad_norm(l_rec, params)
    dt_hist = enc.dt.detach()
    return {
        "l_rec": float(l_rec.detach()),
        "time_term": float(t_term.detach()),
        "state_term": float(s_term.detach()),
        "grad_time_ratio": grad_norm(t_term, params) / g_rec if t_term.requires_grad else 0.0,
        "grad_state_ratio": grad_norm(s_term, params) / g_rec if s_term.requires_grad else 0.0,
        "delta_next_median": float(dt_next.detach().median()),
        "delta_hist_median": float(dt_hist[dt_hist > 0].median()),
        "state_norm_median": float(enc.state.ssm_state.detach().flatten(1).norm(dim=1).median()),
        "clamped_share": float((dt_next.detach() < model.config.delta_min).float().mean()),
        "zero_gap_share": zero_gap_share(batch),
    }


HEADER = (
    "step   L_rec  μ1L_time  μ2L_state  |∇μ1Lt|/|∇Lrec|  |∇μ2Ls|/|∇Lrec|  Δn+1_med  "
    "Δhist_med  ‖h_n‖_med  clamped  zero_gaps  valid_ndcg10"
)


def line(row: dict[str, float]) -> str:
    return (
        f"{row['step']:5.0f} {row['l_rec']:7.3f} {row['time_term']:9.4f} "
        f"{row['state_term']:10.4f} {row['grad_time_ratio']:16.3f} "
        f"{row['grad_state_ratio']:16.3f} {row['delta_next_median']:9.2e} "
        f"{row['delta_hist_median']:9.2e} {row['state_norm_median']:10.3f} "
        f"{row['clamped_share']:8.2%} {row['zero_gap_share']:9.2%}  "
        f"{row.get('valid_ndcg10', float('nan')):.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--valid-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", action="append", default=[], help="KEY=VALUE (T2ARec)")
    parser.add_argument("--out", type=Path, help="JSON lines of the trace")
    args = parser.parse_args()
    overrides = tuple(sorted(parse_pairs(args.config, "--config", "mu_state_train=0").items()))

    with tempfile.TemporaryDirectory() as tmp:
        con = Workspace.resolve(tmp).connect()
        ingest(con, args.data / args.dataset, name=args.dataset)
        spec = ModelSpec(name="t2arec", config=(("max_len", args.max_len), *overrides))
        model = build_model(spec, n_items=dataset_info(con, args.dataset).n_items, seed=args.seed)
        data = loo_examples(con, args.dataset, max_len=args.max_len)
    assert isinstance(model, T2ARec)
    cfg = model.config
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)
    rng = np.random.default_rng(args.seed)  # the same shuffling stream as streamsim's _fit
    rows: list[dict[str, float]] = []
    step = 0
    print(
        f"{args.dataset}: {len(data.train)} training examples; "
        f"μ1 {cfg.mu_time_train}, μ2 {cfg.mu_state_train}"
    )
    print(HEADER)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed + 1)  # dropout masks, as in streamsim's _fit
        while step < args.steps:
            for batch in data.train.batches(256, rng=rng):
                model.train()
                terms = losses(model, batch)  # one forward per step, as in training
                if step % args.every == 0:
                    row = {"step": float(step), **measure(model, batch, terms, params)}
                    if step % args.valid_every == 0:  # eval mode, no dropout: RNG untouched
                        valid = evaluate_examples(model, data.valid, batch_size=4096)
                        row["valid_ndcg10"] = valid["ndcg@10"]
                        model.train()
                    rows.append(row)
                    print(line(row), flush=True)
                l_rec, t_term, s_term, _ = terms
                opt.zero_grad(set_to_none=True)
                (l_rec + t_term + s_term).backward()
                opt.step()
                step += 1
                if step >= args.steps:
                    break
    final = evaluate_examples(model, data.valid, batch_size=4096)["ndcg@10"]
    print(f"after {step} steps: valid NDCG@10 {final:.4f}")
    if args.out is not None:
        with args.out.open("w") as fh:
            for row in rows:
                record = {"dataset": args.dataset, "config": dict(overrides), **row}
                fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()

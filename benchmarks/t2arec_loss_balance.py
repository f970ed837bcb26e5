"""How T2ARec's three training losses pull on the weights, step by step (LOO training data).

    python benchmarks/t2arec_loss_balance.py --data ../shared/data --dataset ml-100k --steps 800
    python benchmarks/t2arec_loss_balance.py --data ../shared/data --dataset amazon-beauty-5core
    python benchmarks/t2arec_loss_balance.py --render docs/benchmarks.d/loss-balance \
        --doc docs/results.md

Trains T2ARec with its default configuration exactly as `streamsim evaluate --protocol loo`
does (Adam, batch 256, lr 0.001, shuffled LOO training examples, the same seeds) and, every
`--every` steps, splits the batch's loss L_rec + μ1·L_time + μ2·L_state into its terms and
reports, for each term, its value and the norm of its gradient over all parameters, as a ratio
to ‖∇L_rec‖ measured on the same batch and the same dropout masks. Next to them: Δ_{n+1} (the
step size of the re-fed token, whose −2nd power dilutes L_state), the history's Δ, ‖h_n‖, the
share of rows where the dilution clamp `delta_min` is active, the share of zero-second gaps
among the batch's consecutive history events, and `adam_rec_rms` (how large an Adam step the
L_rec gradient alone would get). Every `--valid-every` steps the validation NDCG@10 (no
test-time alignment) is measured. `--config KEY=VALUE` overrides T2ARec options;
`--reset-adam-at N` clears Adam's moments before step N (an intervention). Written to answer
one question from the leave-one-out results (docs/results.md): why L_state at μ2 = 1.0 stops
T2ARec from learning on ML-100k but not on Amazon Beauty. `--render DIR` prints one table row
per trace file in DIR; with `--doc PAGE` it also writes the table into PAGE between the markers
named after DIR (`<!-- loss-balance:begin -->` ... `:end -->`; see `benchmarks/doc_tables.py`).
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
from doc_tables import report

from models.base import SeqBatch
from models.t2arec import T2ARec
from streamsim.commands import parse_pairs
from streamsim.ingest import ingest
from streamsim.leave_one_out import loo_examples
from streamsim.rng import seeded
from streamsim.store import Workspace, dataset_info
from streamsim.train import ModelSpec, build_model
from streamsim.training_examples import evaluate_examples


def grads_of(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def norm(grads: list[torch.Tensor]) -> float:
    return float(torch.sqrt(sum((g.pow(2).sum() for g in grads), torch.zeros(()))))


def grad_norm(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> float:
    return norm(grads_of(loss, params))


def adam_rms(
    opt: torch.optim.Adam, params: list[torch.nn.Parameter], grads: list[torch.Tensor]
) -> float:
    """RMS over all weights of g / (sqrt(v̂) + eps) with Adam's current second moment v̂.

    About 1 when g is as large as the gradients Adam has been seeing; far below 1 when v̂
    still remembers larger gradients (β2 = 0.999: a memory of about 1,000 steps), i.e. when an
    L_rec gradient would move the weights much less than Adam's nominal step lr.
    """
    group = opt.param_groups[0]
    beta2, eps = group["betas"][1], group["eps"]
    total, count = 0.0, 0
    for p, g in zip(params, grads, strict=True):
        state = opt.state.get(p)
        if not state:
            return float("nan")  # before the first update
        v_hat = state["exp_avg_sq"] / (1 - beta2 ** float(state["step"]))
        total += float((g / (v_hat.sqrt() + eps)).pow(2).sum())
        count += g.numel()
    return (total / max(count, 1)) ** 0.5


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
    model: T2ARec,
    batch: SeqBatch,
    terms: tuple[Any, ...],
    params: list[torch.nn.Parameter],
    opt: torch.optim.Adam,
) -> dict[str, float]:
    """The trace row of one training step, from that step's own loss terms (before its update)."""
    l_rec, t_term, s_term, (enc, dt_next) = terms
    rec_grads = grads_of(l_rec, params)
    g_rec = norm(rec_grads)
    dt_hist = enc.dt.detach()
    return {
        "adam_rec_rms": adam_rms(opt, params, rec_grads),
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
    "Δhist_med  ‖h_n‖_med  clamped  zero_gaps  adam_rms  valid_ndcg10"
)


def line(row: dict[str, float]) -> str:
    return (
        f"{row['step']:5.0f} {row['l_rec']:7.3f} {row['time_term']:9.4f} "
        f"{row['state_term']:10.4f} {row['grad_time_ratio']:16.3f} "
        f"{row['grad_state_ratio']:16.3f} {row['delta_next_median']:9.2e} "
        f"{row['delta_hist_median']:9.2e} {row['state_norm_median']:10.3f} "
        f"{row['clamped_share']:8.2%} {row['zero_gap_share']:9.2%} "
        f"{row['adam_rec_rms']:9.3f}  "
        f"{row.get('valid_ndcg10', float('nan')):.4f}"
    )


def render(paths: list[Path]) -> str:
    """One markdown row per trace file: the start, the crossing, the end."""
    out = [
        "| trace | config | μ2·‖∇L_state‖ / ‖∇L_rec‖ at step 0 | first logged step < 1 "
        "| L_rec, steps 1000–1200 | Δ_{n+1} median, step 1200 | Δ history median, step 1200 "
        "| valid NDCG@10 at 200 / 600 / 1200 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        rows = [json.loads(text) for text in path.read_text().splitlines()]
        below = next((int(r["step"]) for r in rows if r["grad_state_ratio"] < 1), None)
        crossing = "never" if below is None else str(below)
        if not rows[0]["state_term"]:
            crossing = "– (μ2 = 0)"
        late = [r["l_rec"] for r in rows if r["step"] >= 1000] or [float("nan")]
        valid = {int(r["step"]): r["valid_ndcg10"] for r in rows if "valid_ndcg10" in r}
        at = " / ".join(f"{valid[k]:.4f}" if k in valid else "–" for k in (200, 600, 1200))
        config = ", ".join(f"{k}={v}" for k, v in rows[0]["config"].items()) or "default"
        out.append(
            f"| {rows[0]['dataset']} `{path.stem}` | {config} "
            f"| {rows[0]['grad_state_ratio']:.0f} "
            f"| {crossing} | {sum(late) / len(late):.2f} "
            f"| {rows[-1]['delta_next_median']:.2g} "
            f"| {rows[-1].get('delta_hist_median', float('nan')):.2g} | {at} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--dataset", help="a dataset folder under --data (not with --render)")
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--valid-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", action="append", default=[], help="KEY=VALUE (T2ARec)")
    parser.add_argument("--out", type=Path, help="JSON lines of the trace")
    parser.add_argument(
        "--reset-adam-at", type=int, default=None, help="clear Adam's moments before step N"
    )
    parser.add_argument("--render", type=Path, help="only print the table of DIR/*.jsonl")
    parser.add_argument(
        "--doc",
        type=Path,
        default=None,
        help="with --render: also write the table into this page, between markers named after DIR",
    )
    args = parser.parse_args()
    if args.render is not None:
        table = render(sorted(args.render.glob("*.jsonl")))
        print(table)
        if args.doc is not None:
            report(args.doc, args.render.name, table)
        return
    if args.dataset is None:
        parser.error("--dataset is required (unless --render)")
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
    with seeded(args.seed + 1):  # dropout masks, as in streamsim's _fit
        while step < args.steps:
            for batch in data.train.batches(256, rng=rng):
                model.train()
                terms = losses(model, batch)  # one forward per step, as in training
                if step % args.every == 0:
                    row = {"step": float(step), **measure(model, batch, terms, params, opt)}
                    if step % args.valid_every == 0:  # eval mode, no dropout: RNG untouched
                        valid = evaluate_examples(model, data.valid, batch_size=4096)
                        row["valid_ndcg10"] = valid["ndcg@10"]
                        model.train()
                    rows.append(row)
                    print(line(row), flush=True)
                l_rec, t_term, s_term, _ = terms
                if step == args.reset_adam_at:  # an intervention: forget the moments so far
                    opt.state.clear()
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
                config = dict(overrides)
                if args.reset_adam_at is not None:
                    config["reset_adam_at"] = args.reset_adam_at
                record = {"dataset": args.dataset, "config": config, **row}
                fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()

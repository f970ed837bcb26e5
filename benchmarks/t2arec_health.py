"""One-epoch training-health checks of T2ARec variants (the paper's reading and deviations).

    python benchmarks/t2arec_health.py --store /tmp/ws --dataset ml-100k --max-len 200 \
        --variants literal,no-state,triangle --results docs/benchmarks.d/t2arec-health.jsonl
    python benchmarks/t2arec_health.py --store /tmp/ws --scenario weekend-shift --variants ...
    python benchmarks/t2arec_health.py --render docs/benchmarks.d/t2arec-health.jsonl

A `--dataset` (already ingested into `--store`) is split leave-one-out (RecBole, as
`benchmarks/loo.py`: batch 256, Adam lr 1e-3); a `--scenario` uses its own split and [train]
settings. Either way the variant trains for exactly one epoch through streamsim's own training
loop (`streamsim.train._fit`), whose per-epoch record carries the `streamsim.health` statistics
on validation examples only. The model's statistics at initialisation and, every `--every`
steps, a trace of the same statistics are stored too. One JSON line per (target, variant, seed)
is appended to `--results`; a rerun skips the lines already there, so the script can be killed
and continued.

Acceptance of a variant (on each target, against the same model trained without L_state, i.e.
μ2 = 0 with the same L_time settings, from the same file):

1. rank-1 R² of the validation score matrix < 0.8;
2. shared energy of o_n < 0.4;
3. Δ_{n+1} within 10x of the history's median Δ (0.1 <= ratio <= 10);
4. median ‖h_n‖ not shrunk by more than 2x from initialisation (ratio >= 0.5);
5. validation NDCG@10 >= the μ2 = 0 model's.

`--render` prints the table of every variant tried with these five checks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.t2arec import T2ARec, clamp_to_history
from streamsim import health
from streamsim.leave_one_out import loo_examples
from streamsim.pipeline import ensure_data
from streamsim.progress import TrainEpoch, TrainStep
from streamsim.scenario import load
from streamsim.splits import resolve_split
from streamsim.store import Workspace, dataset_info
from streamsim.train import ModelSpec, TrainSpec, _fit, build_model
from streamsim.training_examples import Examples, build_examples

LITERAL: dict[str, Any] = {  # the paper's reading, written out (independent of the defaults)
    "mu_state_train": 1.0,
    "state_loss": "dilution",
    "state_delta": "live",
    "state_target": "live",
    "time_scale": "fixed",
}
VARIANTS: dict[str, dict[str, Any]] = {
    "literal": LITERAL,
    "no-state": {**LITERAL, "mu_state_train": 0.0},
    "no-state-quantile": {**LITERAL, "mu_state_train": 0.0, "time_scale": "gap_quantile"},
    "no-state-standardized": {**LITERAL, "mu_state_train": 0.0, "time_scale": "standardized"},
    "detach-delta": {**LITERAL, "state_delta": "detached_clamped"},
    "relative": {**LITERAL, "state_loss": "relative", "state_delta": "detached_clamped"},
    "relative-target": {
        **LITERAL,
        "state_loss": "relative",
        "state_delta": "detached_clamped",
        "state_target": "detached",
    },
    "triangle": {**LITERAL, "state_loss": "triangle", "state_delta": "detached_clamped"},
    "triangle-target": {
        **LITERAL,
        "state_loss": "triangle",
        "state_delta": "detached_clamped",
        "state_target": "detached",
    },
}


def variant_config(name: str) -> dict[str, Any]:
    """A named variant, or `BASE+key=value+key=value` (e.g. `triangle+mu_state_train=0.1`)."""
    base, *pairs = name.split("+")
    if base not in VARIANTS:
        msg = f"unknown variant {base!r}; expected one of {sorted(VARIANTS)}"
        raise SystemExit(msg)
    config = dict(VARIANTS[base])
    for pair in pairs:
        key, _, text = pair.partition("=")
        try:
            config[key] = json.loads(text)
        except ValueError:
            config[key] = text
    return config


def reference_config(config: dict[str, Any]) -> dict[str, Any]:
    """The same model without L_state: μ2 = 0, every other option (L_time's included) equal,
    L_state's options at the paper's values (they do nothing at μ2 = 0)."""
    kept = {k: v for k, v in config.items() if not k.startswith("state_")}
    state = {k: v for k, v in LITERAL.items() if k.startswith("state_")}
    return {**kept, **state, "mu_state_train": 0.0}


def load_target(
    args: argparse.Namespace,
) -> tuple[str, Examples, Examples, int, TrainSpec, dict[str, Any]]:
    """(target name, train, valid, n_items, train spec, base model config) of the target."""
    con = Workspace.resolve(args.store).connect()
    if args.scenario:
        sc = load(args.scenario)
        info = ensure_data(con, sc)
        split = resolve_split(con, info.name, sc.split)
        base = dict(sc.model.config)
        max_len = int(base.get("max_len", 50))
        train = build_examples(
            con, info.name, max_len=max_len, collect_start=0, collect_stop=split.pretrain.stop
        )
        valid = build_examples(
            con,
            info.name,
            max_len=max_len,
            collect_start=split.valid.start,
            collect_stop=split.valid.stop,
        )
        spec = dataclasses.replace(sc.train, epochs=1)
        return f"{sc.name} (scenario split)", train, valid, info.n_items, spec, base
    data = loo_examples(con, args.dataset, max_len=args.max_len)
    spec = TrainSpec(epochs=1, batch_size=256, lr=1e-3, patience=3, eval_batch_size=4096)
    n_items = dataset_info(con, args.dataset).n_items
    name = f"{args.dataset} (LOO, L = {args.max_len})"
    return name, data.train, data.valid, n_items, spec, {"max_len": args.max_len}


Target = tuple[str, Examples, Examples, int, TrainSpec, dict[str, Any]]


def run_one(target: Target, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train `variant` on `target` (args: seed, every, epochs, warm_start) and measure it."""
    seed, every, epochs, warm_start = args.seed, args.every, args.epochs, args.warm_start
    name, train, valid, n_items, spec, base = target
    spec = dataclasses.replace(spec, epochs=epochs)
    config = {**base, **variant_config(variant)}
    model = build_model(
        ModelSpec(name="t2arec", config=tuple(sorted(config.items()))), n_items=n_items, seed=seed
    )
    if warm_start is not None:  # one epoch of another variant first; fresh Adam afterwards
        warm_config = {**base, **variant_config(warm_start)}
        warm_spec = ModelSpec(name="t2arec", config=tuple(sorted(warm_config.items())))
        warm = build_model(warm_spec, n_items=n_items, seed=seed)
        _fit(warm, train, valid, dataclasses.replace(spec, epochs=1), seed=seed, progress=None)
        model.load_state_dict(warm.state_dict())
    tracer = health.Monitor(model, train, valid, batch_size=spec.eval_batch_size)
    init = tracer.check(model, {"ndcg@10": math.nan})
    trace: list[dict[str, float]] = []
    steps = {"n": 0}

    def on_progress(p: TrainStep | TrainEpoch) -> None:
        if not isinstance(p, TrainStep):
            return
        steps["n"] += 1
        if every and steps["n"] % every == 0:  # eval mode, no dropout: the RNG is untouched
            stats = tracer.check(model, {"ndcg@10": math.nan})
            trace.append({"step": float(steps["n"]), "loss": p.loss, **stats})

    started = time.perf_counter()
    history = _fit(model, train, valid, spec, seed=seed, progress=on_progress)
    assert isinstance(model, T2ARec)
    terms = state_terms(model, valid, tracer.index)
    scores = [h["valid.ndcg@10"] for h in history]
    kept = scores.index(max(scores))  # `_fit` keeps the first best epoch
    return {
        "target": name,
        "variant": variant,
        "warm_start": warm_start,  # None, or the variant trained for one epoch before this one
        "config": config,
        "seed": seed,
        "train": dataclasses.asdict(spec),
        "n_train": len(train),
        "n_valid": len(valid),
        "init": init,
        "epochs": epochs,
        "kept_epoch": kept,
        "epoch": history[kept],  # the kept epoch's record (epoch 0 when `epochs` is 1)
        "history": history,
        "trace": trace,
        "state_terms": terms,  # the kept weights: do L_state's terms cancel, or vanish?
        "steps": steps["n"],
        "seconds": round(time.perf_counter() - started, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


@torch.no_grad()
def state_terms(model: T2ARec, valid: Examples, index: np.ndarray) -> dict[str, float]:
    """Medians over validation rows (n >= 1) of the three terms of h_n − h̃ᵇ_n, with Δ_{n+1}
    clamped into the history's range: the decay (1 − P̄e^{ΔA}) h_n, the re-fed step
    P̄Δ x_{n+1} ⊗ B_{n+1} and the backward input Δ x_n ⊗ Q; the cosine of the last two and the
    triangle ratio ‖sum‖ / Σ‖term‖ (whether the terms cancel or vanish)."""
    model.eval()
    batch = valid.batch(index).without_targets()
    enc = model._encode(batch)
    st = enc.state
    nxt = model._token(enc.o_n, st.conv_state)
    dt = clamp_to_history(nxt.dt, enc.dt, batch.lengths)[..., None, None]  # (B, H, 1, 1)
    shape = (-1, model.nheads, model.headdim)
    p = getattr(model, "P", None)
    a = model._A()[:, None, None]
    p_bar = torch.exp((dt * p[:, None, None]).clamp(max=20.0)) if p is not None else -1.0 / a
    decay = (1 - p_bar * torch.exp(dt * a)) * st.ssm_state
    step = p_bar * dt * nxt.x.reshape(shape).unsqueeze(-1) * nxt.B[:, None, None, :]
    back = dt * st.x_last.reshape(shape).unsqueeze(-1) * model.linear2(st.x_last)[:, None, None]
    has = batch.lengths > 0

    def norm(t: torch.Tensor) -> torch.Tensor:
        return t.flatten(2).norm(dim=-1)[has]  # (B', H)

    total = norm(decay) + norm(step) + norm(back)
    cos = (step * back).flatten(2).sum(-1)[has] / (norm(step) * norm(back)).clamp(min=1e-30)
    return {
        "decay": float(norm(decay).median()),
        "step": float(norm(step).median()),
        "back": float(norm(back).median()),
        "state": float(norm(st.ssm_state).median()),
        "cos_step_back": float(cos.median()),
        "triangle_ratio": float((norm(decay - step - back) / total.clamp(min=1e-30)).median()),
    }


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def criteria(record: dict[str, Any], ref: dict[str, Any] | None) -> dict[str, bool | None]:
    """The five acceptance checks of one record (None where the reference is missing)."""
    e = record["epoch"]
    ratio = e.get("health.delta_ratio", math.nan)
    ndcg, ref_ndcg = e["valid.ndcg@10"], None if ref is None else ref["epoch"]["valid.ndcg@10"]
    return {
        "rank1": e["health.rank1_r2"] < 0.8,
        "shared": e["health.shared_energy"] < 0.4,
        "delta": 0.1 <= ratio <= 10,
        "state": e.get("health.state_norm_ratio", math.nan) >= 0.5,
        "ndcg": None if ref_ndcg is None else ndcg >= ref_ndcg,
    }


def find_reference(record: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any] | None:
    want = reference_config(record["config"])
    for r in records:
        keys = ("target", "seed", "epochs", "warm_start")
        same = all(r.get(k) == record.get(k) for k in keys)
        if same and r["config"] == want:
            return r
    return None


def variant_label(record: dict[str, Any]) -> str:
    warm = record.get("warm_start")
    return record["variant"] if warm is None else f"{record['variant']} after 1 epoch {warm}"


def render(records: list[dict[str, Any]]) -> str:
    def mark(ok: bool | None) -> str:
        return "–" if ok is None else ("pass" if ok else "**fail**")

    lines = [
        "| target | epochs (kept) | variant | rank-1 R² | shared o_n energy | Δ_{n+1} / median Δ "
        "| ‖h_n‖ / init | valid NDCG@10 (μ2 = 0: same L_time) | popularity | all five |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        e, ref = r["epoch"], find_reference(r, records)
        c = criteria(r, ref)
        is_ref = r["config"].get("mu_state_train") == 0.0
        ref_ndcg = "" if ref is None or is_ref else f" ({ref['epoch']['valid.ndcg@10']:.4f})"
        verdict = (
            "reference" if is_ref else mark(all(c.values()) if None not in c.values() else None)
        )
        if not is_ref and None not in c.values() and not all(c.values()):
            verdict = "fail: " + ", ".join(k for k, ok in c.items() if not ok)
        cells = [
            r["target"], f"{r['epochs']} ({r['kept_epoch']})", variant_label(r),
            f"{e['health.rank1_r2']:.2f} {mark(c['rank1'])}",
            f"{e['health.shared_energy']:.2f} {mark(c['shared'])}",
            f"{e.get('health.delta_ratio', math.nan):.3g} {mark(c['delta'])}",
            f"{e.get('health.state_norm_ratio', math.nan):.2f} {mark(c['state'])}",
            f"{e['valid.ndcg@10']:.4f}{ref_ndcg} {'' if is_ref else mark(c['ndcg'])}",
            f"{e['health.popularity_ndcg@10']:.4f}", verdict,
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="workspace holding the ingested datasets")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--dataset", help="an ingested dataset: leave-one-out split")
    target.add_argument("--scenario", help="a scenario name or TOML: its own split")
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--variants", default="literal,no-state", help="comma list; see VARIANTS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--warm-start",
        help="train this variant for one epoch first and continue from its weights",
    )
    parser.add_argument(
        "--epochs", type=int, default=1, help="at most this many epochs (target's patience)"
    )
    parser.add_argument("--every", type=int, default=50, help="trace every N steps (0: off)")
    parser.add_argument("--results", type=Path, required=True, help="JSON lines, appended")
    parser.add_argument("--render", action="store_true", help="only print the table")
    args = parser.parse_args()
    if not args.render:
        if args.store is None or not (args.dataset or args.scenario):
            parser.error("--store and one of --dataset / --scenario are required")
        torch.set_num_threads(1)
        loaded = load_target(args)
        for variant in args.variants.split(","):
            config = {**loaded[5], **variant_config(variant)}
            done = [
                r for r in read(args.results)
                if r["target"] == loaded[0] and r["seed"] == args.seed and r["config"] == config
                and r["epochs"] == args.epochs and r.get("warm_start") == args.warm_start
            ]  # fmt: skip
            if done:
                continue
            record = run_one(loaded, variant, args)
            args.results.parent.mkdir(parents=True, exist_ok=True)
            with args.results.open("a") as fh:
                fh.write(json.dumps(record, default=str) + "\n")
            e = record["epoch"]
            print(
                f"{loaded[0]} {variant}: valid NDCG@10 {e['valid.ndcg@10']:.4f}, "
                f"{health.summary_line(e)}, {record['seconds']:.0f} s",
                flush=True,
            )
    print(render(read(args.results)))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()

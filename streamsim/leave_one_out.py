"""The RecBole leave-one-out protocol with full ranking, for comparing with published numbers.

Per user, every interaction after the first becomes one example (previous <= L items -> this
item, RecBole's augmentation); the user's last example is the test example and the second-to-last
the validation example (RecBole ``LS: valid_and_test``: a user with two examples gives only a
test example, a user with one example only a training example). The test input therefore holds
the validation item. Ranking is over every item of the dataset (padding excluded), history items
are not masked, and ties count against the target (`streamsim.ranking`).

This protocol ignores the global timeline (a user's test item may be older than another user's
training items): it exists to reproduce published
numbers, not to measure interest tracking (use `streamsim replay` for that).

With test-time alignment (`tta`), each evaluation batch is handled as in T2ARec's Algorithm 1:
snapshot, `tta_steps` SGD steps on the test-time loss of the batch's inputs, re-score, restore.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import torch

from models.base import Recommender
from streamsim.adapt import Adapter, PolicySpec
from streamsim.errors import ModelError
from streamsim.history import HistoryBuffer
from streamsim.progress import Progress
from streamsim.ranking import target_ranks
from streamsim.resume import ResumeFile
from streamsim.store import dataset_info, iter_events
from streamsim.train import ModelSpec, TrainSpec, _fit, build_model, model_code_hash, model_config
from streamsim.training_examples import Examples, stack_examples

KS = (10, 50)


@dataclass(frozen=True)
class LooData:
    train: Examples
    valid: Examples
    test: Examples


def loo_examples(con: duckdb.DuckDBPyConnection, dataset: str, *, max_len: int) -> LooData:
    """RecBole-style augmented examples split leave-one-out per user."""
    info = dataset_info(con, dataset)
    counts = np.zeros(info.n_users, dtype=np.int64)
    for user, count in con.execute(
        "SELECT user_id, count(*) FROM dataset_events(?) GROUP BY user_id", [dataset]
    ).fetchall():
        counts[user] = count
    n_examples = np.maximum(counts - 1, 0)  # examples per user
    buf = HistoryBuffer(n_users=info.n_users, n_items=info.n_items, max_len=max_len)
    seen = np.zeros(info.n_users, dtype=np.int64)
    parts: dict[str, dict[str, list[Any]]] = {
        k: {"items": [], "times": [], "len": [], "req": [], "tgt": []}
        for k in ("train", "valid", "test")
    }
    for batch in iter_events(con, dataset):
        users = batch.column("user_id").to_numpy().astype(np.int64)
        items = batch.column("item_id").to_numpy().astype(np.int64)
        ts = batch.column("ts").to_numpy().astype(np.int64)
        for u, it, t in zip(users.tolist(), items.tolist(), ts.tolist()):
            k = seen[u]  # this event's position in the user's sequence
            if k > 0:
                example = k - 1  # 0-based example index of the user
                total = n_examples[u]
                leave = min(2, total - 1)  # RecBole: legal_leave_one_num
                if leave >= 1 and example == total - 1:
                    part = "test"
                elif leave == 2 and example == total - 2:
                    part = "valid"
                else:
                    part = "train"
                rows = parts[part]
                rows["items"].append(buf.items[u].copy())
                rows["times"].append(buf.times[u].copy())
                rows["len"].append(np.int64(buf.lengths[u]))
                rows["req"].append(np.int64(t))
                rows["tgt"].append(np.int64(it))
            buf.append(u, it, t)
            seen[u] = k + 1
    everything = np.ones(info.n_items + 1, dtype=bool)
    stacked = {name: stack_examples(rows, max_len, everything) for name, rows in parts.items()}
    return LooData(**stacked)


def full_ranking_metrics(
    model: Recommender,
    examples: Examples,
    *,
    batch_size: int,
    tta: PolicySpec | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """Recall, MRR and NDCG @10 and @50 over the full catalogue (optionally with Algorithm 1)."""
    model.eval()
    sums = {f"{m}@{k}": 0.0 for m in ("recall", "mrr", "ndcg") for k in KS}
    adapter = Adapter(model, tta) if tta is not None else None
    for batch in examples.batches(batch_size, device=device):
        inputs = batch.without_targets()
        if adapter is not None:
            with adapter.adapted(inputs), torch.no_grad():  # Algorithm 1: adapt, score, restore
                scores = model.score(inputs)
        else:
            with torch.no_grad():
                scores = model.score(inputs)
        assert batch.targets is not None
        ranks = target_ranks(scores, batch.targets).to(torch.float64)
        for k in KS:
            hit = ranks <= k
            sums[f"recall@{k}"] += float(hit.sum())
            sums[f"mrr@{k}"] += float(torch.where(hit, 1.0 / ranks, 0.0).sum())
            sums[f"ndcg@{k}"] += float(torch.where(hit, 1.0 / torch.log2(ranks + 1), 0.0).sum())
    n = max(len(examples), 1)
    return {k: v / n for k, v in sums.items()}


def evaluate_loo(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    *,
    seed: int,
    tta: PolicySpec | None = None,
    eval_batch_size: int = 4096,
    device: str = "cpu",
    progress: Progress | None = None,
    resume_dir: Path | None = None,
) -> dict[str, object]:
    """Train on the LOO training examples, early-stop on validation, report test metrics.

    With `resume_dir`, training saves its state there after every epoch
    (``<dataset>-L<max_len>-<model>-seed<seed>.pt``, `streamsim.resume`) and a rerun continues an
    interrupted one; the file is deleted once the result is complete.
    """
    info = dataset_info(con, dataset)
    model = build_model(model_spec, n_items=info.n_items, seed=seed).to(device)
    if tta is not None and not model.has_test_time_loss:  # refuse before training, not after
        msg = f"model {model_spec.name!r} has no test-time loss; drop --tta"
        raise ModelError(msg)
    data = loo_examples(con, dataset, max_len=model.max_len)
    resume = None
    if resume_dir is not None and model.trainable:
        key = {
            "protocol": "loo",
            "dataset": dataset,
            "data_fingerprint": info.fingerprint,
            "max_len": model.max_len,
            "model": model_spec.name,
            "config": dataclasses.asdict(model_config(model_spec)),
            "train": dataclasses.asdict(train_spec),
            "seed": seed,
            "device": device,
            "code": model_code_hash(type(model)),
        }
        name = f"{dataset}-L{model.max_len}-{model_spec.name}-seed{seed}.pt"
        resume = ResumeFile(resume_dir / name, json.loads(json.dumps(key, default=str)))
    if model.trainable:
        history = _fit(
            model,
            data.train,
            data.valid,
            train_spec,
            seed=seed,
            progress=progress,
            device=device,
            resume=resume,
        )
    else:
        for batch in data.train.batches(4096, device=device):
            model.observe(batch)
        history = []
    result: dict[str, object] = {
        "dataset": dataset,
        "model": model_spec.name,
        "seed": seed,
        "n_train": len(data.train),
        "n_valid": len(data.valid),
        "n_test": len(data.test),
        "epochs": len(history),
        "best_epoch": _best_epoch(history),
        "valid": _valid_at_best(history),
        "test": full_ranking_metrics(model, data.test, batch_size=eval_batch_size, device=device),
        "history": history,
    }
    if tta is not None:
        result["test_tta"] = full_ranking_metrics(
            model, data.test, batch_size=eval_batch_size, tta=tta, device=device
        )
    if resume is not None:
        resume.path.unlink(missing_ok=True)
    return result


def _best_epoch(history: list[dict[str, float]]) -> int | None:
    """The 0-based epoch whose weights were kept (highest validation NDCG@10), if trained."""
    scores = [h.get("valid.ndcg@10", float("nan")) for h in history]
    finite = [(s, i) for i, s in enumerate(scores) if s == s]
    if not finite:
        return None
    best = max(s for s, _ in finite)
    return min(i for s, i in finite if s == best)  # `_fit` keeps the first best epoch


def _valid_at_best(history: list[dict[str, float]]) -> dict[str, float] | None:
    """The kept epoch's validation metrics (no test-time alignment): what model or μ choices
    are compared on; None for models that are not trained."""
    best = _best_epoch(history)
    if best is None:
        return None
    return {k[len("valid.") :]: v for k, v in history[best].items() if k.startswith("valid.")}


def default_tta() -> PolicySpec:
    """T2ARec's test-time setting: one SGD step, lr 0.005, reset after every batch."""
    return PolicySpec(name="loo-tta", tta="reset", tta_lr=0.005, tta_steps=1)

"""Pretraining on a scenario's pretraining period, early stopping on its validation window.

`train` returns a `Checkpoint`: ``checkpoints/<hash>/model.safetensors`` + ``manifest.json``. The
hash covers everything that determines the weights (data fingerprint, split, model name and
config, training settings, seed, streamsim version), so a second `train` or `replay` with the same
inputs reuses the stored checkpoint instead of training again.

Validation is next-item NDCG@10 with full-catalogue ranking (catalogue = items seen before the
validation window) and no test-time adaptation (docs/models.md, A18). Count-based models
(`trainable = False`) are "trained" by observing the pretraining events in replay order.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import torch
from safetensors.torch import load_model, save_model

import models
from models.base import Recommender, sum_terms
from streamsim import __version__, config, health
from streamsim import resume as resume_state
from streamsim import rng as rng_streams
from streamsim.errors import ModelError, ScenarioError
from streamsim.progress import Progress, TrainEpoch, TrainStep
from streamsim.provenance import versions
from streamsim.resume import ResumeFile
from streamsim.splits import IndexRange, Split
from streamsim.store import Workspace, dataset_info
from streamsim.training_examples import Examples, build_examples, evaluate_examples


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """[model]: registry name and config overrides (checked against the model's config class
    when the model is built: `model_config`)."""

    name: str = "t2arec"
    config: tuple[tuple[str, Any], ...] = ()  # sorted (key, value) pairs; see `overrides`

    @property
    def overrides(self) -> dict[str, Any]:
        return dict(self.config)

    @classmethod
    def from_table(cls, table: Any, where: str) -> ModelSpec:
        kw = config.bind(cls, table, where, skip=("config",))
        options = table.get("config", {})
        if not isinstance(options, dict):
            msg = f"{where} key 'config': expected a table; got {options!r}"
            raise ScenarioError(msg)
        return cls(**kw, config=tuple(sorted(options.items())))


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainSpec:
    """[train]: pretraining on the pretraining period, early stopping on validation NDCG@10."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 3  # epochs without validation improvement before stopping
    eval_batch_size: int = 512

    @classmethod
    def from_table(cls, table: Any, where: str) -> TrainSpec:
        spec = cls(**config.bind(cls, table, where))
        for key in ("epochs", "batch_size", "eval_batch_size"):
            config.at_least_zero(getattr(spec, key), f"{where} key {key!r}", strict=True)
        for key in ("lr", "weight_decay", "patience"):
            config.at_least_zero(getattr(spec, key), f"{where} key {key!r}")
        return spec


@dataclass(frozen=True)
class Checkpoint:
    path: Path  # the checkpoint directory
    hash: str
    model_name: str
    config: dict[str, Any]
    n_items: int
    manifest: dict[str, Any]


def model_config(model_spec: ModelSpec) -> Any:
    """The model's config dataclass; `ModelError` for unknown models, keys or wrong types."""
    try:
        return models.make_config(model_spec.name, model_spec.overrides)
    except (KeyError, ValueError) as exc:
        raise ModelError(str(exc).strip("'\"")) from None


def build_model(model_spec: ModelSpec, *, n_items: int, seed: int) -> Recommender:
    """Create a registered model with a seeded initialisation (the global RNG is left as it was).

    Models that own their init generator (a `seed` field in their config) get the run's seed
    there too, unless the model config sets `seed` explicitly; otherwise every run seed would
    start from the same weights.
    """
    config = model_config(model_spec)
    fields = {f.name for f in dataclasses.fields(config)}
    if "seed" in fields and "seed" not in dict(model_spec.overrides):
        config = dataclasses.replace(config, seed=seed)
    with rng_streams.seeded(seed):  # initialisation on CPU; owned, not global
        return models.create(model_spec.name, n_items=n_items, config=config)


def checkpoint_key(
    fingerprint: str, split: Split, model_spec: ModelSpec, train_spec: TrainSpec, seed: int
) -> tuple[str, dict[str, Any]]:
    """The content hash of a training job and the canonical description it hashes."""
    config = asdict(model_config(model_spec))
    key = {
        "data_fingerprint": fingerprint,
        "split": {k: asdict(getattr(split, k)) for k in ("pretrain", "valid", "replay")},
        "model": model_spec.name,
        "config": config,
        "train": asdict(train_spec),
        "seed": seed,
        "streamsim": __version__,
        "code": code_hash(),
    }
    blob = json.dumps(key, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16], key


# the training loop, the example builder, the history buffer and the owned random streams: part
# of `code_hash` and of every `model_code_hash`
_TRAINING_FILES = ("train.py", "training_examples.py", "history.py", "rng.py")


@functools.cache
def code_hash() -> str:
    """sha256 of the code that determines trained weights: the `models` package, the training
    loop and the example builder. A change there retrains instead of reusing a stale checkpoint
    cached under the same version number."""
    digest = hashlib.sha256()
    files = sorted(Path(models.__file__).parent.glob("*.py"))
    here = Path(__file__).parent
    for path in [*files, *(here / f for f in _TRAINING_FILES)]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def model_source_files(model_cls: type[Recommender]) -> list[Path]:
    """The `models` source files one model's weights depend on: its module and the `models`
    modules it imports, transitively, read from the import statements of the source."""
    root = Path(models.__file__).parent
    module = sys.modules[model_cls.__module__]
    assert module.__file__ is not None
    todo, seen = [Path(module.__file__)], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "models":  # `from models import ssd_backend`
                    names = [f"models.{alias.name}" for alias in node.names]
                else:
                    names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] != "models":
                    continue
                candidate = root.joinpath(*parts[1:]).with_suffix(".py")
                if len(parts) == 1:
                    candidate = root / "__init__.py"
                if candidate.exists():
                    todo.append(candidate)
    return sorted(seen)


def model_code_hash(model_cls: type[Recommender]) -> str:
    """sha256 of the code that determines one model's trained weights: `model_source_files`
    plus the training loop, the example builder and the history buffer. Narrower than
    `code_hash`, so a resume file of one model survives edits to another model."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for path in [*model_source_files(model_cls), *(here / f for f in _TRAINING_FILES)]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def train(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    split: Split,
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    *,
    seed: int,
    workspace: Workspace,
    progress: Progress | None = None,
    force: bool = False,
) -> Checkpoint:
    """Train (or reuse) the checkpoint of `model_spec` on the pretraining period of `dataset`."""
    info = dataset_info(con, dataset)
    key, description = checkpoint_key(info.fingerprint, split, model_spec, train_spec, seed)
    directory = workspace.subdir("checkpoints") / f"{model_spec.name}-{key}"
    manifest_path = directory / "manifest.json"
    if manifest_path.exists() and not force:
        return _read_checkpoint(directory)
    # per-epoch training state, so a killed `train`/`replay` continues (streamsim/resume.py)
    resume = ResumeFile(
        directory.with_name(directory.name + ".resume.pt"),
        json.loads(json.dumps(description, default=str)),
    )
    if force:
        resume.path.unlink(missing_ok=True)

    model = build_model(model_spec, n_items=info.n_items, seed=seed)

    def examples(period: IndexRange, *, cold_users: bool = False) -> Examples:
        """The examples whose targets are `period`'s events; histories start at pretraining."""
        return build_examples(
            con, dataset, max_len=model.max_len, collect_start=period.start,
            collect_stop=period.stop, include_cold_users=cold_users,
            history_start=split.pretrain.start,
        )  # fmt: skip

    train_ex = examples(split.pretrain, cold_users=not model.trainable)
    valid_ex = examples(split.valid)
    started = time.perf_counter()
    if model.trainable:
        history = _fit(
            model, train_ex, valid_ex, train_spec, seed=seed, progress=progress, resume=resume
        )
    else:
        for batch in train_ex.batches(4096):
            model.observe(batch)
        history = [{"epoch": 0.0, **_prefixed(evaluate_examples(model, valid_ex, batch_size=512))}]
    best = max(history, key=lambda h: _nan_low(h.get("valid.ndcg@10", float("nan"))))
    manifest = {
        **description,
        "dataset": dataset,
        "n_items": info.n_items,
        "n_train_examples": len(train_ex),
        "n_valid_examples": len(valid_ex),
        "history": history,
        "best": best,
        "health_warning": health.warning_line(best, model_spec.name),  # kept epoch; None: fine
        "train_seconds": time.perf_counter() - started,
        "versions": versions(),
    }
    directory.mkdir(parents=True, exist_ok=True)
    if model.trainable:
        save_model(model, str(directory / "model.safetensors"))
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    resume.path.unlink(missing_ok=True)
    return _read_checkpoint(directory)


def _fit(
    model: Recommender,
    train_ex: Examples,
    valid_ex: Examples,
    spec: TrainSpec,
    *,
    seed: int,
    progress: Progress | None,
    device: str = "cpu",
    resume: ResumeFile | None = None,
) -> list[dict[str, float]]:
    """Adam on the model's supervised loss; keeps the weights of the best validation epoch.

    With `resume`, the run's state is saved after every epoch and a saved state is continued
    (`streamsim.resume`); the result is the same as without interruption.
    """
    if len(train_ex) == 0:
        msg = "the pretraining period yields no training examples (every user has one event)"
        raise ModelError(msg)
    rng = np.random.default_rng(seed)
    monitor = health.Monitor(
        model, train_ex, valid_ex, batch_size=spec.eval_batch_size, device=device
    )
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    history: list[dict[str, float]] = []
    best_score, best_state, since_best = -1.0, None, 0
    with rng_streams.seeded(seed + 1, device):  # dropout masks, on the training device
        start, finished = 0, False
        saved = resume_state.load(resume) if resume is not None else None
        if saved is not None:
            start, finished, history = saved.epochs_done, saved.finished, saved.history
            best_score, best_state, since_best = (
                saved.best_score,
                saved.best_state,
                saved.since_best,
            )
            model.load_state_dict(saved.model)
            opt.load_state_dict(saved.optimizer)
            rng.bit_generator.state = saved.numpy_rng
            torch.set_rng_state(saved.torch_rng)
            rng_streams.set_device_state(saved.device_rng, device)
            for name, gen in model.generators().items():
                gen.set_state(saved.model_rngs[name])
        for epoch in range(start, start if finished else spec.epochs):
            model.train()
            t0, total, n = time.perf_counter(), 0.0, 0
            term_sums: dict[str, float] = {}
            for batch in train_ex.batches(spec.batch_size, rng=rng, device=device):
                terms = model.loss_terms(batch)
                loss = sum_terms(terms)
                if not torch.isfinite(loss):
                    msg = f"training loss became {float(loss)} in epoch {epoch}"
                    raise ModelError(msg)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * batch.size
                for name, value in terms.items():
                    term_sums[name] = term_sums.get(name, 0.0) + float(value.detach()) * batch.size
                n += batch.size
                if progress is not None:
                    elapsed = time.perf_counter() - t0
                    progress(
                        TrainStep(
                            epoch=epoch,
                            done=n / len(train_ex),
                            loss=total / n,
                            examples_per_s=n / max(elapsed, 1e-9),
                        )
                    )
            valid = evaluate_examples(
                model, valid_ex, batch_size=spec.eval_batch_size, device=device
            )
            record = {
                "epoch": float(epoch),
                "train_loss": total / max(n, 1),
                **_term_means(term_sums, n),
                "seconds": time.perf_counter() - t0,
                **_prefixed(valid),
                **monitor.check(model, valid),  # streamsim.health: collapse, popularity level
            }
            history.append(record)
            if progress is not None:
                progress(TrainEpoch(epoch=epoch, record=record))
            score = _nan_low(valid["ndcg@10"])
            if score > best_score:
                best_score, since_best = score, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since_best += 1
            stop = since_best >= spec.patience or epoch + 1 == spec.epochs
            if resume is not None:
                state = resume_state.FitState(
                    epochs_done=epoch + 1,
                    finished=stop,
                    model=model.state_dict(),
                    optimizer=opt.state_dict(),
                    best_state=best_state,
                    best_score=best_score,
                    since_best=since_best,
                    history=history,
                    numpy_rng=dict(rng.bit_generator.state),
                    torch_rng=torch.get_rng_state(),
                    device_rng=rng_streams.device_state(device),
                    model_rngs={k: g.get_state() for k, g in model.generators().items()},
                )
                resume_state.save(resume, state)
            if stop:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


def _term_means(term_sums: dict[str, float], n: int) -> dict[str, float]:
    """Epoch means of a multi-term loss (`train.rec`, `train.state`, …); nothing for one term."""
    if len(term_sums) < 2:
        return {}
    return {f"train.{name}": value / max(n, 1) for name, value in term_sums.items()}


def _prefixed(metrics: dict[str, float]) -> dict[str, float]:
    return {f"valid.{k}": v for k, v in metrics.items()}


def _nan_low(x: float) -> float:
    return -1.0 if x != x else x


def _read_checkpoint(directory: Path) -> Checkpoint:
    manifest = json.loads((directory / "manifest.json").read_text())
    return Checkpoint(
        path=directory,
        hash=directory.name.rsplit("-", 1)[-1],
        model_name=manifest["model"],
        config=manifest["config"],
        n_items=int(manifest["n_items"]),
        manifest=manifest,
    )


def load_checkpoint(checkpoint: Checkpoint | Path) -> Recommender:
    """The trained model of a checkpoint, in eval mode."""
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else _read_checkpoint(checkpoint)
    model = models.create(ckpt.model_name, n_items=ckpt.n_items, config=ckpt.config)
    weights = ckpt.path / "model.safetensors"
    if model.trainable:
        load_model(model, str(weights))
    return model.eval()

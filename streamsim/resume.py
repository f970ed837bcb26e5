"""Resumable training: the state of a training run at an epoch boundary, saved and restored.

A long CPU run can outlive the process that started it (a Mamba4Rec epoch on Amazon Beauty is
about ten minutes here; RecBole's answer is its `checkpoint_dir` + resume). With a `ResumeFile`,
`streamsim.train._fit` writes its state after every epoch and, when the file exists, continues
after the last finished epoch instead of starting again. The resumed run is bit for bit the
uninterrupted one on CPU, because everything that the next epoch reads is saved:

- the current weights and Adam's moments (`optimizer.state_dict()`);
- the kept best weights, their validation score and the patience counter;
- the per-epoch history;
- the shuffling generator (numpy), the dropout generators (torch's CPU generator and, when
  training on CUDA, that device's generator, inside the run's `streamsim.rng.seeded` scope) and
  the generators the model owns (`Recommender.generators()`, e.g. BERT4Rec's masking).

Files written before the device generator was saved have no `device_rng` entry; they load with
None, which is what a CPU run saves anyway (a CUDA run continued from such a file draws other
dropout masks after the resume).

The file carries the run's `key` (model, config, seed, training settings, data): a file written
for other settings is refused with an error naming the file and the first differing entry, never
silently continued. Writes are atomic (temporary file + `os.replace`): a run killed while saving
leaves the previous epoch's file. Loading uses `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from streamsim.errors import ModelError

FORMAT = 1


@dataclass(frozen=True, slots=True)
class ResumeFile:
    """Where a run's state lives and what run it belongs to (JSON-able `key`)."""

    path: Path
    key: dict[str, Any]


@dataclass(slots=True)
class FitState:
    """Everything `_fit` needs to continue after `epochs_done` finished epochs."""

    epochs_done: int
    finished: bool  # early stopping or the epoch cap was reached: only the best weights remain
    model: dict[str, Tensor]
    optimizer: dict[str, Any]
    best_state: dict[str, Tensor] | None
    best_score: float
    since_best: int
    history: list[dict[str, float]]
    numpy_rng: dict[str, Any]
    torch_rng: Tensor
    model_rngs: dict[str, Tensor]
    device_rng: Tensor | None = None  # the CUDA device's generator; None on CPU


def save(resume: ResumeFile, state: FitState) -> None:
    """Write `state` atomically to `resume.path` (its folder is created)."""
    resume.path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "key": json.dumps(resume.key, sort_keys=True),
        **{name: getattr(state, name) for name in FitState.__slots__},
        # numpy's PCG64 state holds 128-bit ints, kept as text for the weights-only loader
        "numpy_rng": json.dumps(state.numpy_rng),
    }
    tmp = resume.path.with_name(resume.path.name + f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, resume.path)


def peek(path: Path) -> tuple[dict[str, Any], FitState]:
    """The key and state of a resume file, without checking them against a run (for reports)."""
    payload = torch.load(path, weights_only=True, map_location="cpu")
    _check_entries(path, payload)
    return json.loads(payload["key"]), _state(payload)


def load(resume: ResumeFile) -> FitState | None:
    """The saved state of this run, or None when there is no file yet."""
    if not resume.path.exists():
        return None
    try:
        payload = torch.load(resume.path, weights_only=True, map_location="cpu")
    except Exception as exc:  # a truncated or foreign file: say which, keep it for inspection
        msg = f"{resume.path}: not a streamsim resume file ({type(exc).__name__}: {exc}); "
        msg += "delete it to start the run again"
        raise ModelError(msg) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        msg = f"{resume.path}: expected a resume file of format {FORMAT}, got {got!r}"
        raise ModelError(msg)
    _check_entries(resume.path, payload)
    saved_key = json.loads(payload["key"])
    if saved_key != resume.key:
        name = next(
            k
            for k in sorted(set(saved_key) | set(resume.key))
            if saved_key.get(k) != resume.key.get(k)
        )
        msg = f"{resume.path}: written for another run ({name!r} is {saved_key.get(name)!r} there, "
        msg += f"{resume.key.get(name)!r} here); delete it or use another resume folder"
        raise ModelError(msg)
    return _state(payload)


# entries a resume file of this format must hold; `device_rng` came later and may be absent
_REQUIRED = ("key", *(name for name in FitState.__slots__ if name != "device_rng"))


def _check_entries(path: Path, payload: dict[str, Any]) -> None:
    missing = [name for name in _REQUIRED if name not in payload]
    if missing:
        msg = f"{path}: resume file of format {FORMAT} lacks {', '.join(map(repr, missing))}; "
        msg += "delete it to start the run again"
        raise ModelError(msg)


def _state(payload: dict[str, Any]) -> FitState:
    fields = {name: payload[name] for name in FitState.__slots__ if name in payload}
    fields["numpy_rng"] = json.loads(payload["numpy_rng"])
    return FitState(**fields)

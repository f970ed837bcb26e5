"""Progress of a long call, as typed events: what `run_scenario` and `train` report while they work.

A caller passes one `Progress` callback; the CLI renders the events (a progress bar on a
terminal), tests and benchmarks may collect them. Events are facts, never instructions: a
callback cannot change what the call does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from streamsim.records import StepResult


@dataclass(frozen=True)
class TrainStep:
    """A training batch was done."""

    epoch: int
    done: float  # share of the epoch's examples seen, 0..1
    loss: float  # mean training loss so far in the epoch
    examples_per_s: float


@dataclass(frozen=True)
class TrainEpoch:
    """An epoch ended; `record` is its entry in the checkpoint's training history (train loss,
    its terms, seconds and the validation metrics as ``valid.ndcg@10`` ...)."""

    epoch: int
    record: Mapping[str, float]


@dataclass(frozen=True)
class ReplayStarted:
    """A policy's replay starts (or resumes after `done` events)."""

    policy: str
    run_id: str
    total: int  # events in the replay period
    done: int = 0


@dataclass(frozen=True)
class ReplayBatch:
    """A micro-batch was replayed."""

    policy: str
    result: StepResult
    done: int  # events replayed so far in this run
    total: int


@dataclass(frozen=True)
class ReplayFinished:
    """A policy's run is complete (`reused`: a finished identical run was found and kept)."""

    policy: str
    run_id: str
    reused: bool = False


ProgressEvent = TrainStep | TrainEpoch | ReplayStarted | ReplayBatch | ReplayFinished
Progress = Callable[[ProgressEvent], None]

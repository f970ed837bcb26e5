"""Scenarios: what `streamsim replay --scenario NAME` replays, and how.

A scenario is a TOML file in ``scenarios/`` (or any path), loaded by one function, `load`, into
the frozen dataclasses below. The timeline of a scenario (replay index, half-open ranges)::

    0                 valid_start          replay_start                       replay_end
    |---- pretrain ----|---- validation ----|------------- replay ---------------|
    model trained here  early stopping /     prequential: adapt -> score ->
                        hyper-parameter      reveal -> learn, batch by batch
                        choice

The dataclass fields are the contract the engine codes against (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# ---------------------------------------------------------------------------------------------
# Typed sections (shared contract)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSpec:
    """[data]: which dataset to replay."""

    dataset: str  # dataset name in the store
    synthetic: Any = None  # a `streamsim.synth.SynthConfig`: generate `dataset` from it when set
    fetch: str | None = None  # `streamsim datasets fetch NAME` can provide the dataset
    hint: str = ""  # how to get the data, printed when the dataset is missing


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitSpec:
    """[split]: pretraining | validation | replay cuts, as event fractions or epoch seconds."""

    by: Literal["fraction", "time"] = "fraction"
    valid_start: float = 0.6  # start of the validation window
    replay_start: float = 0.7  # start of the replay period (= end of validation)
    replay_end: float | None = None  # end of the replay period (None: the last event)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """[model]: registry name and config overrides."""

    name: str = "t2arec"
    config: tuple[tuple[str, Any], ...] = ()  # sorted (key, value) pairs; see `overrides`

    @property
    def overrides(self) -> dict[str, Any]:
        return dict(self.config)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainSpec:
    """[train]: pretraining on the pretraining period, early stopping on validation NDCG@10."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 3  # epochs without validation improvement before stopping
    eval_batch_size: int = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySpec:
    """One entry of [[adaptation.policies]]: test-time adaptation x online supervised update."""

    name: str  # display name, unique within the scenario ('none', 'reset', 'continual', ...)
    tta: Literal["none", "reset", "continual"] = "none"
    tta_lr: float = 0.005  # T2ARec Algorithm 1: plain SGD, alpha = 0.005
    tta_steps: int = 1  # M
    online: bool = False  # supervised update on revealed events after scoring
    online_lr: float = 1e-3
    online_steps: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaySpec:
    """[replay]: micro-batching of the replay period."""

    batch_events: int = 256  # consecutive events per micro-batch (when batch_window_s is None)
    batch_window_s: int | None = None  # or: a micro-batch per time window of this many seconds
    max_batch_events: int = 4096  # cap on a time-window batch
    exclude_seen: bool = False  # mask items already in the user's history (-inf); recorded
    max_events: int | None = None  # replay only the first N events of the replay period


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectorSpec:
    """One entry of [[detectors]]: a river detector watching one signal."""

    name: str  # adwin | page_hinkley | kswin | ddm | eddm | hddm_a | hddm_w | fhddm
    signal: str  # rr10 | ndcg10 | miss10 | tta_loss | topk_entropy
    params: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentSpec:
    """[segments]: which segmentations the report shows."""

    quartiles: bool = True
    calendar: tuple[str, ...] = ("day", "week", "weekpart")
    drift_windows: bool = True
    recovery_eps: float = 0.05  # recovery: rolling NDCG@10 back within eps of pre-drift level
    rolling_window: int = 500  # events in the rolling NDCG@10 used for recovery


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    description: str
    path: Path
    content_hash: str  # sha256 of the resolved scenario (after overrides)
    seed: int = 0
    data: DataSpec
    split: SplitSpec = field(default_factory=SplitSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    policies: tuple[PolicySpec, ...] = ()
    replay: ReplaySpec = field(default_factory=ReplaySpec)
    detectors: tuple[DetectorSpec, ...] = ()
    segments: SegmentSpec = field(default_factory=SegmentSpec)

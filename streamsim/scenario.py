"""Scenarios: what `streamsim replay --scenario NAME` replays, and how.

A scenario is a TOML file in ``scenarios/`` (or any path), loaded by one function, `load`. Each
section is a frozen dataclass that lives with the code it configures and checks its own values
(`streamsim.config` binds a table to it, with the file and key path in every error):

    [data.synthetic]          streamsim.synth.SynthConfig
    [split]                   streamsim.splits.SplitSpec
    [model], [train]          streamsim.train.ModelSpec, TrainSpec
    [[adaptation.policies]]   streamsim.adapt.PolicySpec
    [replay]                  streamsim.replay.ReplaySpec
    [[detectors]]             streamsim.drift.DetectorSpec
    [segments]                streamsim.segments.SegmentSpec

This module keeps `Scenario`, the loader, command-line overrides, the content hash and the
checks that span sections (`check`). The timeline of a scenario (replay index, half-open
ranges)::

    0                 valid_start          replay_start                       replay_end
    |---- pretrain ----|---- validation ----|------------- replay ---------------|
    model trained here  early stopping /     prequential: adapt -> score ->
                        hyper-parameter      reveal -> learn, batch by batch
                        choice
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from streamsim import config
from streamsim.adapt import PolicySpec
from streamsim.drift import DetectorSpec
from streamsim.errors import ModelError, ScenarioError
from streamsim.replay import ReplaySpec
from streamsim.segments import SegmentSpec
from streamsim.splits import SplitSpec
from streamsim.synth import SynthConfig
from streamsim.train import ModelSpec, TrainSpec, model_config


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSpec:
    """[data]: which dataset to replay."""

    dataset: str  # dataset name in the store
    synthetic: SynthConfig | None = None  # generate `dataset` from this when set
    fetch: str | None = None  # `streamsim datasets fetch NAME` can provide the dataset
    hint: str = ""  # how to get the data, printed when the dataset is missing

    @classmethod
    def from_table(cls, table: Any, where: str) -> DataSpec:
        kw = config.bind(cls, table, where, skip=("synthetic",))
        synthetic = None
        if "synthetic" in table:
            synthetic = SynthConfig.from_table(table["synthetic"], f"{where[:-1]}.synthetic]")
        return cls(**kw, synthetic=synthetic)


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


DEFAULT_POLICIES = (
    PolicySpec(name="none"),
    PolicySpec(name="reset", tta="reset"),
    PolicySpec(name="continual", tta="continual"),
)
_TOP_KEYS = (
    "name", "description", "seed", "data", "split", "model", "train", "adaptation", "replay",
    "detectors", "segments",
)  # fmt: skip


def _resolve(raw: dict[str, Any], path: Path) -> Scenario:
    f = str(path)
    unknown = sorted(set(raw) - set(_TOP_KEYS))
    if unknown:
        msg = f"{f}: unknown key {unknown[0]!r}; expected one of {list(_TOP_KEYS)}"
        raise ScenarioError(msg)
    for key in ("name", "description"):
        if not isinstance(raw.get(key, ""), str):
            msg = f"{f}: key {key!r}: expected a string; got {raw[key]!r}"
            raise ScenarioError(msg)
    name = raw.get("name", path.stem)
    config.check_name(name, f"{f}: key 'name'")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        msg = f"{f}: key 'seed': expected an integer >= 0; got {seed!r}"
        raise ScenarioError(msg)
    if "data" not in raw:
        msg = f"{f}: missing section [data]"
        raise ScenarioError(msg)
    adapt = raw.get("adaptation", {})
    if not isinstance(adapt, dict) or set(adapt) - {"policies"}:
        msg = f"{f}: [adaptation]: expected only key 'policies'; got {adapt!r}"
        raise ScenarioError(msg)
    policies: tuple[PolicySpec, ...] = DEFAULT_POLICIES
    if "policies" in adapt:
        raw_policies = adapt["policies"]
        if not isinstance(raw_policies, list):
            msg = f"{f}: [[adaptation.policies]]: expected a list of tables; got {raw_policies!r}"
            raise ScenarioError(msg)
        policies = tuple(
            PolicySpec.from_table(p, f"{f}: [[adaptation.policies]][{i}]")
            for i, p in enumerate(raw_policies)
        )
    raw_dets = raw.get("detectors", [])
    if not isinstance(raw_dets, list):
        msg = f"{f}: [[detectors]]: expected a list of tables; got {raw_dets!r}"
        raise ScenarioError(msg)
    draft = Scenario(
        name=name,
        description=raw.get("description", ""),
        path=path,
        content_hash="",
        seed=seed,
        data=DataSpec.from_table(raw["data"], f"{f}: [data]"),
        split=SplitSpec.from_table(raw.get("split", {}), f"{f}: [split]"),
        model=ModelSpec.from_table(raw.get("model", {}), f"{f}: [model]"),
        train=TrainSpec.from_table(raw.get("train", {}), f"{f}: [train]"),
        policies=policies,
        replay=ReplaySpec.from_table(raw.get("replay", {}), f"{f}: [replay]"),
        detectors=tuple(
            DetectorSpec.from_table(d, f"{f}: [[detectors]][{i}]") for i, d in enumerate(raw_dets)
        ),
        segments=SegmentSpec.from_table(raw.get("segments", {}), f"{f}: [segments]"),
    )
    check(draft, where=f)
    canon = json.dumps(_jsonable(draft, with_meta=False), sort_keys=True, separators=(",", ":"))
    return replace(draft, content_hash=hashlib.sha256(canon.encode()).hexdigest())


def check(scenario: Scenario, *, where: str | None = None) -> None:
    """The checks that span sections, run on every loaded scenario and again before a replay
    writes anything (scenarios built in code skip the loader): policy names unique, the split
    inside the synthetic stream, detectors a policy resets on, signals the replay computes, the
    model known with valid options, and every policy one the model can run."""
    f = where if where is not None else str(scenario.path)
    names = [p.name for p in scenario.policies]
    dups = sorted({str(n) for n in names if names.count(n) > 1})
    if dups:
        msg = f"{f}: [[adaptation.policies]] duplicate policy name {dups[0]!r}"
        raise ScenarioError(msg)
    if not scenario.policies:
        msg = f"{f}: [[adaptation.policies]] is empty; expected >= 1 policy"
        raise ScenarioError(msg)
    split, synthetic = scenario.split, scenario.data.synthetic
    if split.by == "time" and synthetic is not None:
        t0 = datetime.fromisoformat(synthetic.start_date).replace(tzinfo=timezone.utc).timestamp()
        t_end = t0 + synthetic.duration_days * 86400
        if split.replay_start >= t_end:
            msg = (
                f"{f}: [split]: replay_start ({split.replay_start:.0f}) is after the last event "
                f"({t_end:.0f})"
            )
            raise ScenarioError(msg)
    for i, det in enumerate(scenario.detectors):
        if det.signal == "tta_loss" and not scenario.replay.label_free_signals:
            msg = (
                f"{f}: [[detectors]][{i}]: signal 'tta_loss' needs [replay] label_free_signals"
                " = true"
            )
            raise ScenarioError(msg)
    watched = [d.key for d in scenario.detectors]
    for i, pol in enumerate(scenario.policies):
        if pol.reset_on_alarm is not None and pol.reset_on_alarm not in watched:
            msg = (
                f"{f}: [[adaptation.policies]][{i}] key 'reset_on_alarm': no detector"
                f" {pol.reset_on_alarm!r}; expected 'name:signal' of a [[detectors]] entry,"
                f" one of {watched}"
            )
            raise ScenarioError(msg)
    if scenario.replay.recurrent_state:
        from streamsim.recurrent_state import STREAMING_MODELS

        if scenario.model.name not in STREAMING_MODELS:
            msg = (
                f"{f}: [replay] key 'recurrent_state': expected a recurrent model with a step"
                f" ({list(STREAMING_MODELS)}), got [model] name = {scenario.model.name!r}"
            )
            raise ScenarioError(msg)
    _check_model(scenario, f)


def _check_model(scenario: Scenario, where: str) -> None:
    """The model exists, its options are valid, and it can run every policy."""
    import models

    try:
        model_config(scenario.model)
    except ModelError as exc:
        msg = f"{where}: [model]: {exc}"
        raise ScenarioError(msg) from None
    cls = models.get(scenario.model.name).cls
    for i, pol in enumerate(scenario.policies):
        pw = f"{where}: [[adaptation.policies]][{i}] (policy {pol.name!r})"
        if pol.tta != "none" and not cls.has_test_time_loss:
            msg = (
                f"{pw}: uses test-time adaptation ({pol.tta}) but model {scenario.model.name!r}"
                " has no test-time loss; use tta = 'none' (online updates still work)"
            )
            raise ScenarioError(msg)
        if (pol.tta != "none" or pol.online) and not cls.trainable:
            msg = (
                f"{pw}: adapts its weights, but model {scenario.model.name!r} has no trainable"
                " parameters (it counts events)"
            )
            raise ScenarioError(msg)


def _jsonable(obj: Any, *, with_meta: bool = True) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in fields(obj):
            if not with_meta and f.name in ("path", "content_hash"):
                continue
            value = getattr(obj, f.name)
            if f.name in ("config", "params") and isinstance(value, tuple):
                out[f.name] = {k: _jsonable(v) for k, v in value}
            else:
                out[f.name] = _jsonable(value)
        return out
    if isinstance(obj, tuple | list):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any], path: Path) -> None:
    for key, value in overrides.items():
        if key == "policies":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                msg = f"{path}: override 'policies': expected a list of policy names; got {value!r}"
                raise ScenarioError(msg)
            wanted = list(value)
            adaptation = raw.get("adaptation", {})
            if not isinstance(adaptation, dict):
                msg = f"{path}: [adaptation]: expected a table; got {adaptation!r}"
                raise ScenarioError(msg)
            current = adaptation.get("policies")
            if current is None:
                current = [_jsonable(p) for p in DEFAULT_POLICIES]
            by_name = {p.get("name"): p for p in current if isinstance(p, dict)}
            missing = [n for n in wanted if n not in by_name]
            if missing:
                msg = (
                    f"{path}: --policy {missing[0]!r} is not a policy of this scenario; "
                    f"expected one of {sorted(str(k) for k in by_name)}"
                )
                raise ScenarioError(msg)
            raw.setdefault("adaptation", {})["policies"] = [by_name[n] for n in wanted]
            continue
        parts = key.split(".")
        if not all(parts):
            msg = f"{path}: override {key!r}: expected a dotted key such as train.patience"
            raise ScenarioError(msg)
        node = raw
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                msg = f"{path}: override {key!r}: {part!r} is not a table"
                raise ScenarioError(msg)
            node = nxt
        node[parts[-1]] = value


def load(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Load and validate a scenario by bundled name or by path.

    Parameters
    ----------
    name_or_path
        A bundled scenario name (``weekend-shift``) or a path to a TOML file.
    overrides
        Flat dotted keys (``{"model.name": "sasrec", "seed": 3}``); ``"policies"`` takes a list
        of policy names to keep. Applied before validation, so they are checked the same way.

    Raises
    ------
    ScenarioError
        Missing file, invalid TOML, unknown keys, wrong types or impossible values.
    """
    from streamsim.resources import bundled_scenario_dir

    text = str(name_or_path)
    path = Path(text)
    if not (path.suffix == ".toml" or path.exists()):
        try:
            path = bundled_scenario_dir() / f"{text}.toml"
        except FileNotFoundError as exc:
            raise ScenarioError(str(exc)) from exc
        if not path.exists():
            names = [n for n, _ in list_bundled()]
            msg = f"unknown scenario {text!r}; expected a path or one of {names}"
            raise ScenarioError(msg)
    if not path.is_file():
        msg = f"{path}: scenario file not found"
        raise ScenarioError(msg)
    raw = config.load_toml(path)
    if overrides:
        _apply_overrides(raw, overrides, path)
    return _resolve(raw, path)


def list_bundled() -> list[tuple[str, str]]:
    """(name, description) of every shipped scenario, sorted by name."""
    from streamsim.resources import bundled_scenario_dir

    out = []
    for p in sorted(bundled_scenario_dir().glob("*.toml")):
        raw = config.load_toml(p)
        lines = str(raw.get("description", "")).strip().splitlines()
        out.append((p.stem, lines[0] if lines else ""))
    return out


def to_dict(scenario: Scenario) -> dict[str, Any]:
    """The resolved scenario (defaults included) as JSON-able data."""
    out: dict[str, Any] = _jsonable(scenario)
    return out

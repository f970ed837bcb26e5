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

import hashlib
import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from streamsim.errors import ScenarioError
from streamsim.filters import EtaFilterSpec

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
    # ETA-Rec sample filter on the test-time step ([adaptation.policies.sample_filter]; None: off)
    sample_filter: EtaFilterSpec | None = None
    # modifiers of continual adaptation (PROTOCOL.md §6.7): restore the pretrained test-time
    # parameters and a fresh optimizer every `reset_every` micro-batches (RDumb's periodic
    # reset) and/or after an alarm of the detector `reset_on_alarm` ("name:signal" of a
    # [[detectors]] entry: drift-triggered reset); `anchor` pulls them back after every step,
    # θ ← anchor·θ + (1 − anchor)·θ₀ (ROID's weight ensembling)
    reset_every: int | None = None
    reset_on_alarm: str | None = None
    anchor: float | None = None
    # diagnostic only (PROTOCOL.md §6.4 oracle-reset): restore θ₀ at the start of every
    # micro-batch holding the start of a ground-truth global drift (synthetic data only); it
    # bounds what a perfect drift-triggered reset could gain
    reset_at_drifts: bool = False

    @property
    def modifiers(self) -> tuple[str, ...]:
        """The continual-adaptation modifiers this policy sets."""
        keys = ("reset_every", "reset_on_alarm", "anchor")
        found = tuple(k for k in keys if getattr(self, k) is not None)
        return found + (("reset_at_drifts",) if self.reset_at_drifts else ())


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaySpec:
    """[replay]: micro-batching of the replay period."""

    batch_events: int = 256  # consecutive events per micro-batch (when batch_window_s is None)
    batch_window_s: int | None = None  # or: a micro-batch per time window of this many seconds
    max_batch_events: int = 4096  # cap on a time-window batch
    exclude_seen: bool = False  # mask items already in the user's history (-inf); recorded
    max_events: int | None = None  # replay only the first N events of the replay period
    # P6 sanity check: replay (and warm up) events with equal timestamps in a seeded random
    # order instead of the source-row order; compare the run with the default one
    tie_shuffle_seed: int | None = None
    # per batch, the test-time loss and mean Δ_{n+1} for detectors and the dashboard (one extra
    # forward pass; false: skip it, e.g. to time bare inference)
    label_free_signals: bool = True
    # forgetting probe (PROTOCOL.md §6.2a): this many validation-window requests re-scored with
    # the current weights every `probe_every` (fraction of the replayed events); 0 disables it
    probe_events: int = 1000
    probe_every: float = 0.1


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectorSpec:
    """One entry of [[detectors]]: a river detector watching one signal."""

    name: str  # adwin | page_hinkley | kswin | ddm | eddm | hddm_a | hddm_w | fhddm
    signal: str  # rr10 | ndcg10 | miss10 | entropy10 | tta_loss | topk_entropy
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


# ---------------------------------------------------------------------------------------------
# Loader
# ---------------------------------------------------------------------------------------------

DETECTOR_NAMES = ("adwin", "page_hinkley", "kswin", "ddm", "eddm", "hddm_a", "hddm_w", "fhddm")
SIGNAL_NAMES = ("rr10", "ndcg10", "miss10", "entropy10", "tta_loss", "topk_entropy")
DEFAULT_POLICIES = (
    PolicySpec(name="none"),
    PolicySpec(name="reset", tta="reset"),
    PolicySpec(name="continual", tta="continual"),
)
_TOP_KEYS = (
    "name", "description", "seed", "data", "split", "model", "train", "adaptation", "replay",
    "detectors", "segments",
)  # fmt: skip


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with path.open("rb") as fh:
            return dict(tomllib.load(fh))
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: not valid TOML: {exc}"
        raise ScenarioError(msg) from exc


def _check_value(value: Any, annotation: str, where: str) -> Any:
    """Check ``value`` against a field annotation string; return the normalised value."""
    ann = annotation.replace(" ", "")
    options = _split_union(ann)
    if len(options) > 1:
        if value is None and "None" in options:
            return None
        errors = []
        for option in options:
            if option == "None":
                continue
            try:
                return _check_value(value, option, where)
            except ScenarioError as exc:
                errors.append(str(exc))
        raise ScenarioError(errors[0])
    if ann == "Any":
        return value
    if ann == "bool":
        if not isinstance(value, bool):
            msg = f"{where}: expected a boolean; got {value!r}"
            raise ScenarioError(msg)
        return value
    if ann == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"{where}: expected an integer; got {value!r}"
            raise ScenarioError(msg)
        return value
    if ann == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            msg = f"{where}: expected a number; got {value!r}"
            raise ScenarioError(msg)
        return float(value)
    if ann == "str":
        if not isinstance(value, str):
            msg = f"{where}: expected a string; got {value!r}"
            raise ScenarioError(msg)
        return value
    if ann.startswith("Literal["):
        allowed = [a.strip("'\"") for a in ann[len("Literal[") : -1].split(",")]
        if value not in allowed:
            msg = f"{where}: expected one of {allowed}; got {value!r}"
            raise ScenarioError(msg)
        return value
    if ann.startswith("tuple[") and ann.endswith(",...]"):
        inner = ann[len("tuple[") : -len(",...]")]
        if not isinstance(value, (list, tuple)):
            msg = f"{where}: expected a list; got {value!r}"
            raise ScenarioError(msg)
        return tuple(_check_value(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    msg = f"unsupported annotation {annotation!r}"
    raise TypeError(msg)  # programming error


def _split_union(ann: str) -> list[str]:
    depth, start, parts = 0, 0, []
    for i, ch in enumerate(ann):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(ann[start:i])
            start = i + 1
    parts.append(ann[start:])
    return parts


def _build(cls: Any, table: Any, where: str, *, skip: tuple[str, ...] = ()) -> Any:
    """Build dataclass ``cls`` from a TOML table, rejecting unknown keys and wrong types."""
    if not isinstance(table, dict):
        msg = f"{where}: expected a table; got {table!r}"
        raise ScenarioError(msg)
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(table) - set(names))
    if unknown:
        msg = f"{where} unknown key {unknown[0]!r}; expected one of {names}"
        raise ScenarioError(msg)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in table and f.name not in skip:
            kwargs[f.name] = _check_value(table[f.name], str(f.type), f"{where} key {f.name!r}")
    missing = [
        f.name
        for f in fields(cls)
        if f.name not in kwargs
        and f.name not in skip
        and f.default is MISSING
        and f.default_factory is MISSING
    ]
    if missing:
        msg = f"{where}: missing required key {missing[0]!r}"
        raise ScenarioError(msg)
    return kwargs


def _nonneg(value: float | int | None, where: str, *, strict: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (strict and value == 0):
        bound = "> 0" if strict else ">= 0"
        msg = f"{where}: expected a value {bound}; got {value!r}"
        raise ScenarioError(msg)


def _check_modifiers(spec: PolicySpec, where: str) -> None:
    """Periodic / drift-triggered reset and anchoring modify continual adaptation only."""
    for key in spec.modifiers:
        if spec.tta != "continual" or spec.online:
            got = f"tta = {spec.tta!r}" + (", online = true" if spec.online else "")
            msg = (
                f"{where} key {key!r}: modifies continual test-time adaptation; expected"
                f" tta = 'continual' without online updates (whose weights would not be the"
                f" pretrained ones a reset restores), got {got}"
            )
            raise ScenarioError(msg)
    if spec.reset_every is not None:
        _nonneg(spec.reset_every, f"{where} key 'reset_every'", strict=True)
    if spec.anchor is not None and not 0 < spec.anchor <= 1:
        msg = f"{where} key 'anchor': expected a weight in (0, 1], got {spec.anchor!r}"
        raise ScenarioError(msg)


def _sample_filter(policy: dict[str, Any], spec: PolicySpec, where: str) -> EtaFilterSpec:
    """The ETA-Rec filter of a policy table; only for policies that adapt at test time."""
    if spec.tta == "none":
        msg = f"{where}: a sample filter needs test-time adaptation; policy has tta = 'none'"
        raise ScenarioError(msg)
    flt = EtaFilterSpec(**_build(EtaFilterSpec, policy["sample_filter"], where))
    _nonneg(flt.k, f"{where} key 'k'", strict=True)
    for key in ("e0_quantile", "min_keep", "momentum"):
        value = getattr(flt, key)
        if not 0.0 <= value <= 1.0:
            msg = f"{where} key {key!r}: expected 0..1; got {value}"
            raise ScenarioError(msg)
    _nonneg(flt.epsilon, f"{where} key 'epsilon'")
    return flt


def _synth(table: Any, where: str) -> Any:
    from streamsim.synth import DriftSpec, SynthConfig

    kw = _build(SynthConfig, table, where, skip=("drifts",))
    raw_drifts = table.get("drifts", []) if isinstance(table, dict) else []
    if not isinstance(raw_drifts, list):
        msg = f"{where} key 'drifts': expected a list of tables; got {raw_drifts!r}"
        raise ScenarioError(msg)
    drifts = []
    for i, d in enumerate(raw_drifts):
        dw = f"{where[:-1]}.drifts[{i}]]"
        spec = DriftSpec(**_build(DriftSpec, d, dw))
        if not 0.0 < spec.scope <= 1.0:
            msg = f"{dw} key 'scope': expected 0 < scope <= 1; got {spec.scope}"
            raise ScenarioError(msg)
        if not 0.0 <= spec.magnitude <= 1.0:
            msg = f"{dw} key 'magnitude': expected 0..1; got {spec.magnitude}"
            raise ScenarioError(msg)
        _nonneg(spec.start_day, f"{dw} key 'start_day'")
        _nonneg(spec.width_days, f"{dw} key 'width_days'")
        drifts.append(spec)
    cfg = SynthConfig(**kw, drifts=tuple(drifts))
    for key in ("n_users", "n_items", "n_topics", "events_per_user", "duration_days"):
        _nonneg(getattr(cfg, key), f"{where} key {key!r}", strict=True)
    if cfg.n_topics > cfg.n_items:
        msg = f"{where}: n_topics ({cfg.n_topics}) > n_items ({cfg.n_items})"
        raise ScenarioError(msg)
    if not 0.0 <= cfg.p_transition <= 1.0:
        msg = f"{where} key 'p_transition': expected 0..1; got {cfg.p_transition}"
        raise ScenarioError(msg)
    for key in ("weekday_share", "weekday_share_early"):
        value = getattr(cfg, key)
        if value is not None and not 0.0 <= value <= 1.0:
            msg = f"{where} key {key!r}: expected a share in 0..1; got {value}"
            raise ScenarioError(msg)
    for key in ("zipf_a", "dirichlet_alpha", "session_gap_s"):
        _nonneg(getattr(cfg, key), f"{where} key {key!r}", strict=True)
    _nonneg(cfg.n_successors, f"{where} key 'n_successors'", strict=True)
    _nonneg(cfg.new_items_count, f"{where} key 'new_items_count'")
    if cfg.session_mean_events < 1:
        msg = f"{where} key 'session_mean_events': expected >= 1; got {cfg.session_mean_events}"
        raise ScenarioError(msg)
    if not 0.0 <= cfg.early_days <= cfg.duration_days:
        msg = (
            f"{where} key 'early_days': expected 0..duration_days ({cfg.duration_days});"
            f" got {cfg.early_days}"
        )
        raise ScenarioError(msg)
    for day in cfg.new_items_days:
        if not 0.0 <= day < cfg.duration_days:
            msg = (
                f"{where} key 'new_items_days': expected days in [0, {cfg.duration_days});"
                f" got {day}"
            )
            raise ScenarioError(msg)
    n_new = cfg.new_items_count * len(cfg.new_items_days)
    if n_new > cfg.n_items - cfg.n_topics:
        msg = (
            f"{where}: {n_new} new items (new_items_count x new_items_days) leave fewer than"
            f" n_topics ({cfg.n_topics}) of the {cfg.n_items} items at the start"
        )
        raise ScenarioError(msg)
    try:
        datetime.fromisoformat(cfg.start_date)
    except ValueError:
        msg = f"{where} key 'start_date': expected an ISO date (2024-01-01); got {cfg.start_date!r}"
        raise ScenarioError(msg) from None
    if len(cfg.drifts) > 1:
        msg = (
            f"{where[:-1]}.drifts]: the generator makes one drift per stream; got"
            f" {len(cfg.drifts)} (use one scenario per drift)"
        )
        raise ScenarioError(msg)
    for d in cfg.drifts:
        if d.start_day > cfg.duration_days:
            msg = (
                f"{where}: drift start_day {d.start_day} after the end of the stream "
                f"(duration_days = {cfg.duration_days})"
            )
            raise ScenarioError(msg)
    return cfg


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
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        msg = f"{f}: key 'seed': expected an integer >= 0; got {seed!r}"
        raise ScenarioError(msg)

    # [data]
    if "data" not in raw:
        msg = f"{f}: missing section [data]"
        raise ScenarioError(msg)
    data_t = raw["data"]
    dkw = _build(DataSpec, data_t, f"{f}: [data]", skip=("synthetic",))
    synthetic = (
        _synth(data_t["synthetic"], f"{f}: [data.synthetic]") if "synthetic" in data_t else None
    )
    data = DataSpec(**dkw, synthetic=synthetic)

    split = SplitSpec(**_build(SplitSpec, raw.get("split", {}), f"{f}: [split]"))
    w = f"{f}: [split]"
    for key in ("valid_start", "replay_start", "replay_end"):
        _nonneg(getattr(split, key), f"{w} key {key!r}")
    if split.replay_start < split.valid_start:
        msg = f"{w}: replay_start ({split.replay_start}) < valid_start ({split.valid_start})"
        raise ScenarioError(msg)
    if split.by == "fraction":
        for key in ("valid_start", "replay_start", "replay_end"):
            v = getattr(split, key)
            if v is not None and v > 1.0:
                msg = f"{w} key {key!r}: a fraction must be <= 1; got {v}"
                raise ScenarioError(msg)
    if split.replay_end is not None and split.replay_end <= split.replay_start:
        msg = (
            f"{w}: empty replay window: replay_end ({split.replay_end}) <= "
            f"replay_start ({split.replay_start})"
        )
        raise ScenarioError(msg)
    if split.valid_start <= 0:
        msg = f"{w}: empty pretraining period: valid_start = {split.valid_start}"
        raise ScenarioError(msg)
    if split.by == "time" and synthetic is not None:
        from datetime import datetime, timezone

        t0 = datetime.fromisoformat(synthetic.start_date).replace(tzinfo=timezone.utc).timestamp()
        t_end = t0 + synthetic.duration_days * 86400
        if split.replay_start >= t_end:
            msg = (
                f"{w}: replay_start ({split.replay_start:.0f}) is after the last event "
                f"({t_end:.0f})"
            )
            raise ScenarioError(msg)

    model_t = raw.get("model", {})
    mkw = _build(ModelSpec, model_t, f"{f}: [model]", skip=("config",))
    mcfg = model_t.get("config", {}) if isinstance(model_t, dict) else {}
    if not isinstance(mcfg, dict):
        msg = f"{f}: [model] key 'config': expected a table; got {mcfg!r}"
        raise ScenarioError(msg)
    model = ModelSpec(**mkw, config=tuple(sorted(mcfg.items())))

    train = TrainSpec(**_build(TrainSpec, raw.get("train", {}), f"{f}: [train]"))
    for key in ("epochs", "batch_size", "eval_batch_size"):
        _nonneg(getattr(train, key), f"{f}: [train] key {key!r}", strict=True)
    for key in ("lr", "weight_decay", "patience"):
        _nonneg(getattr(train, key), f"{f}: [train] key {key!r}")

    adapt = raw.get("adaptation", {})
    if not isinstance(adapt, dict) or set(adapt) - {"policies"}:
        msg = f"{f}: [adaptation]: expected only key 'policies'; got {adapt!r}"
        raise ScenarioError(msg)
    policies: tuple[PolicySpec, ...] = DEFAULT_POLICIES
    if "policies" in adapt:
        ps = []
        for i, p in enumerate(adapt["policies"]):
            pw = f"{f}: [[adaptation.policies]][{i}]"
            spec = PolicySpec(**_build(PolicySpec, p, pw, skip=("sample_filter",)))
            for key in ("tta_lr", "tta_steps", "online_lr", "online_steps"):
                _nonneg(getattr(spec, key), f"{pw} key {key!r}")
            if p.get("sample_filter") is not None:  # None: from a resolved default policy
                spec = replace(spec, sample_filter=_sample_filter(p, spec, f"{pw}.sample_filter"))
            _check_modifiers(spec, pw)
            ps.append(spec)
        names = [p.name for p in ps]
        dups = sorted({str(n) for n in names if names.count(n) > 1})
        if dups:
            msg = f"{f}: [[adaptation.policies]] duplicate policy name {dups[0]!r}"
            raise ScenarioError(msg)
        if not ps:
            msg = f"{f}: [[adaptation.policies]] is empty; expected >= 1 policy"
            raise ScenarioError(msg)
        policies = tuple(ps)

    replay = ReplaySpec(**_build(ReplaySpec, raw.get("replay", {}), f"{f}: [replay]"))
    for key in ("batch_events", "batch_window_s", "max_batch_events", "max_events"):
        _nonneg(getattr(replay, key), f"{f}: [replay] key {key!r}", strict=True)
    _nonneg(replay.probe_events, f"{f}: [replay] key 'probe_events'", strict=False)
    if not 0 < replay.probe_every <= 1:
        msg = (
            f"{f}: [replay] key 'probe_every': expected a fraction of the replay in (0, 1],"
            f" got {replay.probe_every!r}"
        )
        raise ScenarioError(msg)

    from streamsim.drift import make_detector  # drift imports this module

    dets = []
    raw_dets = raw.get("detectors", [])
    if not isinstance(raw_dets, list):
        msg = f"{f}: [[detectors]]: expected a list of tables; got {raw_dets!r}"
        raise ScenarioError(msg)
    for i, d in enumerate(raw_dets):
        dw = f"{f}: [[detectors]][{i}]"
        dkw2 = _build(DetectorSpec, d, dw, skip=("params",))
        if dkw2["name"] not in DETECTOR_NAMES:
            msg = (
                f"{dw} key 'name': unknown detector {dkw2['name']!r}; "
                f"expected one of {list(DETECTOR_NAMES)}"
            )
            raise ScenarioError(msg)
        if dkw2["signal"] not in SIGNAL_NAMES:
            msg = (
                f"{dw} key 'signal': unknown signal {dkw2['signal']!r}; "
                f"expected one of {list(SIGNAL_NAMES)}"
            )
            raise ScenarioError(msg)
        params = d.get("params", {})
        if not isinstance(params, dict):
            msg = f"{dw} key 'params': expected a table; got {params!r}"
            raise ScenarioError(msg)
        det = DetectorSpec(**dkw2, params=tuple(sorted(params.items())))
        try:  # river's own constructor checks the parameters; binary vs continuous signals
            make_detector(det)
        except ScenarioError as exc:
            msg = f"{dw}: {exc}"
            raise ScenarioError(msg) from None
        if det.signal == "tta_loss" and not replay.label_free_signals:
            msg = f"{dw}: signal 'tta_loss' needs [replay] label_free_signals = true"
            raise ScenarioError(msg)
        dets.append(det)
    watched = [f"{d.name}:{d.signal}" for d in dets]
    for i, pol in enumerate(policies):
        if pol.reset_on_alarm is not None and pol.reset_on_alarm not in watched:
            msg = (
                f"{f}: [[adaptation.policies]][{i}] key 'reset_on_alarm': no detector"
                f" {pol.reset_on_alarm!r}; expected 'name:signal' of a [[detectors]] entry,"
                f" one of {watched}"
            )
            raise ScenarioError(msg)

    segments = SegmentSpec(**_build(SegmentSpec, raw.get("segments", {}), f"{f}: [segments]"))
    bad_cal = [c for c in segments.calendar if c not in ("day", "week", "weekpart", "hour")]
    if bad_cal:
        msg = (
            f"{f}: [segments] key 'calendar': unknown {bad_cal[0]!r}; "
            "expected one of ['day', 'week', 'weekpart', 'hour']"
        )
        raise ScenarioError(msg)

    body: dict[str, Any] = dict(
        name=raw.get("name", path.stem),
        description=raw.get("description", ""),
        path=path,
        seed=seed,
        data=data,
        split=split,
        model=model,
        train=train,
        policies=policies,
        replay=replay,
        detectors=tuple(dets),
        segments=segments,
    )
    draft = Scenario(content_hash="", **body)
    canon = json.dumps(_jsonable(draft, with_meta=False), sort_keys=True, separators=(",", ":"))
    return replace(draft, content_hash=hashlib.sha256(canon.encode()).hexdigest())


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
            wanted = list(value)
            current = raw.get("adaptation", {}).get("policies")
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
    raw = _load_toml(path)
    if overrides:
        _apply_overrides(raw, overrides, path)
    return _resolve(raw, path)


def list_bundled() -> list[tuple[str, str]]:
    """(name, description) of every shipped scenario, sorted by name."""
    from streamsim.resources import bundled_scenario_dir

    out = []
    for p in sorted(bundled_scenario_dir().glob("*.toml")):
        raw = _load_toml(p)
        lines = str(raw.get("description", "")).strip().splitlines()
        out.append((p.stem, lines[0] if lines else ""))
    return out


def to_dict(scenario: Scenario) -> dict[str, Any]:
    """The resolved scenario (defaults included) as JSON-able data."""
    out: dict[str, Any] = _jsonable(scenario)
    return out

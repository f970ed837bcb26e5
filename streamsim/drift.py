"""river drift detectors by name, and the signals they watch.

Detectors are river's own classes, used through ``update(x)`` and ``drift_detected`` only (the
return value of ``update`` changed across river versions). Binary detectors (DDM, EDDM, HDDM_A,
HDDM_W, FHDDM) watch the per-event miss@10 bit; continuous ones (ADWIN, PageHinkley, KSWIN)
watch reciprocal rank, NDCG@10 (per event) or a per-batch label-free signal (the test-time loss,
the mean top-10 entropy of the scores). Scoring alarms against known change points is
`streamsim.detection`.
"""

from __future__ import annotations

import inspect
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from river import drift
from river.base import BinaryDriftDetector, DriftDetector
from river.drift import binary

from streamsim import config
from streamsim.errors import ScenarioError

CONTINUOUS: dict[str, type[DriftDetector]] = {
    "adwin": drift.ADWIN,
    "page_hinkley": drift.PageHinkley,
    "kswin": drift.KSWIN,
}
BINARY: dict[str, type[BinaryDriftDetector]] = {
    "ddm": binary.DDM,
    "eddm": binary.EDDM,
    "hddm_a": binary.HDDMA,
    "hddm_w": binary.HDDMW,
    "fhddm": binary.FHDDM,
}
# one value per scored event; entropy10 = the request's top-10 score entropy / ln 10, in [0, 1]
# (label-free: known before the target is revealed)
EVENT_SIGNALS = ("rr10", "ndcg10", "miss10", "entropy10")
BATCH_SIGNALS = ("tta_loss", "topk_entropy")  # one value per micro-batch
DETECTOR_NAMES = (*CONTINUOUS, *BINARY)
# the parameter that trades detection for false alarms, and its values from the most sensitive
# to the least: what `params.<name> = "auto"` chooses among (`streamsim.calibration`)
SENSITIVITY: dict[str, str] = {
    "adwin": "delta", "page_hinkley": "threshold", "kswin": "alpha", "ddm": "drift_threshold",
    "eddm": "beta", "hddm_a": "drift_confidence", "hddm_w": "drift_confidence",
    "fhddm": "confidence_level",
}  # fmt: skip
GRIDS: dict[str, tuple[float, ...]] = {
    "adwin": tuple(10.0**-k for k in range(1, 11)),
    "page_hinkley": (5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0),
    "kswin": tuple(10.0**-k for k in range(2, 13)),
    "ddm": (2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0),
    "eddm": (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2),
    "hddm_a": tuple(10.0**-k for k in range(2, 13)),
    "hddm_w": tuple(10.0**-k for k in range(2, 13)),
    "fhddm": tuple(10.0**-k for k in range(4, 15)),
}
SIGNAL_NAMES = (*EVENT_SIGNALS, *BATCH_SIGNALS)


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectorSpec:
    """One entry of [[detectors]]: a river detector watching one signal."""

    name: str  # one of DETECTOR_NAMES
    signal: str  # one of SIGNAL_NAMES
    # keyword arguments of the river class; the sensitivity parameter (`SENSITIVITY`) may be
    # "auto": calibrated on the validation window to `target_far` (streamsim.calibration)
    params: tuple[tuple[str, Any], ...] = ()
    target_far: float = 5.0  # false alarms per 10k events an "auto" parameter aims at, at most

    @property
    def auto(self) -> str | None:
        """The parameter set to "auto", or None."""
        return next((k for k, v in self.params if v == "auto"), None)

    @property
    def key(self) -> str:
        """``name:signal``, how a policy's ``reset_on_alarm`` names this detector."""
        return f"{self.name}:{self.signal}"

    @classmethod
    def from_table(cls, table: Any, where: str) -> DetectorSpec:
        """Checked by river's own constructor too: a wrong parameter is refused here."""
        kw = config.bind(cls, table, where, skip=("params",))
        if kw["name"] not in DETECTOR_NAMES:
            msg = (
                f"{where} key 'name': unknown detector {kw['name']!r}; "
                f"expected one of {list(DETECTOR_NAMES)}"
            )
            raise ScenarioError(msg)
        if kw["signal"] not in SIGNAL_NAMES:
            msg = (
                f"{where} key 'signal': unknown signal {kw['signal']!r}; "
                f"expected one of {list(SIGNAL_NAMES)}"
            )
            raise ScenarioError(msg)
        params = table.get("params", {})
        if not isinstance(params, dict):
            msg = f"{where} key 'params': expected a table; got {params!r}"
            raise ScenarioError(msg)
        spec = cls(**kw, params=tuple(sorted(params.items())))
        config.at_least_zero(spec.target_far, f"{where} key 'target_far'", strict=True)
        auto = spec.auto
        if auto is not None and auto != SENSITIVITY[spec.name]:
            msg = (
                f"{where} key 'params.{auto}': \"auto\" calibrates the sensitivity parameter of"
                f" {spec.name}; expected {SENSITIVITY[spec.name]} = \"auto\""
            )
            raise ScenarioError(msg)
        try:
            make_detector(replace(spec, params=tuple(p for p in spec.params if p[0] != auto)))
        except ScenarioError as exc:
            msg = f"{where}: {exc}"
            raise ScenarioError(msg) from None
        return spec


@dataclass
class Watch:
    """One detector instance watching one signal, with every value it was fed.

    The detector's state is a function of those values (river's detectors are deterministic,
    KSWIN seeded), so a resumed replay rebuilds it by feeding them to a fresh detector
    (`Watch.rebuilt`) instead of unpickling river objects from a state file.
    """

    spec: DetectorSpec
    detector: DriftDetector | BinaryDriftDetector
    seed: int = 0
    fed: array = field(default_factory=lambda: array("d"))

    @property
    def label(self) -> str:
        return f"{self.spec.name}({self.spec.signal})"

    def rebuilt(self, values: Sequence[float]) -> Watch:
        """A fresh watch of the same spec and seed that has been fed `values`."""
        fresh = make_detector(self.spec, seed=self.seed)
        feed(fresh, values, range(len(values)))
        return fresh


def make_detector(spec: DetectorSpec, *, seed: int = 0) -> Watch:
    """A fresh river detector for `spec`; `ScenarioError` for unknown names or wrong signals.

    Detectors that draw random numbers (KSWIN samples its reference window) get `seed` unless
    the scenario sets their `seed` parameter, so alarms repeat run after run and on resume.
    """
    known = sorted(CONTINUOUS) + sorted(BINARY)
    if spec.name not in known:
        msg = f"unknown detector {spec.name!r}; expected one of {known}"
        raise ScenarioError(msg)
    if spec.signal not in SIGNAL_NAMES:
        msg = f"unknown detector signal {spec.signal!r}; expected one of {list(SIGNAL_NAMES)}"
        raise ScenarioError(msg)
    if (spec.name in BINARY) != (spec.signal == "miss10"):
        msg = (
            f"detector {spec.name!r} cannot watch {spec.signal!r}: binary detectors"
            f" {sorted(BINARY)} take the miss10 bit, continuous ones the real-valued signals"
        )
        raise ScenarioError(msg)
    cls: type[DriftDetector] | type[BinaryDriftDetector] = (
        CONTINUOUS[spec.name] if spec.name in CONTINUOUS else BINARY[spec.name]
    )
    params: dict[str, Any] = dict(spec.params)
    if spec.auto is not None:
        msg = f"detector {spec.key}: {spec.auto} = \"auto\" is calibrated before a replay"
        raise ScenarioError(msg)
    if "seed" in inspect.signature(cls).parameters:
        params.setdefault("seed", seed)
    try:
        return Watch(spec, cls(**params), seed)
    except TypeError as exc:
        msg = f"detector {spec.name!r}: bad parameters {params}: {exc}"
        raise ScenarioError(msg) from None


def feed(watch: Watch, values: Sequence[float], positions: Sequence[int]) -> list[int]:
    """Update with `values` in order; return the positions at which a drift was detected."""
    alarms = []
    det = watch.detector
    watch.fed.extend(float(v) for v in values)
    for value, pos in zip(values, positions):
        if isinstance(det, BinaryDriftDetector):
            det.update(bool(value))
        else:
            det.update(float(value))
        if det.drift_detected:
            alarms.append(pos)
    return alarms

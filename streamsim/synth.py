"""Synthetic interest-shift streams: configuration (the generator itself is not written yet).

`SynthConfig` and `DriftSpec` are the ``[data.synthetic]`` section of a scenario file; see
docs/scenarios.md. `generate` / `ensure_synthetic` (issue 3) are NOT implemented in this revision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DRIFT_KINDS = ("sudden", "gradual", "incremental", "recurring")
DRIFT_TYPES = ("real", "virtual")


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftSpec:
    """One scheduled interest shift."""

    kind: Literal["sudden", "gradual", "incremental", "recurring"]
    start_day: float = 0.0  # day (from start) the drift begins
    width_days: float = 0.0  # sigmoid width (gradual) / ramp length (incremental)
    scope: float = 1.0  # fraction of users affected
    magnitude: float = 0.5  # target Jensen-Shannon divergence between regimes (0..1)
    drift_type: Literal["real", "virtual"] = "virtual"


@dataclass(frozen=True, slots=True, kw_only=True)
class SynthConfig:
    """Generator parameters (``[data.synthetic]``)."""

    n_users: int = 1000
    n_items: int = 800
    n_topics: int = 8
    zipf_a: float = 1.1  # within-topic popularity exponent
    dirichlet_alpha: float = 0.3  # concentration of user interest mixtures
    n_successors: int = 3  # preferred successors per item (within its topic)
    p_transition: float = 0.6  # probability of following a preferred successor
    events_per_user: int = 30
    session_mean_events: float = 5.0
    start_date: str = "2024-01-01"
    duration_days: int = 56
    weekday_share: float | None = None  # share of events on weekdays (None: calendar rhythm)
    new_items_days: tuple[float, ...] = ()  # days at which batches of new items enter
    new_items_count: int = 0  # items per entering batch
    drifts: tuple[DriftSpec, ...] = ()

"""Training health: is a model learning users, or one list for everyone, or only popularity?

A model can lower its training loss and still be useless for the question streamsim asks. The
failure seen in T2ARec with the paper's alignment losses: every user gets nearly the same
representation, so every user gets nearly the same ranking, and that ranking is close to item
popularity; validation NDCG@10 then sits at the popularity model's and a replay that compares
adaptation policies on it compares nothing. `Monitor.check` measures this once per epoch on a
fixed sample of validation examples; `verdict` turns a record into flags and one plain line.

Statistics (pure functions of tensors, each tested on constructed inputs):

- `rank1_r2(scores)`: share of the (row-centred) score matrix explained by its first singular
  component. Rows are centred first because adding a constant to one user's scores changes
  none of that user's ranks. 1 means every user ranks the items the same way.
- `shared_energy(reps)`: ‖mean representation‖² / mean ‖representation‖²: the share of the
  representations' energy that is one vector common to every user.
- `popularity_correlation(scores, counts)`: Spearman correlation of the mean (row-centred)
  score of each item with its training count.
- `top1_per_1000(scores)`: distinct top-1 items per 1,000 requests.
- `delta_ratio(delta_next, delta_history)`: median Δ_{n+1} / median history Δ (T2ARec: the
  step size of the re-fed token against the step sizes the scan uses).
- the median ‖h_n‖ (T2ARec's final SSM state), also as a ratio to its value at initialisation.

Thresholds (`Thresholds`) and why:

- collapsing: rank-1 R² >= 0.8 or shared energy >= 0.4. T2ARec at the paper's μ2 = 1 reaches
  ~0.99 and ~0.84 on ML-100k; the models that train normally here stay far below both (the
  measured values are in docs/models.md, "Training health").
- at popularity level: validation NDCG@10 < 1.25 × the popularity model's on the same
  validation examples. The trained models that work are 1.5–3× popularity on our validation
  windows; with ~1,000 validation examples NDCG@10 has a relative standard error of ~15%, so a
  model within 25% of popularity is not distinguishable from it.
- degenerate alignment (models that report Δ and h_n): Δ_{n+1} more than 10× away from the
  history's median Δ, either way (the alignment losses satisfied by inflating the re-fed step,
  as the paper's Δ^{-2} dilution invites, or by letting it vanish so that the re-fed token
  changes nothing), or the median ‖h_n‖ below 0.5× its value at initialisation (the SSM
  switched off). T2ARec trained without L_state keeps the ratio near 1 (1.23 on ML-100k, 0.97
  on Beauty after one epoch, 1.02 at weekend-shift's kept epoch) and its ‖h_n‖ grows (2.0–2.7x).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

import models
from models.base import Recommender
from streamsim.training_examples import Examples, evaluate_examples

PREFIX = "health."


@dataclass(frozen=True)
class Thresholds:
    rank1_r2: float = 0.8  # collapsing at or above
    shared_energy: float = 0.4  # collapsing at or above
    popularity_ratio: float = 1.25  # at popularity level below this × popularity's NDCG@10
    delta_ratio: float = 10.0  # degenerate alignment above this ratio or below its inverse
    state_shrink: float = 0.5  # degenerate alignment below this × ‖h_n‖ at initialisation

    def __post_init__(self) -> None:
        if not (0 < self.rank1_r2 <= 1 and 0 < self.shared_energy <= 1):
            msg = (
                "`rank1_r2` and `shared_energy` must be in (0, 1], got "
                f"{self.rank1_r2}, {self.shared_energy}"
            )
            raise ValueError(msg)
        if not (self.popularity_ratio > 0 and self.delta_ratio > 1 and self.state_shrink > 0):
            msg = (
                "need `popularity_ratio` > 0, `delta_ratio` > 1 and `state_shrink` > 0, got "
                f"{self.popularity_ratio}, {self.delta_ratio}, {self.state_shrink}"
            )
            raise ValueError(msg)


THRESHOLDS = Thresholds()


# ---- statistics ----------------------------------------------------------------------------


def rank1_r2(scores: Tensor) -> float:
    """R² of the best rank-1 fit of the row-centred (n, V) score matrix (finite entries)."""
    s = scores.to(torch.float64)
    s = s - s.mean(dim=1, keepdim=True)
    gram = s @ s.T if s.shape[0] <= s.shape[1] else s.T @ s  # the smaller side
    eig = torch.linalg.eigvalsh(gram)  # ascending; squared singular values
    total = float(eig.clamp(min=0).sum())
    return float(eig[-1]) / total if total > 0 else 1.0


def shared_energy(reps: Tensor) -> float:
    """‖mean_b r_b‖² / mean_b ‖r_b‖² of (n, D) representations: 1 when all rows are equal."""
    r = reps.to(torch.float64)
    total = float(r.pow(2).sum(dim=1).mean())
    return float(r.mean(dim=0).pow(2).sum()) / total if total > 0 else 1.0


def popularity_correlation(scores: Tensor, counts: Tensor) -> float:
    """Spearman correlation of the mean row-centred score of each column with `counts` (V,)."""
    s = scores.to(torch.float64)
    mean = (s - s.mean(dim=1, keepdim=True)).mean(dim=0)
    a, b = _average_ranks(mean.numpy()), _average_ranks(counts.to(torch.float64).numpy())
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / denom if denom > 0 else float("nan")


def top1_per_1000(scores: Tensor) -> float:
    """Distinct top-1 columns of the (n, V) score matrix, per 1,000 rows."""
    n = scores.shape[0]
    if n == 0:
        return float("nan")
    return len(torch.unique(scores.argmax(dim=1))) * 1000.0 / n


def delta_ratio(delta_next: Tensor, delta_history: Tensor) -> float:
    """median Δ_{n+1} / median Δ of the history (both 1-D)."""
    if delta_next.numel() == 0 or delta_history.numel() == 0:
        return float("nan")
    hist = float(delta_history.to(torch.float64).median())
    nxt = float(delta_next.to(torch.float64).median())
    return nxt / hist if hist > 0 else float("inf")


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (Spearman's convention)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1, dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


# ---- verdict -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Flags of one health record, with the reasons in words."""

    collapsing: bool
    at_popularity_level: bool
    degenerate_alignment: bool
    reasons: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return not (self.collapsing or self.at_popularity_level or self.degenerate_alignment)

    def warning(self, model_name: str) -> str | None:
        """One plain line for the user, or None when healthy."""
        if self.healthy:
            return None
        return f"warning: {model_name} " + "; ".join(self.reasons)


def verdict(record: Mapping[str, float], thresholds: Thresholds = THRESHOLDS) -> Verdict:
    """Flags from an epoch record (``health.*`` keys, ``valid.ndcg@10``); missing: not flagged."""
    t = thresholds

    def get(key: str) -> float:
        return float(record.get(PREFIX + key, float("nan")))

    reasons: list[str] = []
    r2, shared, top1 = get("rank1_r2"), get("shared_energy"), get("top1_per_1000")
    collapsing = r2 >= t.rank1_r2 or shared >= t.shared_energy
    if collapsing:
        reasons.append(
            f"is collapsing to one list for everyone: one score vector explains {r2:.0%} of the "
            f"score matrix (healthy < {t.rank1_r2:.0%}), {shared:.0%} of the representation's "
            f"energy is shared by all users (healthy < {t.shared_energy:.0%}), "
            f"{top1:.0f} distinct top-1 items per 1,000 requests"
        )
    ndcg = float(record.get("valid.ndcg@10", float("nan")))
    pop = get("popularity_ndcg@10")
    at_pop = ndcg < t.popularity_ratio * pop  # False when either is nan
    if at_pop:
        word = "below" if ndcg < pop else "at"
        reasons.append(
            f"is {word} popularity level on validation: NDCG@10 {ndcg:.3f} vs {pop:.3f} for "
            "popularity; comparing adaptation policies on it will compare nothing"
        )
    ratio, shrink = get("delta_ratio"), get("state_norm_ratio")
    degenerate = False
    if ratio > t.delta_ratio or ratio < 1 / t.delta_ratio:
        degenerate = True
        how = "inflating" if ratio > 1 else "shrinking"
        reasons.append(
            f"satisfies its alignment loss by {how} the re-fed step: Δ_(n+1) is {ratio:.2g}x "
            f"the history's median Δ (healthy within {t.delta_ratio:.0f}x either way)"
        )
    if shrink < t.state_shrink:
        degenerate = True
        reasons.append(
            f"has switched its state off: median ‖h_n‖ is {shrink:.2f}x its value at "
            f"initialisation (healthy >= {t.state_shrink:.1f}x)"
        )
    return Verdict(collapsing, at_pop, degenerate, tuple(reasons))


def flags(record: Mapping[str, float], thresholds: Thresholds = THRESHOLDS) -> dict[str, float]:
    """The verdict's flags as 0/1 record entries (JSON-friendly, kept in the training history)."""
    v = verdict(record, thresholds)
    return {
        PREFIX + "collapsing": float(v.collapsing),
        PREFIX + "at_popularity_level": float(v.at_popularity_level),
        PREFIX + "degenerate_alignment": float(v.degenerate_alignment),
    }


def warning_line(record: Mapping[str, float], model_name: str) -> str | None:
    """The plain-words warning of an epoch record (None when healthy or not measured)."""
    if not any(k.startswith(PREFIX) for k in record):
        return None
    return verdict(record).warning(model_name)


def summary_line(record: Mapping[str, float]) -> str | None:
    """The health statistics of an epoch record in one line (None when not measured)."""
    if PREFIX + "rank1_r2" not in record:
        return None

    def get(key: str) -> float:
        return float(record.get(PREFIX + key, float("nan")))

    parts = [
        f"rank-1 R² {get('rank1_r2'):.2f}",
        f"shared energy {get('shared_energy'):.2f}",
        f"popularity corr {get('popularity_corr'):.2f}",
        f"top-1 items/1000 {get('top1_per_1000'):.0f}",
    ]
    if PREFIX + "delta_ratio" in record:
        parts.append(f"Δ_(n+1)/Δ {get('delta_ratio'):.2g}")
    if PREFIX + "state_norm" in record:
        parts.append(f"‖h_n‖ {get('state_norm'):.3g} ({get('state_norm_ratio'):.2f}x init)")
    parts.append(f"popularity NDCG@10 {get('popularity_ndcg@10'):.4f}")
    v = verdict(record)
    raised = [k.replace("_", " ") for k in ("collapsing", "at_popularity_level",
                                              "degenerate_alignment") if getattr(v, k)]  # fmt: skip
    if raised:
        parts.append("flags: " + ", ".join(raised))
    return "health: " + ", ".join(parts)


def manifest_entry(record: Mapping[str, float], model_name: str) -> dict[str, object]:
    """What a run manifest keeps about the checkpoint's health: the kept epoch's flags and
    warning (flags None when the checkpoint predates the monitor or was not trained)."""
    measured = any(k.startswith(PREFIX) for k in record)
    v = verdict(record) if measured else None
    return {
        "collapsing": None if v is None else v.collapsing,
        "at_popularity_level": None if v is None else v.at_popularity_level,
        "degenerate_alignment": None if v is None else v.degenerate_alignment,
        "warning": None if v is None else v.warning(model_name),
    }


# ---- the monitor used by training ----------------------------------------------------------


class Monitor:
    """Health of a model on a fixed sample of validation examples, once per call.

    Built before training (the model at initialisation gives the ‖h_n‖ reference); `check`
    after each validation returns the ``health.*`` entries of that epoch's record.

    Parameters
    ----------
    model : the model being trained (at initialisation).
    train_ex : training examples: item counts and the popularity model's events.
    valid_ex : validation examples; statistics use up to `sample` of them, evenly spaced.
    batch_size : evaluation batch size.
    """

    def __init__(
        self,
        model: Recommender,
        train_ex: Examples,
        valid_ex: Examples,
        *,
        batch_size: int,
        device: str = "cpu",
        sample: int = 1000,
    ) -> None:
        self.valid_ex = valid_ex
        self.batch_size = batch_size
        self.device = device
        n = len(valid_ex)
        self.index = np.unique(np.linspace(0, n - 1, num=min(sample, n)).astype(np.int64))
        self.columns = torch.from_numpy(np.flatnonzero(valid_ex.known[1:]) + 1)  # catalogue
        counts = np.bincount(train_ex.targets, minlength=model.n_items + 1)
        self.counts = torch.from_numpy(counts[self.columns.numpy()])
        self.popularity_ndcg = self._popularity_ndcg(model.n_items, train_ex) if n else math.nan
        self.state_norm_init = self._signals(model).get("state_norm", math.nan) if n else math.nan

    def check(self, model: Recommender, valid: Mapping[str, float]) -> dict[str, float]:
        """``health.*`` entries (statistics and 0/1 flags) given this epoch's validation
        metrics `valid` (``ndcg@10``); nothing when there are no validation examples."""
        if len(self.index) == 0:
            return {}
        record = {f"{PREFIX}{k}": v for k, v in self._signals(model).items()}
        record[PREFIX + "popularity_ndcg@10"] = self.popularity_ndcg
        if PREFIX + "state_norm" in record:
            record[PREFIX + "state_norm_ratio"] = record[PREFIX + "state_norm"] / max(
                self.state_norm_init, 1e-12
            )
        with_valid = {**record, "valid.ndcg@10": float(valid["ndcg@10"])}
        return {**record, **flags(with_valid)}

    @torch.no_grad()
    def _signals(self, model: Recommender) -> dict[str, float]:
        was_training = model.training
        model.eval()
        batch = self.valid_ex.batch(self.index).to(self.device).without_targets()
        scores = model.score(batch)[:, self.columns.to(batch.items.device)].cpu()
        sig = {k: v.detach().cpu() for k, v in model.health_signals(batch).items()}
        model.train(was_training)
        out = {
            "rank1_r2": rank1_r2(scores),
            "shared_energy": shared_energy(sig["representation"]),
            "popularity_corr": popularity_correlation(scores, self.counts),
            "top1_per_1000": top1_per_1000(scores),
        }
        if "state_norm" in sig and sig["state_norm"].numel():
            out["state_norm"] = float(sig["state_norm"].median())
        if "delta_next" in sig and "delta_history" in sig:
            out["delta_ratio"] = delta_ratio(sig["delta_next"], sig["delta_history"])
        return out

    def _popularity_ndcg(self, n_items: int, train_ex: Examples) -> float:
        """Validation NDCG@10 of the registered popularity model (default config) fed with the
        training examples' events."""
        pop = models.create("popularity", n_items=n_items)
        for batch in train_ex.batches(4096):
            pop.observe(batch)
        metrics = evaluate_examples(pop, self.valid_ex, batch_size=self.batch_size)
        return float(metrics["ndcg@10"])

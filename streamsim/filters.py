"""ETA-Rec sample filtering: adapt only on reliable, non-redundant requests (an adaptation add-on).

Per micro-batch, before the test-time step (JohnsonChen-id/TTT4Rec `eta_utils.py`;
docs/models-ttt.md):

1. top-K entropy of each request's scores: softmax over the catalogue, keep the top-K
   probabilities, renormalise, Shannon entropy (plain full-catalogue entropy collapses on large
   catalogues, which is ETA-Rec's finding);
2. reliability: keep requests with entropy < E0, where E0 is the `e0_quantile` quantile of the
   first micro-batch's entropies (the report says the median, the code uses 0.4; default 0.4);
3. redundancy: keep requests whose top-K-sparsified distribution has |cosine| < `epsilon` with the
   top-K-sparsified moving average m of batch-mean distributions (the code's 0.3; EATA's 0.05);
   m <- 0.9 m + 0.1 mean(p) over *all* requests of the batch (as in the code);
4. at least `min_keep` (10%) of the batch is kept: the lowest-entropy requests if fewer pass.

Deviation: ETA-Rec reweights its entropy loss per sample by 1/exp(E - E0); the test-time losses
adapted here (T2ARec's alignment losses) are batch means, so the filter selects samples and does
not reweight them. The share of filtered requests is recorded per micro-batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from streamsim import config
from streamsim.errors import ScenarioError
from streamsim.ranking import topk_entropy


@dataclass(frozen=True, slots=True, kw_only=True)
class EtaFilterSpec:
    k: int = 50  # top-K of the entropy and of the sparsified distributions
    e0_quantile: float = 0.4  # E0 = this quantile of the first batch's entropies (1: keep all)
    epsilon: float = 0.3  # redundancy threshold on |cosine|
    min_keep: float = 0.1  # share of the batch always kept (lowest entropy first)
    momentum: float = 0.9  # m <- momentum * m + (1 - momentum) * mean(p)

    @classmethod
    def from_table(cls, table: Any, where: str) -> EtaFilterSpec:
        spec = cls(**config.bind(cls, table, where))
        config.at_least_zero(spec.k, f"{where} key 'k'", strict=True)
        for key in ("e0_quantile", "min_keep", "momentum"):
            value = getattr(spec, key)
            if not 0.0 <= value <= 1.0:
                msg = f"{where} key {key!r}: expected 0..1; got {value}"
                raise ScenarioError(msg)
        config.at_least_zero(spec.epsilon, f"{where} key 'epsilon'")
        return spec


class EtaFilter:
    """Stateful filter: E0 is calibrated on the first batch it sees; m persists across batches."""

    def __init__(self, spec: EtaFilterSpec) -> None:
        if not 0.0 <= spec.min_keep <= 1.0:
            msg = f"`min_keep` must be in [0, 1], got {spec.min_keep}"
            raise ValueError(msg)
        self.spec = spec
        self.e0: float | None = None
        self.m: Tensor | None = None  # (V,) moving average of batch-mean probabilities

    def select(self, scores: Tensor) -> Tensor:
        """(B,) bool mask of requests to adapt on, from (B, V) scores (-inf outside catalogue)."""
        k = min(self.spec.k, scores.shape[1])
        entropy = topk_entropy(scores, k)  # (B,)
        if self.e0 is None:  # a quantile of 1 keeps every request: E0 = +inf
            q = self.spec.e0_quantile
            self.e0 = math.inf if q >= 1.0 else float(torch.quantile(entropy.double(), q))
        keep = entropy < self.e0
        probs = torch.softmax(scores.double(), dim=1)  # (B, V)
        if self.m is not None:
            cos = _cosine(_sparsify(probs, k), _sparsify(self.m[None, :], k))  # (B,)
            keep &= cos.abs() < self.spec.epsilon
        mean = probs.mean(dim=0)
        if self.m is None:
            self.m = mean
        else:
            self.m = self.spec.momentum * self.m + (1.0 - self.spec.momentum) * mean
        need = math.ceil(self.spec.min_keep * scores.shape[0])
        if int(keep.sum()) < need:
            keep = torch.zeros_like(keep)
            keep[entropy.argsort()[:need]] = True
        return keep

    def state(self) -> dict[str, object]:
        return {"e0": self.e0, "m": self.m}

    def load_state(self, state: dict[str, object]) -> None:
        e0, m = state["e0"], state["m"]
        self.e0 = None if e0 is None else float(e0)  # type: ignore[arg-type]
        self.m = m if isinstance(m, Tensor) else None


def _sparsify(p: Tensor, k: int) -> Tensor:
    """Keep each row's top-k entries, zero the rest."""
    top = p.topk(k, dim=1)
    return torch.zeros_like(p).scatter(1, top.indices, top.values)


def _cosine(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)

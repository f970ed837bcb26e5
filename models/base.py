"""The interface every registered model implements, and the batch it consumes.

Glossary (all model files): B batch, L max history length, D d_model, N d_state, H heads,
P headdim, Q chunk length, V catalogue size + 1 (item 0 is padding).

A model sees a `SeqBatch`: each row is one request: the user's causal history (oldest first,
right-padded with item 0), the history's timestamps, and the request time t_{n+1}. It never sees
the target of a request it is asked to score: `targets` is set only for training batches and for
`observe()` after the reveal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class SeqBatch:
    """A batch of requests: histories plus request times (and targets when training)."""

    items: Tensor  # (B, L) int64 item ids, right-padded with 0, oldest first
    times: Tensor  # (B, L) int64 epoch seconds, 0 on padding
    lengths: Tensor  # (B,) int64 valid history length in [0, L]
    request_times: Tensor  # (B,) int64 epoch seconds of the request (t_{n+1})
    targets: Tensor | None = None  # (B,) int64 next items: training batches and observe() only

    @property
    def size(self) -> int:
        return int(self.items.shape[0])

    def to(self, device: torch.device | str) -> SeqBatch:
        return self._map(lambda t: t.to(device))

    def without_targets(self) -> SeqBatch:
        return replace(self, targets=None)

    def subset(self, index: Tensor) -> SeqBatch:
        """Rows `index` of the batch."""
        return self._map(lambda t: t[index])

    def _map(self, fn: Callable[[Tensor], Tensor]) -> SeqBatch:
        values: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = fn(value) if value is not None else None
        return SeqBatch(**values)


class Recommender(nn.Module):
    """Base class of every registered model.

    Subclasses implement `forward` (history -> user representation and final state) and, where it
    differs from the default dot-product head, `score`. Optional capabilities:

    - `test_time_loss`: a label-free loss on the inputs (T2ARec's alignment losses); models that
      have none leave `has_test_time_loss` False and the replay refuses adaptive policies for them.
      `test_time_parameters` names what a test-time step may update (default: everything).
    - `observe`: a non-gradient update after labels are revealed (count-based baselines).
    - `step`: one new event for recurrent models, matching `forward`.
    """

    name: ClassVar[str] = ""
    has_test_time_loss: ClassVar[bool] = False
    trainable: ClassVar[bool] = True  # False for count-based baselines (no gradient training)
    # whether `observe` reads the revealed events' histories (False: only targets and times, so
    # a warm-up may reveal many events of one user in a single call)
    observes_histories: ClassVar[bool] = True

    def __init__(self, n_items: int, max_len: int) -> None:
        super().__init__()
        if n_items < 1:
            msg = f"`n_items` must be >= 1, got {n_items}"
            raise ValueError(msg)
        self.n_items = n_items
        self.max_len = max_len

    def forward(self, batch: SeqBatch) -> tuple[Tensor, Any]:  # (B, D), state
        msg = f"{type(self).__name__} must implement forward(batch) -> (representation, state)"
        raise NotImplementedError(msg)

    def item_table(self) -> Tensor:
        """The (V, D) output item table the default `score` multiplies with; row 0 is padding."""
        msg = f"{type(self).__name__} must implement item_table() or override score()"
        raise NotImplementedError(msg)

    def score(self, batch: SeqBatch) -> Tensor:
        """(B, V) scores over the whole catalogue; column 0 (padding) is -inf."""
        rep, _ = self(batch)
        logits = rep @ self.item_table().T  # (B, V)
        logits[:, 0] = float("-inf")
        return logits

    def generators(self) -> dict[str, torch.Generator]:
        """Random generators the model owns beyond the global one (e.g. BERT4Rec's masking),
        by name: saved and restored by resumable training. Default: none."""
        return {}

    def loss(self, batch: SeqBatch) -> Tensor:
        """Supervised training loss: full-softmax cross-entropy over the catalogue."""
        assert batch.targets is not None, "loss() needs a batch with targets"
        logits = self.score(batch)
        return nn.functional.cross_entropy(logits, batch.targets)

    def loss_terms(self, batch: SeqBatch) -> dict[str, Tensor]:
        """The weighted terms of `loss`, named, whose `sum_terms` is `loss` bit for bit.

        Training optimises `sum_terms(loss_terms(batch))` and logs each term's epoch mean, so an
        auxiliary loss that swamps the recommendation loss is visible. Default: one term.
        """
        return {"rec": self.loss(batch)}

    def test_time_loss(self, batch: SeqBatch) -> Tensor:
        """A label-free loss on the inputs of a batch (only when `has_test_time_loss`)."""
        msg = f"model {self.name!r} has no test-time loss; use policy 'none'"
        raise NotImplementedError(msg)

    def test_time_signals(self, batch: SeqBatch) -> dict[str, float]:
        """Label-free diagnostics of a batch for detectors and dashboards (no gradient).

        ``loss``: the test-time loss; models may add more (T2ARec: ``delta_next``, the mean
        Δ_{n+1}), computed in the same pass.
        """
        with torch.no_grad():
            return {"loss": float(self.test_time_loss(batch))}

    @torch.no_grad()
    def health_signals(self, batch: SeqBatch) -> dict[str, Tensor]:
        """Internals that `streamsim.health` summarises, without gradient.

        Default: ``representation``, the (B, D) output of `forward` (what the item table
        multiplies). Models add their own (T2ARec: ``state_norm``, ``delta_next``,
        ``delta_history``); each value is a tensor whose first axis runs over rows or values.
        """
        rep, _ = self(batch.without_targets())
        return {"representation": rep}

    def test_time_parameters(self) -> list[nn.Parameter]:
        """The parameters a test-time step updates (default: every trainable parameter)."""
        return [p for p in self.parameters() if p.requires_grad]

    def observe(self, batch: SeqBatch) -> None:  # noqa: B027 - optional hook, default no-op
        """Non-gradient update with revealed events (`batch.targets` at `batch.request_times`)."""


def sum_terms(terms: dict[str, Tensor]) -> Tensor:
    """Σ of `loss_terms`, added left to right in their order (the order `loss` adds them)."""
    values = iter(terms.values())
    total = next(values)
    for value in values:
        total = total + value
    return total

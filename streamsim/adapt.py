"""Test-time adaptation and online supervised updates: a TENT-shaped wrapper around a model.

Two orthogonal axes (PROTOCOL.md §6.4):

- test-time adaptation ``none | reset | continual`` on the *inputs* of a micro-batch, before it is
  scored: `tta_steps` plain-SGD steps (lr `tta_lr`, no momentum, no weight decay; MODELS.md A12) on
  the model's label-free `test_time_loss`, in eval mode (A14). ``reset`` is T2ARec's Algorithm 1:
  the weights and the optimizer are restored after the batch is scored; ``continual`` carries
  both forward.
- online supervised update after the reveal (`online`): `online_steps` Adam steps on the model's
  supervised loss over the revealed events. It moves the *base* weights that ``reset`` restores to.

``continual`` takes three modifiers (PROTOCOL.md §6.7): ``reset_every`` N restores the
pretrained test-time parameters and a fresh optimizer after every N-th micro-batch (RDumb),
``reset_on_alarm`` does it after an alarm of the named detector (the engine calls
`restore_pretrained`), and ``anchor`` α pulls the parameters towards θ₀ after every step,
θ ← α·θ + (1 − α)·θ₀ (ROID's weight ensembling; α = 1 is plain continual).

With ``reset`` and no online update the weights after every micro-batch equal the pretrained ones
bit for bit, and no gradient or optimizer state survives a batch. A step whose loss or gradient
is not finite is skipped (counted in `AdaptStats.skipped_steps`), so a diverging large-lr run
stops moving instead of filling its weights with NaN.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from models.base import Recommender, SeqBatch
from streamsim import rng as rng_streams
from streamsim.errors import ModelError
from streamsim.filters import EtaFilter
from streamsim.scenario import PolicySpec


@dataclass(frozen=True)
class AdaptStats:
    loss_before: float | None  # test-time loss on the batch before the first step
    loss_after: float | None  # ... after the last step
    backward_passes: int
    seconds: float
    filtered_share: float | None = None  # share of requests a sample filter left out
    samples_saved: int = 0  # per-request gradient contributions skipped: left-out x steps
    skipped_steps: int = 0  # steps not taken because the loss or a gradient was not finite


def collect_params(model: Recommender) -> tuple[list[torch.nn.Parameter], list[str]]:
    """Every parameter that requires grad, with its name (online updates and ||θ − θ0||).

    Test-time steps update only `model.test_time_parameters()` (T2ARec: all, or all but the item
    table (A13); TTT4Rec: the TTT layers' q/k/v/o projections, as ETA-Rec adapts).
    """
    params, names = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            params.append(p)
            names.append(name)
    return params, names


def check_model(model: Recommender, policy: PolicySpec) -> None:
    """Refuse policies the model cannot run, with the reason."""
    if policy.tta != "none" and not model.has_test_time_loss:
        msg = (
            f"policy {policy.name!r} uses test-time adaptation ({policy.tta}) but model"
            f" {model.name!r} has no test-time loss; use tta = 'none' (online updates still work)"
        )
        raise ModelError(msg)
    if (policy.tta != "none" or policy.online) and not model.trainable:
        msg = f"model {model.name!r} has no trainable parameters; policy {policy.name!r} adapts"
        raise ModelError(msg)
    if policy.tta != "none" and not model.test_time_parameters():
        msg = f"model {model.name!r}: `test_time_parameters()` is empty; nothing to adapt"
        raise ModelError(msg)


class Adapter:
    """Wraps a model with one adaptation policy; snapshots the pretrained weights when built."""

    def __init__(self, model: Recommender, policy: PolicySpec) -> None:
        check_model(model, policy)
        self.model = model
        self.policy = policy
        flt = policy.sample_filter  # ETA-Rec filtering of the test-time step (None: off)
        self.filter = EtaFilter(flt) if flt is not None else None
        self.params, self.param_names = collect_params(model)  # online updates, ||θ − θ0||
        self.tta_params = model.test_time_parameters()  # what a test-time step updates (A13)
        self.theta0 = _snapshot(model)  # the pretrained weights (for ||theta - theta0||)
        self._tta0 = [p.detach().clone() for p in self.tta_params]  # their pretrained values
        self._base: list[Tensor] | None = None  # test-time parameters to restore after a batch
        self.tta_opt = self._new_tta_optimizer()
        self.online_opt = (
            torch.optim.Adam(self.params, lr=policy.online_lr) if policy.online else None
        )

    def _new_tta_optimizer(self) -> torch.optim.Optimizer | None:
        if self.policy.tta == "none":
            return None
        return torch.optim.SGD(
            self.tta_params, lr=self.policy.tta_lr, momentum=0.0, weight_decay=0.0
        )

    # -- stage 1: adapt on the inputs -----------------------------------------------------------
    def adapt(self, inputs: SeqBatch, *, outside: Tensor | None = None) -> AdaptStats:
        """Test-time steps on the batch's inputs (no targets); returns the losses it saw.

        `outside` marks items outside the catalogue (scored -inf by the sample filter).
        """
        assert inputs.targets is None, "test-time adaptation must never see targets"
        start = time.perf_counter()
        if self.tta_opt is None:
            return AdaptStats(None, None, 0, 0.0)
        if self.policy.tta == "reset":
            # only the test-time parameters move in the step; without online updates their
            # base is the pretrained copy, so no per-batch snapshot is needed
            online = self.online_opt is not None
            self._base = [p.detach().clone() for p in self.tta_params] if online else self._tta0
        self.model.eval()  # A14: deterministic (no dropout) during the step and the scoring
        filtered, saved, step_inputs = None, 0, inputs
        if self.filter is not None:
            with torch.no_grad():
                scores = self.model.score(inputs).clone()
            if outside is not None:
                scores[:, outside] = float("-inf")
            keep = self.filter.select(scores)
            filtered = 1.0 - float(keep.double().mean())
            saved = int((~keep).sum()) * self.policy.tta_steps
            if not bool(keep.all()):
                step_inputs = inputs.subset(keep.nonzero()[:, 0])
        before = None
        if step_inputs is not inputs:  # the recorded losses are of the whole batch, filtered or not
            with torch.no_grad():
                before = float(self.model.test_time_loss(inputs))
        backward, skipped = 0, 0
        for _ in range(self.policy.tta_steps):
            loss = self.model.test_time_loss(step_inputs)
            if before is None:
                before = float(loss.detach())
            self.tta_opt.zero_grad(set_to_none=True)
            if not bool(torch.isfinite(loss)):  # a diverged model: never step on NaN / inf
                skipped += 1
                continue
            loss.backward()
            backward += 1
            if not _finite_grads(self.tta_params):
                skipped += 1
                continue
            self.tta_opt.step()
            if self.policy.anchor is not None:
                self._pull_towards_pretrained(self.policy.anchor)
        self.tta_opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            after = float(self.model.test_time_loss(inputs))
        seconds = time.perf_counter() - start
        return AdaptStats(before, after, backward, seconds, filtered, saved, skipped)

    def _pull_towards_pretrained(self, alpha: float) -> None:
        with torch.no_grad():
            for param, value in zip(self.tta_params, self._tta0, strict=True):
                param.mul_(alpha).add_(value, alpha=1.0 - alpha)

    # -- after scoring: restore for reset -------------------------------------------------------
    def after_scoring(self, batch_id: int | None = None) -> bool:
        """``reset``: restore the weights and start a fresh optimizer (Algorithm 1, line 12);
        ``continual`` with ``reset_every`` N: the same after every N-th micro-batch. Returns
        whether a periodic reset happened (the per-batch ``reset`` is not counted). Without a
        `batch_id` (LOO evaluation) there is no periodic reset."""
        if self.policy.tta == "reset" and self._base is not None:
            with torch.no_grad():
                for param, value in zip(self.tta_params, self._base, strict=True):
                    param.copy_(value)
            self._base = None
            self.tta_opt = self._new_tta_optimizer()
        every = self.policy.reset_every
        if every is not None and batch_id is not None and (batch_id + 1) % every == 0:
            self.restore_pretrained()
            return True
        return False

    def restore_pretrained(self) -> None:
        """Back to the pretrained test-time parameters, with a fresh optimizer (a continual
        policy's periodic or drift-triggered reset)."""
        with torch.no_grad():
            for param, value in zip(self.tta_params, self._tta0, strict=True):
                param.copy_(value)
        self.tta_opt = self._new_tta_optimizer()

    # -- stage 4: online supervised update ------------------------------------------------------
    def learn(self, revealed: SeqBatch, *, seed: int) -> int:
        """Supervised steps on revealed events; returns the number of backward passes."""
        if self.online_opt is None:
            return 0
        assert revealed.targets is not None
        self.model.train()
        with rng_streams.seeded(seed):  # dropout masks, owned: deterministic and resumable
            backward = 0
            for _ in range(self.policy.online_steps):
                loss = self.model.loss(revealed)
                self.online_opt.zero_grad(set_to_none=True)
                if not bool(torch.isfinite(loss)):  # never step on NaN / inf
                    continue
                loss.backward()
                backward += 1
                if _finite_grads(self.params):
                    self.online_opt.step()
            self.online_opt.zero_grad(set_to_none=True)
        self.model.eval()
        return backward

    def param_distance(self) -> float:
        """||theta - theta_0|| over the adapted parameters (0.0 bit for bit after a reset)."""
        total = torch.zeros((), dtype=torch.float64)
        state = dict(self.model.named_parameters())
        for name in self.param_names:
            diff = state[name].detach().to(torch.float64) - self.theta0[name].to(torch.float64)
            total += (diff * diff).sum()
        return float(total.sqrt())

    def state(self) -> dict[str, object]:
        return {
            "filter": self.filter.state() if self.filter is not None else None,
            "model": _snapshot(self.model),
            "tta_opt": self.tta_opt.state_dict() if self.tta_opt is not None else None,
            "online_opt": self.online_opt.state_dict() if self.online_opt is not None else None,
        }

    def load_state(self, state: dict[str, object]) -> None:
        weights = state["model"]
        assert isinstance(weights, dict)
        _restore(self.model, weights)
        if self.filter is not None and isinstance(state.get("filter"), dict):
            self.filter.load_state(state["filter"])  # type: ignore[arg-type]
        if self.tta_opt is not None and state["tta_opt"] is not None:
            self.tta_opt.load_state_dict(state["tta_opt"])  # type: ignore[arg-type]
        if self.online_opt is not None and state["online_opt"] is not None:
            self.online_opt.load_state_dict(state["online_opt"])  # type: ignore[arg-type]


def _finite_grads(params: list[torch.nn.Parameter]) -> bool:
    return all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)


def _snapshot(model: Recommender) -> dict[str, Tensor]:
    """Copies of the model's parameters and buffers.

    Non-tensor entries of the state dict (a count model's `_extra_state`: its event log) are
    left out: they are not weights, adaptation never changes them, and the engine's resume state
    keeps count models whole.
    """
    return {k: v.detach().clone() for k, v in model.state_dict().items() if isinstance(v, Tensor)}


def _restore(model: Recommender, state: dict[str, Tensor]) -> None:
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if isinstance(value, Tensor):
                value.copy_(state[name])

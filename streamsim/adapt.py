"""Test-time adaptation: a TENT-shaped wrapper that adapts a model on a micro-batch's inputs.

A policy (`PolicySpec`, one ``[[adaptation.policies]]`` entry) has two independent axes:

- test-time adaptation ``none | reset | continual`` on the *inputs* of a micro-batch, before it is
  scored: `tta_steps` plain-SGD steps (lr `tta_lr`, no momentum, no weight decay, as T2ARec's
  Algorithm 1) in eval mode (no dropout). ``reset`` is Algorithm 1 itself: the weights and the
  optimizer are restored after the batch is scored; ``continual`` carries both forward. This is
  the `Adapter` here. What a step descends is the policy's `tta_step`:

  - ``model``: the model's own label-free `test_time_loss` (T2ARec: its time-interval and
    interest-state alignment losses; TTT4Rec: ETA-Rec's top-K entropy);
  - ``placebo``: a control, a random direction (owned generator, seeded per micro-batch) scaled
    to the norm the step of rule `placebo_of` (default ``model``; also ``entropy``,
    ``selfsup``) would have had on that batch at the same learning rate: same size, no signal;
  - ``entropy``: Tent-style, the mean top-K entropy of the batch's score distributions over
    the known catalogue (label-free, any model);
  - ``selfsup``: next-item cross-entropy on the batch's own input histories (each history's last
    item predicted from the ones before it): every target is an input, none is a request's
    target (label-free with respect to what is scored, any model);
  - ``oracle``: cross-entropy on the batch's true targets *before* they are scored. It reads
    what it is then scored on: a diagnostic ceiling, never a policy a user could deploy.
- an online supervised update after the reveal (``online = true``): `streamsim.online`. It moves
  the *base* weights that ``reset`` restores to.

The `Adapter` owns every restore of the test-time parameters, behind one interface:

    with adapter.adapted(inputs, batch_id=b, span=(first_idx, last_idx)) as step:
        scores = model.score(inputs)          # adapted weights
    # left the block: a ``reset`` policy is back on its base weights
    restored = adapter.on_alarms(fired)       # drift-triggered reset, after detection

Leaving the block restores a ``reset`` policy's weights (even when scoring raised), and a
``continual`` policy's modifiers act at the right moment: ``reset_every`` N restores the
pretrained test-time parameters and a fresh optimizer after every N-th micro-batch (RDumb's
periodic reset); ``reset_on_alarm`` does it after an alarm of the named detector (`on_alarms`);
``reset_random`` R does it after R micro-batches drawn uniformly at random without replacement
(`random_reset_batches`; the chance baseline a drift-triggered reset must beat at the same count);
``anchor`` α pulls the parameters towards θ₀ after every step, θ ← α·θ + (1 − α)·θ₀ (ROID's
weight ensembling; α = 1 is plain continual); the diagnostic ``reset_at_drifts`` restores θ₀
before adapting on a micro-batch that holds a ground-truth drift start (an oracle that bounds
what a perfect drift-triggered reset could gain; never deployable).

With ``reset`` and no online update the weights after every micro-batch equal the pretrained ones
bit for bit, and no gradient or optimizer state survives a batch. A step whose loss or gradient
is not finite is skipped (counted in `AdaptStats.skipped_steps`), so a diverging large-lr run
stops moving instead of filling its weights with NaN.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from models.base import Recommender, SeqBatch
from streamsim import config
from streamsim.errors import ModelError, ScenarioError
from streamsim.filters import EtaFilter, EtaFilterSpec
from streamsim.ranking import topk_entropy
from streamsim.rng import batch_seed


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySpec:
    """One entry of [[adaptation.policies]]: test-time adaptation x online supervised update."""

    name: str  # display name, unique within the scenario ('none', 'reset', 'continual', ...)
    tta: Literal["none", "reset", "continual"] = "none"
    # what a test-time step descends (module docstring): the model's own loss or a control
    tta_step: Literal["model", "placebo", "entropy", "selfsup", "oracle"] = "model"
    entropy_k: int = 10  # top-K of the ``entropy`` step
    # the rule whose step the ``placebo`` copies the size of (its gradient, the same lr)
    placebo_of: Literal["model", "entropy", "selfsup"] = "model"
    # T2ARec Algorithm 1: plain SGD, alpha = 0.005; "auto": chosen on the validation window
    # (`streamsim.tuning`) for this policy's step rule and steps, before the replay
    tta_lr: float | Literal["auto"] = 0.005
    tta_steps: int = 1  # M
    online: bool = False  # supervised update on revealed events after scoring
    online_lr: float = 1e-3
    online_steps: int = 1
    # ETA-Rec sample filter on the test-time step ([adaptation.policies.sample_filter]; None: off)
    sample_filter: EtaFilterSpec | None = None
    # modifiers of continual adaptation (see the module docstring)
    reset_every: int | None = None
    reset_on_alarm: str | None = None  # "name:signal" of a [[detectors]] entry
    # that many resets after micro-batches drawn uniformly at random (a drift-triggered reset's
    # chance baseline with the same count)
    reset_random: int | None = None
    anchor: float | None = None
    reset_at_drifts: bool = False  # diagnostic only: needs synthetic ground truth

    @property
    def modifiers(self) -> tuple[str, ...]:
        """The continual-adaptation modifiers this policy sets."""
        keys = ("reset_every", "reset_on_alarm", "reset_random", "anchor")
        found = tuple(k for k in keys if getattr(self, k) is not None)
        return found + (("reset_at_drifts",) if self.reset_at_drifts else ())

    @classmethod
    def from_table(cls, table: Any, where: str) -> PolicySpec:
        spec = cls(**config.bind(cls, table, where, skip=("sample_filter",)))
        config.check_name(spec.name, f"{where} key 'name'")
        for key in ("tta_steps", "online_lr", "online_steps"):
            config.at_least_zero(getattr(spec, key), f"{where} key {key!r}")
        if spec.tta_lr != "auto":
            config.at_least_zero(spec.tta_lr, f"{where} key 'tta_lr'")
        if table.get("sample_filter") is not None:  # None: from a resolved default policy
            fw = f"{where}.sample_filter"
            if spec.tta == "none":
                msg = f"{fw}: a sample filter needs test-time adaptation; policy has tta = 'none'"
                raise ScenarioError(msg)
            spec = replace(spec, sample_filter=EtaFilterSpec.from_table(table["sample_filter"], fw))
        if spec.tta_step != "model" and spec.tta == "none":
            msg = (
                f"{where} key 'tta_step': {spec.tta_step!r} is a test-time step; expected tta ="
                " 'reset' or 'continual', got tta = 'none'"
            )
            raise ScenarioError(msg)
        config.at_least_zero(spec.entropy_k, f"{where} key 'entropy_k'", strict=True)
        if spec.placebo_of != "model" and spec.tta_step != "placebo":
            msg = (
                f"{where} key 'placebo_of': sizes the placebo step; expected tta_step ="
                f" 'placebo', got {spec.tta_step!r}"
            )
            raise ScenarioError(msg)
        spec._check_modifiers(where)
        return spec

    @property
    def diagnostic(self) -> bool:
        """Whether the policy reads what it is scored on (the oracle step): a ceiling to read
        results against, never a deployable method."""
        return self.tta != "none" and self.tta_step == "oracle"

    @property
    def step_loss(self) -> str:
        """The rule whose loss the step differentiates: its own, or for the ``placebo`` the
        rule it is sized by (`placebo_of`)."""
        return self.placebo_of if self.tta_step == "placebo" else self.tta_step

    @property
    def needs_test_time_loss(self) -> bool:
        """The ``model`` step, and a ``placebo`` sized by it, need the model's own loss."""
        return self.tta != "none" and self.step_loss == "model"

    def _check_modifiers(self, where: str) -> None:
        """Periodic / drift-triggered reset and anchoring modify continual adaptation only."""
        for key in self.modifiers:
            if self.tta != "continual" or self.online:
                got = f"tta = {self.tta!r}" + (", online = true" if self.online else "")
                msg = (
                    f"{where} key {key!r}: modifies continual test-time adaptation; expected"
                    f" tta = 'continual' without online updates (whose weights would not be the"
                    f" pretrained ones a reset restores), got {got}"
                )
                raise ScenarioError(msg)
        if self.reset_every is not None:
            config.at_least_zero(self.reset_every, f"{where} key 'reset_every'", strict=True)
        if self.reset_random is not None:
            config.at_least_zero(self.reset_random, f"{where} key 'reset_random'")
        if self.anchor is not None and not 0 < self.anchor <= 1:
            msg = f"{where} key 'anchor': expected a weight in (0, 1], got {self.anchor!r}"
            raise ScenarioError(msg)


@dataclass(frozen=True)
class AdaptStats:
    """What the test-time step(s) on one micro-batch saw."""

    loss_before: float | None  # test-time loss on the batch before the first step
    loss_after: float | None  # ... after the last step
    backward_passes: int
    seconds: float
    filtered_share: float | None = None  # share of requests a sample filter left out
    samples_saved: int = 0  # per-request gradient contributions skipped: left-out x steps
    skipped_steps: int = 0  # steps not taken because the loss or a gradient was not finite
    step_norm: float | None = None  # ||θ_after − θ_before|| over the test-time parameters
    step_rel: float | None = None  # ... divided by ||θ_before||


@dataclass
class TestTimeStep:
    """The test-time step of one micro-batch, as `Adapter.adapted` yields it. `restored` says
    whether θ₀ was restored in this batch (oracle before the step, periodic after scoring); it
    is final once the ``with`` block is left."""

    __test__ = False  # not a pytest test class

    stats: AdaptStats
    restored: bool = False
    # (B, V) scores of the inputs with the weights before the step (when asked for: what the
    # step changed is measured against them), None otherwise
    scores_before: Tensor | None = None


def collect_params(model: Recommender) -> tuple[list[torch.nn.Parameter], list[str]]:
    """Every parameter that requires grad, with its name (online updates and ||θ − θ0||).

    Test-time steps update only `model.test_time_parameters()` (T2ARec: all, or all but the item
    table; TTT4Rec: the TTT layers' q/k/v/o projections, as ETA-Rec adapts).
    """
    params, names = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            params.append(p)
            names.append(name)
    return params, names


def check_model(model: Recommender, policy: PolicySpec) -> None:
    """Refuse policies the model cannot run, with the reason."""
    if policy.needs_test_time_loss and not model.has_test_time_loss:
        msg = (
            f"policy {policy.name!r} uses test-time adaptation ({policy.tta}, step"
            f" {policy.tta_step!r}) but model {model.name!r} has no test-time loss; use"
            " tta = 'none' (online updates still work) or a model-agnostic tta_step"
            " ('entropy', 'selfsup')"
        )
        raise ModelError(msg)
    if (policy.tta != "none" or policy.online) and not model.trainable:
        msg = f"model {model.name!r} has no trainable parameters; policy {policy.name!r} adapts"
        raise ModelError(msg)
    if policy.tta != "none" and not model.test_time_parameters():
        msg = f"model {model.name!r}: `test_time_parameters()` is empty; nothing to adapt"
        raise ModelError(msg)


def random_reset_batches(policy: PolicySpec, *, n_batches: int, seed: int) -> frozenset[int]:
    """The micro-batch ids after which a ``reset_random`` policy restores θ₀: R of the first
    ``n_batches - 1`` (a reset after the last batch changes nothing), uniformly without
    replacement, from a generator owned by the scenario seed and the policy's name (so a resumed
    replay draws the same ones); empty for any other policy. `ScenarioError` when the replay has
    fewer batches than resets."""
    count = policy.reset_random
    if not count:
        return frozenset()
    if count > n_batches - 1:
        msg = (
            f"policy {policy.name!r} key 'reset_random': expected at most {n_batches - 1} resets"
            f" (the replay has {n_batches} micro-batches), got {count}"
        )
        raise ScenarioError(msg)
    key = [seed, *policy.name.encode()]
    rng = np.random.default_rng(key)
    return frozenset(int(b) for b in rng.choice(n_batches - 1, size=count, replace=False))


class Adapter:
    """Wraps a model with one policy's test-time adaptation; snapshots the pretrained weights.

    `drift_starts` are the replay indices of ground-truth drift starts, for the diagnostic
    ``reset_at_drifts`` policy only; `reset_batches` the micro-batch ids after which a
    ``reset_random`` policy restores θ₀ (`random_reset_batches`).
    """

    def __init__(
        self,
        model: Recommender,
        policy: PolicySpec,
        *,
        drift_starts: Sequence[int] = (),
        reset_batches: frozenset[int] = frozenset(),
        seed: int = 0,
    ) -> None:
        check_model(model, policy)
        self.reset_batches = reset_batches  # ``reset_random``: restore θ₀ after these batches
        self.seed = seed  # the placebo's random directions: one owned stream per micro-batch
        self._calls = 0  # micro-batches adapted on (the placebo's stream without a batch id)
        self.model = model
        self.policy = policy
        flt = policy.sample_filter  # ETA-Rec filtering of the test-time step (None: off)
        self.filter = EtaFilter(flt) if flt is not None else None
        self.params, self.param_names = collect_params(model)  # for ||θ − θ0||
        self.tta_params = model.test_time_parameters()  # what a test-time step updates
        self.theta0 = snapshot(model)  # the pretrained weights (for ||theta - theta0||)
        self._tta0 = [p.detach().clone() for p in self.tta_params]  # their pretrained values
        self.tta_opt = self._new_tta_optimizer()
        self.drift_starts = np.asarray(sorted(drift_starts), dtype=np.int64)

    @property
    def lr(self) -> float:
        """The test-time learning rate (an ``auto`` rate is resolved before the adapter)."""
        lr = self.policy.tta_lr
        if isinstance(lr, str):
            msg = (
                f"policy {self.policy.name!r}: tta_lr = 'auto' must be resolved on the validation"
                " window first (streamsim.tuning.resolve_auto)"
            )
            raise ValueError(msg)
        return lr

    def _new_tta_optimizer(self) -> torch.optim.Optimizer | None:
        if self.policy.tta == "none":
            return None
        return torch.optim.SGD(self.tta_params, lr=self.lr, momentum=0.0, weight_decay=0.0)

    @contextmanager
    def adapted(
        self,
        inputs: SeqBatch,
        *,
        outside: Tensor | None = None,
        batch_id: int | None = None,
        span: tuple[int, int] | None = None,
        targets: Tensor | None = None,
        measure: bool = False,
    ) -> Iterator[TestTimeStep]:
        """Adapt on the batch's inputs (never its targets); score inside the block.

        `outside` marks items outside the catalogue (scored -inf by the sample filter and the
        entropy step); `batch_id` (for ``reset_every`` and the placebo's stream) and `span`, the
        batch's first and last replay index (for ``reset_at_drifts``), are absent in
        leave-one-out evaluation. `targets` are the requests' targets, taken by the diagnostic
        ``oracle`` step only. `measure` keeps the scores before the step (`scores_before`).
        """
        assert inputs.targets is None, "test-time adaptation must never see targets"
        oracle = self.policy.diagnostic
        if (targets is not None) != oracle:
            msg = (
                f"policy {self.policy.name!r}: the oracle step, and only it, takes the batch's"
                f" targets; got targets {'' if targets is not None else 'not '}given"
            )
            raise ValueError(msg)
        restored = False
        if self.policy.reset_at_drifts and span is not None and self._holds_drift(*span):
            self.restore_pretrained()  # oracle: the batch holds a ground-truth drift start
            restored = True
        base = self._base_weights()
        before = None
        if measure and self.tta_opt is not None:
            with torch.no_grad():
                before = self.model.score(inputs).clone()
        stream = batch_id if batch_id is not None else self._calls
        self._calls += 1
        stats = self._steps(inputs, outside, targets, stream)
        step = TestTimeStep(stats, restored, before)
        try:
            yield step
        finally:
            if base is not None:  # ``reset``: back to the base weights, a fresh optimizer
                self._load_tta(base)
                self.tta_opt = self._new_tta_optimizer()
            every = self.policy.reset_every
            periodic = every is not None and batch_id is not None and (batch_id + 1) % every == 0
            if periodic or (batch_id is not None and batch_id in self.reset_batches):
                self.restore_pretrained()
                step.restored = True

    def on_alarms(self, fired: Iterable[str]) -> bool:
        """After detection: restore θ₀ when the policy's ``reset_on_alarm`` detector (its
        ``name:signal`` key) is among those that `fired`; returns whether it did."""
        trigger = self.policy.reset_on_alarm
        if trigger is not None and trigger in set(fired):
            self.restore_pretrained()
            return True
        return False

    def restore_pretrained(self) -> None:
        """Back to the pretrained test-time parameters, with a fresh optimizer."""
        self._load_tta(self._tta0)
        self.tta_opt = self._new_tta_optimizer()

    def _base_weights(self) -> list[Tensor] | None:
        """What a ``reset`` policy restores after scoring: θ₀, or with online updates (which
        move the base weights) the current test-time parameters."""
        if self.policy.tta != "reset":
            return None
        if self.policy.online:
            return [p.detach().clone() for p in self.tta_params]
        return self._tta0

    def _load_tta(self, values: list[Tensor]) -> None:
        with torch.no_grad():
            for param, value in zip(self.tta_params, values, strict=True):
                param.copy_(value)

    def _holds_drift(self, first: int, last: int) -> bool:
        """Whether a ground-truth drift start lies within replay indices [first, last]."""
        lo = int(np.searchsorted(self.drift_starts, first, side="left"))
        return lo < len(self.drift_starts) and int(self.drift_starts[lo]) <= last

    def _steps(
        self, inputs: SeqBatch, outside: Tensor | None, targets: Tensor | None, stream: int
    ) -> AdaptStats:
        """`tta_steps` steps of the policy's step rule on the (filtered) inputs."""
        start = time.perf_counter()
        if self.tta_opt is None:
            return AdaptStats(None, None, 0, 0.0)
        self.model.eval()  # deterministic (no dropout) during the step and the scoring
        filtered, saved, keep = None, 0, None
        if self.filter is not None:
            with torch.no_grad():
                scores = self.model.score(inputs).clone()
            if outside is not None:
                scores[:, outside] = float("-inf")
            keep = self.filter.select(scores)
            filtered = 1.0 - float(keep.double().mean())
            saved = int((~keep).sum()) * self.policy.tta_steps
            if bool(keep.all()):
                keep = None
        step_inputs = inputs if keep is None else inputs.subset(keep.nonzero()[:, 0])
        step_targets = targets if keep is None or targets is None else targets[keep]
        before = None
        if step_inputs is not inputs:  # the recorded losses are of the whole batch, filtered or not
            with torch.no_grad():
                before = float(self._loss(inputs, outside, targets))
        theta = [p.detach().clone() for p in self.tta_params]
        gen = torch.Generator().manual_seed(batch_seed(self.seed, stream))
        backward, skipped = 0, 0
        for _ in range(self.policy.tta_steps):
            loss = self._loss(step_inputs, outside, step_targets)
            if before is None:
                before = float(loss.detach())
            self.tta_opt.zero_grad(set_to_none=True)
            if not bool(torch.isfinite(loss)):  # a diverged model: never step on NaN / inf
                skipped += 1
                continue
            # gradients of the test-time parameters only: autograd skips the branches that lead
            # to the others (e.g. the item table's gradient through full-catalogue scores)
            grads = torch.autograd.grad(loss, self.tta_params, allow_unused=True)
            for p, g in zip(self.tta_params, grads, strict=True):
                p.grad = g
            backward += 1
            if not finite_grads(self.tta_params):
                skipped += 1
                continue
            if self.policy.tta_step == "placebo":
                self._random_step_like_sgd(gen)
            else:
                self.tta_opt.step()
            if self.policy.anchor is not None:
                self._pull_towards_pretrained(self.policy.anchor)
        self.tta_opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            after = float(self._loss(inputs, outside, targets))
        norm, size = _distance(self.tta_params, theta), _norm(theta)
        seconds = time.perf_counter() - start
        return AdaptStats(
            before, after, backward, seconds, filtered, saved, skipped, norm,
            norm / size if size > 0 else None,
        )  # fmt: skip

    def _loss(self, inputs: SeqBatch, outside: Tensor | None, targets: Tensor | None) -> Tensor:
        """The loss the policy's step descends on `inputs` (the placebo: the loss of the rule it
        copies, whose gradient sizes the random step)."""
        rule = self.policy.step_loss
        if rule == "model":
            return self.model.test_time_loss(inputs)
        if rule == "entropy":
            scores = self.model.score(inputs)
            if outside is not None:
                scores = scores.masked_fill(outside, float("-inf"))
            k = min(self.policy.entropy_k, scores.shape[1])
            return topk_entropy(scores, k).mean()
        if rule == "selfsup":
            shifted = next_item_inputs(inputs)
            if shifted is None:  # no history of two events: nothing to learn from
                return torch.zeros((), requires_grad=True)
            return self.model.loss(shifted)
        assert targets is not None  # the oracle (checked in `adapted`)
        return self.model.loss(replace(inputs, targets=targets))

    def _random_step_like_sgd(self, gen: torch.Generator) -> None:
        """The placebo: move the test-time parameters along a random direction by exactly the
        norm plain SGD on the copied rule's loss would have moved them (lr × ||gradient||)."""
        grads = [p.grad for p in self.tta_params if p.grad is not None]
        size = self.lr * _norm(grads)
        directions = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in self.tta_params]
        scale = size / max(_norm(directions), 1e-30)
        with torch.no_grad():
            for param, d in zip(self.tta_params, directions, strict=True):
                param.add_(d, alpha=scale)

    def _pull_towards_pretrained(self, alpha: float) -> None:
        with torch.no_grad():
            for param, value in zip(self.tta_params, self._tta0, strict=True):
                param.mul_(alpha).add_(value, alpha=1.0 - alpha)

    def param_distance(self) -> float:
        """||theta - theta_0|| over the trainable parameters (0.0 bit for bit after a reset)."""
        total = torch.zeros((), dtype=torch.float64)
        state = dict(self.model.named_parameters())
        for name in self.param_names:
            diff = state[name].detach().to(torch.float64) - self.theta0[name].to(torch.float64)
            total += (diff * diff).sum()
        return float(total.sqrt())

    def state(self) -> dict[str, object]:
        return {
            "filter": self.filter.state() if self.filter is not None else None,
            "model": snapshot(self.model),
            "tta_opt": self.tta_opt.state_dict() if self.tta_opt is not None else None,
        }

    def load_state(self, state: dict[str, object]) -> None:
        weights = state["model"]
        assert isinstance(weights, dict)
        restore(self.model, weights)
        if self.filter is not None and isinstance(state.get("filter"), dict):
            self.filter.load_state(state["filter"])  # type: ignore[arg-type]
        if self.tta_opt is not None and state["tta_opt"] is not None:
            self.tta_opt.load_state_dict(state["tta_opt"])  # type: ignore[arg-type]


def next_item_inputs(inputs: SeqBatch) -> SeqBatch | None:
    """Self-supervised examples from a batch's input histories: each history of two events or
    more, its last item as the target and the rest as the input (request time: the last
    event's). None when no history is long enough."""
    rows = (inputs.lengths >= 2).nonzero()[:, 0]
    if rows.numel() == 0:
        return None
    b = inputs.subset(rows)
    last = b.lengths - 1  # (B,) position of each history's last event
    at = torch.arange(len(rows))
    items, times = b.items.clone(), b.times.clone()
    target, request_time = items[at, last].clone(), times[at, last].clone()
    items[at, last], times[at, last] = 0, 0
    return SeqBatch(
        items=items, times=times, lengths=last, request_times=request_time, targets=target
    )


def _norm(tensors: Sequence[Tensor]) -> float:
    """Euclidean norm over a list of tensors (float64)."""
    total = sum(float((t.detach().to(torch.float64) ** 2).sum()) for t in tensors)
    return float(total**0.5)


def _distance(params: Sequence[Tensor], values: Sequence[Tensor]) -> float:
    return _norm([p.detach() - v for p, v in zip(params, values, strict=True)])


def finite_grads(params: list[torch.nn.Parameter]) -> bool:
    """Whether every gradient present is finite."""
    return all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)


def snapshot(model: Recommender) -> dict[str, Tensor]:
    """Copies of the model's parameters and buffers.

    Non-tensor entries of the state dict (a count model's `_extra_state`: its event log) are
    left out: they are not weights, adaptation never changes them, and the engine's resume state
    keeps count models whole.
    """
    return {k: v.detach().clone() for k, v in model.state_dict().items() if isinstance(v, Tensor)}


def restore(model: Recommender, state: dict[str, Tensor]) -> None:
    """Copy `snapshot` values back into the model's tensors, in place."""
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if isinstance(value, Tensor):
                value.copy_(state[name])

"""T2ARec's deviations from the paper: data-scaled L_time, L_state normalisers, detached Δ/state."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import models
from models.base import SeqBatch
from models.t2arec import clamp_to_history, state_alignment_loss, time_alignment_loss
from streamsim.errors import ModelError
from tests.support.tiny_t2arec import DAY, random_batch, tiny_t2arec

# ---- L_time with a data-scaled time unit ------------------------------------------------------


def _naive_scaled_time_loss(
    dt: torch.Tensor,
    dt_next: torch.Tensor,
    batch: SeqBatch,
    block: int,
    mode: str,
    quantile: float,
) -> torch.Tensor:
    """Eq. 14 over explicit pairs, gaps in data-scaled units (the docstring's definition)."""
    rows = []
    for b, n in enumerate(batch.lengths.tolist()):
        t = batch.times[b, :n].tolist() + [int(batch.request_times[b])]
        d = [dt[b, i, 0] for i in range(n)] + [dt_next[b, 0]]
        gaps = [0.0] + [float(t[i] - t[i - 1]) for i in range(1, n + 1)]  # T_1..T_{n+1}
        rows.append((n, d, gaps))
    if mode == "gap_quantile":
        positive = [g for n, _, gaps in rows for g in gaps[1 : n + 1] if g > 0]
        lam = max(float(torch.quantile(torch.tensor(positive, dtype=torch.float64), quantile)), 1)
    total, count = torch.zeros((), dtype=torch.float64), 0
    for n, d, gaps in rows:
        window = torch.tensor(gaps[1 : n + 1], dtype=torch.float64)  # positions 2..n+1
        if mode == "gap_quantile":
            scaled = [g / lam for g in gaps]
        else:  # standardized over the row's positions 2..n+1, population std floored at 1 s
            mean = float(window.mean()) if n else 0.0
            std = max(float(window.std(unbiased=False)) if n else 0.0, 1.0)
            scaled = [(g - mean) / std for g in gaps]
        for i in range(1, n + 1):
            for j in range(i + 1, n + 1):
                if (n - i) // block != (n - j) // block:
                    continue
                total = total + torch.relu(1 - (d[i] - d[j]) * (scaled[i] - scaled[j]))
                count += 1
    return total / max(count, 1)


@pytest.mark.parametrize("mode", ["gap_quantile", "standardized"])
@pytest.mark.parametrize("block", [3, 50])
def test_scaled_time_loss_matches_naive_pairs(mode: str, block: int) -> None:
    batch = random_batch(seed=3, lengths=(7, 5, 4, 2, 1, 0))
    g = torch.Generator().manual_seed(1)
    dt = torch.rand(6, 7, 1, generator=g, dtype=torch.float64) * 3
    dt_next = torch.rand(6, 1, generator=g, dtype=torch.float64) * 3
    args = (dt, dt_next, batch.times, batch.lengths, batch.request_times)
    got = time_alignment_loss(*args, scale=DAY, block=block, scale_mode=mode, quantile=0.3)
    want = _naive_scaled_time_loss(dt, dt_next, batch, block, mode, 0.3)
    torch.testing.assert_close(got, want)


def test_scaled_time_loss_does_not_depend_on_the_time_unit() -> None:
    """Seconds or minutes: the data-scaled losses are the same, the fixed λ one is not."""
    batch = random_batch(seed=4, lengths=(7, 6, 3))
    g = torch.Generator().manual_seed(2)
    dt = torch.rand(3, 7, 1, generator=g, dtype=torch.float64)
    dt_next = torch.rand(3, 1, generator=g, dtype=torch.float64)
    minutes = (batch.times * 60, batch.request_times * 60)  # every gap 60x longer
    for mode in ("gap_quantile", "standardized"):
        a = time_alignment_loss(dt, dt_next, batch.times, batch.lengths, batch.request_times,
                                scale=DAY, block=50, scale_mode=mode)  # fmt: skip
        b = time_alignment_loss(dt, dt_next, minutes[0], batch.lengths, minutes[1],
                                scale=DAY, block=50, scale_mode=mode)  # fmt: skip
        torch.testing.assert_close(a, b)
    fixed = [
        time_alignment_loss(dt, dt_next, t, batch.lengths, r, scale=DAY, block=50)
        for t, r in ((batch.times, batch.request_times), minutes)
    ]
    assert float(fixed[0]) != float(fixed[1])


# ---- L_state normalisers and what it sees ----------------------------------------------------


def _terms() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(1, 1, 3, 2, generator=g, dtype=torch.float64)
    x_n, x_next = torch.randn(2, 1, 1, 3, generator=g, dtype=torch.float64)
    b_next, q = torch.randn(2, 1, 2, generator=g, dtype=torch.float64)
    return h, x_n, x_next, b_next, q


def test_relative_and_triangle_state_losses_match_hand_computation() -> None:
    h, x_n, x_next, b_next, q = _terms()
    dt, A, P = torch.tensor([[0.3]]).double(), torch.tensor([-2.0]).double(), torch.tensor([0.7])
    args = (h, x_n, dt, x_next, b_next, q, A, P.double(), torch.tensor([3]))
    d, p_bar = 0.3, math.exp(0.7 * 0.3)
    decay = (1 - p_bar * math.exp(-2.0 * d)) * h[0, 0]
    step = p_bar * d * torch.outer(x_next[0, 0], b_next[0])
    back = d * torch.outer(x_n[0, 0], q[0])
    dist = torch.linalg.norm(decay - step - back)
    norm = torch.linalg.norm
    rel = state_alignment_loss(*args, normalizer="relative", eps=1e-3)
    torch.testing.assert_close(rel, dist / (norm(h[0, 0]) + 1e-3))
    tri = state_alignment_loss(*args, normalizer="triangle", eps=1e-3)
    torch.testing.assert_close(tri, dist / (norm(decay) + norm(step) + norm(back) + 1e-3))
    paper = state_alignment_loss(*args)
    torch.testing.assert_close(paper, dist / d**2)


def test_triangle_loss_is_one_for_a_lone_term_and_zero_when_terms_cancel() -> None:
    h, x_n, x_next, b_next, _ = _terms()
    dt, A = torch.tensor([[0.3]]).double(), torch.tensor([-2.0]).double()
    P = torch.tensor([2.0]).double()  # P = −A: the decay term vanishes
    zero_q = torch.zeros(1, 2, dtype=torch.float64)
    args = (dt, x_next, b_next)
    lone = state_alignment_loss(h, x_n, *args, zero_q, A, P, torch.tensor([3]),
                                normalizer="triangle", eps=1e-12)  # fmt: skip
    torch.testing.assert_close(lone, torch.tensor(1.0, dtype=torch.float64))
    # the back term cancels the step term: x_n = x_{n+1}, Q = −P̄·B_{n+1}
    cancel_q = -math.exp(2.0 * 0.3) * b_next
    zero = state_alignment_loss(h, x_next, *args, cancel_q, A, P, torch.tensor([3]),
                                normalizer="triangle", eps=1e-12)  # fmt: skip
    assert float(zero) < 1e-6


def test_relative_and_triangle_losses_do_not_fall_when_everything_shrinks() -> None:
    """The paper's Δ^{-2}-diluted distance falls with the scale of h_n, x and B; the
    deviations do not (up to ε), so shrinking the state cannot satisfy them."""
    h, x_n, x_next, b_next, q = _terms()
    dt, A, P = torch.tensor([[0.3]]).double(), torch.tensor([-2.0]).double(), torch.tensor([0.7])

    def loss(scale: float, normalizer: str) -> float:
        s = math.sqrt(scale)  # h ~ x ⊗ B: scale x and B by √scale each
        return float(state_alignment_loss(
            h * scale, x_n * s, dt, x_next * s, b_next * s, q * s, A, P.double(),
            torch.tensor([3]), normalizer=normalizer, eps=1e-9,  # type: ignore[arg-type]
        ))  # fmt: skip

    assert loss(1e-3, "dilution") < 1e-2 * loss(1.0, "dilution")
    for normalizer in ("relative", "triangle"):
        assert loss(1e-3, normalizer) == pytest.approx(loss(1.0, normalizer), rel=1e-4)


def test_clamp_to_history_uses_each_rows_valid_range_per_head() -> None:
    dt = torch.tensor(
        [[[0.2, 1.0], [0.5, 3.0], [9.0, 9.0]], [[0.1, 0.1], [0.0, 0.0], [0.0, 0.0]]]
    )  # row 0: length 2 (position 3 is padding, ignored), row 1: length 1
    dt_next = torch.tensor([[0.1, 5.0], [0.7, 0.05], [4.0, 4.0]])
    lengths = torch.tensor([2, 1, 0])
    got = clamp_to_history(dt_next, torch.cat([dt, torch.zeros(1, 3, 2)]), lengths)
    want = torch.tensor([[0.2, 3.0], [0.1, 0.1], [4.0, 4.0]])  # an empty row keeps its value
    torch.testing.assert_close(got, want)


def _state_grads(**options: Any) -> dict[str, torch.Tensor]:
    model = tiny_t2arec(**options)
    model.alignment_losses(random_batch(lengths=(7, 4, 2)))[1].backward()
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def test_detached_delta_and_state_cut_l_states_paths() -> None:
    """Δ_{n+1} = softplus(Linear1(o_n)[dt] + dt_bias). Detached, L_state reaches dt_bias only
    through h_n (the history's Δ) and through o_n; with h_n detached too, only through o_n
    (the re-fed token), a much weaker path."""
    live = _state_grads(state_loss="relative", state_delta="live", state_target="live")
    clamped = _state_grads(
        state_loss="relative", state_delta="detached_clamped", state_target="live"
    )
    assert not torch.allclose(live["dt_bias"], clamped["dt_bias"])
    target = _state_grads(
        state_loss="relative", state_delta="detached_clamped", state_target="detached"
    )
    assert float(target["dt_bias"].abs().sum()) < 1e-3 * float(clamped["dt_bias"].abs().sum())
    assert float(target["A_log"].abs().sum()) > 0  # the forward step e^{ΔA} still learns
    assert float(target["linear2.weight"].abs().sum()) > 0
    assert float(target["in_proj.weight"].abs().sum()) > 0  # via the re-fed token


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"state_loss": "l2"}, "`state_loss` must be one of"),
        ({"state_delta": "frozen"}, "`state_delta` must be one of"),
        ({"state_target": "none"}, "`state_target` must be one of"),
        ({"time_scale": "days"}, "`time_scale` must be one of"),
        ({"time_quantile": 1.0}, "0 < time_quantile < 1"),
        ({"state_eps": 0.0}, "state_eps > 0"),
    ],
)
def test_invalid_deviation_options_raise(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        models.make_config("t2arec", overrides)

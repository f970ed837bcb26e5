"""ETA-Rec sample filtering: top-K entropy, calibration, keep-all equivalence."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from streamsim.adapt import PolicySpec
from streamsim.filters import EtaFilter, EtaFilterSpec
from streamsim.ranking import topk_entropy
from streamsim.records import StepResult
from streamsim.replay import ReplayEngine, ReplaySpec, micro_batches
from streamsim.store import connect_memory, dataset_info, iter_events
from tests.support.toy import make_toy_model, store_toy, waves


def test_entropy_is_computed_on_the_renormalised_top_k() -> None:
    k = 5
    scores = torch.full((2, 1001), -3.0)
    scores[:, 1:6] = 4.0  # five equal top items
    scores[1, 6:] = 3.9  # a heavy tail: full-catalogue entropy differs a lot, top-K does not
    entropy = topk_entropy(scores, k)
    assert torch.allclose(entropy, torch.full((2,), math.log(k), dtype=entropy.dtype))
    full = -(torch.softmax(scores, 1) * torch.log_softmax(scores, 1)).sum(1)
    assert full[1] > full[0] + 2.0


def test_filter_calibrates_on_the_first_batch_and_keeps_a_minimum() -> None:
    gen = torch.Generator().manual_seed(0)
    f = EtaFilter(EtaFilterSpec(k=10, e0_quantile=0.5, epsilon=0.0, min_keep=0.1))
    first = torch.randn(40, 200, generator=gen)
    keep = f.select(first)
    assert f.e0 is not None
    assert int(keep.sum()) == 20  # below the median entropy: half of the batch
    keep2 = f.select(torch.randn(40, 200, generator=gen))  # epsilon 0: every sample redundant
    assert int(keep2.sum()) == 4  # the 10% minimum


def run_policy(sample_filter: EtaFilterSpec | None) -> tuple[Any, ...]:
    """Ranks; per batch: filtered share, samples saved, (loss before, after, ||θ−θ0||), size."""
    con = connect_memory()
    store_toy(con)
    info = dataset_info(con, "toy")
    policy = PolicySpec(name="continual", tta="continual", tta_lr=0.05, sample_filter=sample_filter)
    spec = ReplaySpec(batch_events=16)
    engine = ReplayEngine(
        make_toy_model(20),
        policy,
        spec,
        (),
        n_users=info.n_users,
        n_items=info.n_items,
        seed=0,
    )
    engine.warm_up(iter_events(con, "toy", stop_idx=150))
    results = [engine.step(b) for b in micro_batches(iter_events(con, "toy", start_idx=150), spec)]
    return (
        np.concatenate([r.events.rank for r in results]),
        [r.batch.filtered_share for r in results],
        [r.batch.tta_samples_saved for r in results],
        [_losses_and_distance(r) for r in results],
        [int((waves(r) == 0).sum()) for r in results],  # requests adapted on
    )


def _losses_and_distance(r: StepResult) -> tuple[float | None, float | None, float]:
    return r.batch.tta_loss_before, r.batch.tta_loss_after, r.batch.param_distance


def test_keep_everything_equals_the_unfiltered_policy_bit_for_bit() -> None:
    plain, none_shares, _, plain_losses, _ = run_policy(None)
    kept, shares, saved, losses, _ = run_policy(EtaFilterSpec(k=5, e0_quantile=1.0, epsilon=1.01))
    assert (plain == kept).all()
    assert losses == plain_losses  # the same steps: weights, losses and distances bit for bit
    assert all(s == 0.0 for s in shares)
    assert all(n == 0 for n in saved)
    assert all(s is None for s in none_shares)


def test_default_filter_reports_the_filtered_share() -> None:
    _, shares, saved, losses, sizes = run_policy(EtaFilterSpec(k=5))
    assert all(s is not None and 0.0 <= s <= 0.9 for s in shares)
    assert max(s for s in shares if s is not None) > 0.0
    # samples saved = requests left out x steps (one step per batch here)
    assert saved == [round(s * n) for s, n in zip(shares, sizes)]
    _, _, _, plain_losses, _ = run_policy(None)
    assert losses[0][0] == plain_losses[0][0]  # the recorded loss is the whole batch's

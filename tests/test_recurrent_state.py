"""Scoring a frozen recurrent model from each user's cached state equals recomputing it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamsim.adapt import PolicySpec
from streamsim.errors import ScenarioError
from streamsim.recurrent_state import RecurrentStateCache
from streamsim.replay import ReplayEngine, ReplaySpec, micro_batches
from streamsim.scenario import load
from streamsim.store import connect_memory, dataset_info, iter_events
from tests.support.tiny import build_tiny
from tests.support.toy import make_toy_model, store_toy

START = 150
NONE = PolicySpec(name="none")


def replay(model, spec: ReplaySpec, policy: PolicySpec = NONE):  # type: ignore[no-untyped-def]
    con = connect_memory()
    store_toy(con)
    info = dataset_info(con, "toy")
    engine = ReplayEngine(
        model, policy, spec, (), n_users=info.n_users, n_items=info.n_items, seed=0
    )
    engine.warm_up(iter_events(con, "toy", stop_idx=START))
    results = [
        engine.step(eb) for eb in micro_batches(iter_events(con, "toy", start_idx=START), spec)
    ]
    ranks = np.concatenate([r.events.rank for r in results])
    return engine, ranks


@pytest.mark.parametrize("name", ["t2arec", "mamba4rec"])
@pytest.mark.parametrize("max_len", [64, 8], ids=["fits", "longer-than-window"])
def test_cached_states_give_the_recomputed_ranks_over_a_whole_replay(
    name: str, max_len: int
) -> None:
    """Float64, so that a recurrence and a chunked scan agree to the last rank; with histories
    longer than the window, those users are recomputed (and counted)."""
    model = build_tiny(name, n_items=20, max_len=max_len, seed=3).double()
    _, expected = replay(model, ReplaySpec(batch_events=16, probe_events=0))
    engine, got = replay(model, ReplaySpec(batch_events=16, probe_events=0, recurrent_state=True))
    assert engine.cache is not None
    assert (got == expected).all()
    # the toy's 12 users have about 33 events each: all fit in 64, none stays within 8
    assert (engine.cache.recomputed == 0) == (max_len == 64)
    with torch.no_grad():  # and the cached representation is the forward of the whole history
        users = np.arange(12)
        batch = engine.history.batch(users, np.full(12, 2_000_000_000))
        if max_len == 64:
            o_n, _ = model(batch)
            assert torch.allclose(engine.cache.reps[torch.from_numpy(users)], o_n, atol=1e-10)


def test_adapting_policies_recompute_and_other_models_are_refused() -> None:
    model = build_tiny("t2arec", n_items=20, max_len=64, seed=3)
    spec = ReplaySpec(batch_events=16, probe_events=0, recurrent_state=True)
    reset = PolicySpec(name="reset", tta="reset", tta_lr=0.05)
    engine, _ = replay(model, spec, reset)
    assert engine.cache is None  # θ' scores: a cached θ₀ state would be wrong
    with pytest.raises(ScenarioError, match=r"recurrent model with a step.*got 'toy'"):
        RecurrentStateCache(make_toy_model(20), n_users=3)
    with pytest.raises(
        ScenarioError, match=r"\[replay\] key 'recurrent_state'.*got \[model\] name = 'sasrec'"
    ):
        load("weekend-shift", {"replay.recurrent_state": True, "model.name": "sasrec"})

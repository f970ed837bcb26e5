"""Poisoned future, for every registered model and every policy it can run.

Replacing every event after micro-batch `CUT` with garbage (random users, items and later
timestamps) must leave the ranks and the test-time losses of micro-batches 0..CUT-1 unchanged:
nothing a model sees while a micro-batch is adapted and scored may come from a later event.
(Micro-batch `CUT` itself may close differently: the batcher reads the next event to decide.)

A second poisoning keeps users and times and replaces the *target items* from micro-batch
`CUT` on: the first requests of micro-batch `CUT` are then built from the same inputs, so their
top-1 items and the batch's test-time losses must be unchanged too: a micro-batch's own targets
never reach the model before they are scored.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import models
from streamsim.adapt import PolicySpec
from streamsim.replay import ReplayEngine, ReplaySpec, micro_batches
from streamsim.store import connect_memory, iter_events, write_dataset
from tests.support.tiny import NAMES, build_tiny
from tests.support.toy import toy_events, waves

N_USERS, N_ITEMS, START, CUT = 12, 20, 150, 4
SPEC = ReplaySpec(batch_events=16)


def _policies(name: str) -> list[PolicySpec]:
    cls = models.get(name).cls
    out = [PolicySpec(name="none")]
    if cls.trainable:
        out.append(PolicySpec(name="online", online=True, online_lr=0.01))
    if cls.has_test_time_loss:
        out.append(PolicySpec(name="reset", tta="reset", tta_lr=0.05))
        out.append(PolicySpec(name="continual", tta="continual", tta_lr=0.05, online=True))
    return out


CASES = [(name, policy) for name in NAMES for policy in _policies(name)]


def _replay(events: pa.Table, users: pa.Table, items: pa.Table, name: str, policy: PolicySpec):  # type: ignore[no-untyped-def]
    con = connect_memory()
    write_dataset(con, "toy", events=events, users=users, items=items, source="t", format="t")
    model = build_tiny(name, n_items=N_ITEMS, max_len=6)
    engine = ReplayEngine(model, policy, SPEC, (), n_users=N_USERS, n_items=N_ITEMS, seed=0)
    engine.warm_up(iter_events(con, "toy", stop_idx=START))
    results = []
    for eb in micro_batches(iter_events(con, "toy", start_idx=START), SPEC):
        results.append(engine.step(eb))
        if len(results) > CUT:
            break
    return results


@pytest.mark.parametrize(("name", "policy"), CASES, ids=[f"{n}-{p.name}" for n, p in CASES])
def test_poisoned_future_leaves_earlier_micro_batches_unchanged(
    name: str, policy: PolicySpec
) -> None:
    events, users, items = toy_events(n_users=N_USERS, n_items=N_ITEMS)
    clean = _replay(events, users, items, name, policy)
    last = int(clean[CUT].events.idx[-1])
    n, k = events.num_rows, events.num_rows - last - 1
    rng = np.random.default_rng(7)
    poisoned = {
        "user_id": events.column("user_id").to_numpy().copy(),
        "item_id": events.column("item_id").to_numpy().copy(),
        "ts": events.column("ts").to_numpy().copy(),
    }
    poisoned["user_id"][last + 1 :] = rng.integers(0, N_USERS, k)
    poisoned["item_id"][last + 1 :] = rng.integers(1, N_ITEMS + 1, k)
    poisoned["ts"][last + 1 :] = poisoned["ts"][last] + np.sort(rng.integers(0, 10**6, k))
    garbage = events
    for column, values in poisoned.items():
        garbage = garbage.set_column(
            events.column_names.index(column),
            column,
            pa.array(values, events.schema.field(column).type),
        )
    assert n == garbage.num_rows
    dirty = _replay(garbage, users, items, name, policy)
    assert len(clean) == len(dirty) == CUT + 1
    for a, b in zip(clean[:CUT], dirty[:CUT]):
        assert (a.events.rank == b.events.rank).all(), f"batch {a.batch.batch_id}"
        assert a.batch.tta_loss_before == b.batch.tta_loss_before
        assert a.signals.get("tta_loss") == b.signals.get("tta_loss")

    first = int(clean[CUT].events.idx[0])
    targets = events.column("item_id").to_numpy().copy()
    targets[first:] = rng.integers(1, N_ITEMS + 1, n - first)
    swapped = events.set_column(
        events.column_names.index("item_id"), "item_id", pa.array(targets, pa.int32())
    )
    other = _replay(swapped, users, items, name, policy)
    for a, b in zip(clean[:CUT], other[:CUT]):
        assert (a.events.rank == b.events.rank).all(), f"batch {a.batch.batch_id}"
    a, b = clean[CUT], other[CUT]
    assert (a.events.user_id == b.events.user_id).all()
    assert not (a.events.item_id == b.events.item_id).all()
    # the users' first requests of the batch (its first wave) were scored before any target of
    # the batch was revealed; later waves see the earlier waves' events, as they should
    first = waves(a) == 0
    assert (a.events.top1[first] == b.events.top1[first]).all()
    assert a.signals.get("tta_loss") == b.signals.get("tta_loss")
    assert a.batch.tta_loss_before == b.batch.tta_loss_before

"""The replay loop: order of stages, no leakage, naive reference, reset vs continual."""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pytest
import torch

from models.base import SeqBatch
from streamsim.adapt import PolicySpec, random_reset_batches
from streamsim.drift import DetectorSpec
from streamsim.errors import ScenarioError
from streamsim.records import StepResult
from streamsim.replay import ReplayEngine, ReplaySpec, micro_batches
from streamsim.store import connect_memory, dataset_info, iter_events, read_events, write_dataset
from tests.support.toy import make_toy_model, store_toy, toy_events, waves

START = 150  # replay starts at this index


def run(  # type: ignore[no-untyped-def]
    con, model, policy: PolicySpec, spec: ReplaySpec, name: str = "toy", detectors=(), seed=0, **kw
):
    """The engine and every micro-batch's result of replaying `name` from START (`kw`: the
    engine's optional arguments, e.g. drift starts or the random resets)."""
    info = dataset_info(con, name)
    engine = ReplayEngine(
        model, policy, spec, detectors, n_users=info.n_users, n_items=info.n_items, seed=seed,
        **kw,
    )  # fmt: skip
    engine.warm_up(iter_events(con, name, stop_idx=START))
    batches = micro_batches(iter_events(con, name, start_idx=START), spec)
    return engine, [engine.step(eb) for eb in batches]


@pytest.fixture
def con():  # type: ignore[no-untyped-def]
    c = connect_memory()
    store_toy(c)
    return c


NONE = PolicySpec(name="none")
RESET = PolicySpec(name="reset", tta="reset", tta_lr=0.05)
CONTINUAL = PolicySpec(name="continual", tta="continual", tta_lr=0.05)


def ranks_of(results: list[StepResult]) -> np.ndarray:
    return np.concatenate([r.events.rank for r in results])


def test_micro_batches_are_consecutive_events_of_the_given_size(con) -> None:  # type: ignore[no-untyped-def]
    spec = ReplaySpec(batch_events=7)
    batches = list(micro_batches(iter_events(con, "toy", start_idx=START), spec))
    assert sum(len(b) for b in batches) == 400 - START
    assert all(len(b) == 7 for b in batches[:-1])
    idx = np.concatenate([b.idx for b in batches])
    assert (idx == np.arange(START, 400)).all()
    assert [b.batch_id for b in batches] == list(range(len(batches)))
    repeated = [b for b in batches if len(set(b.users.tolist())) < len(b)]
    assert repeated, "12 users in batches of 7: some batches hold a user twice"
    for b in repeated:  # waves: the k-th request of a user in the batch is in wave k
        for pos, user in enumerate(b.users.tolist()):
            assert b.waves[pos] == b.users[:pos].tolist().count(user)


def test_time_window_batches_stay_inside_their_window(con) -> None:  # type: ignore[no-untyped-def]
    spec = ReplaySpec(batch_window_s=7200, max_batch_events=50)
    for b in micro_batches(iter_events(con, "toy", start_idx=START), spec):
        assert b.ts[-1] - b.ts[0] < 7200


def naive_ranks(con, model, name: str = "toy") -> list[int]:  # type: ignore[no-untyped-def]
    """One event at a time, plain Python: history = every earlier event of the user."""
    events = read_events(con, name).to_pylist()
    info = dataset_info(con, name)
    out = []
    for e in events[START:]:
        past = [p for p in events[: e["idx"]] if p["user_id"] == e["user_id"]][-model.max_len :]
        known = {p["item_id"] for p in events[: e["idx"]]}
        items = torch.zeros(1, model.max_len, dtype=torch.int64)
        times = torch.zeros(1, model.max_len, dtype=torch.int64)
        for j, p in enumerate(past):
            items[0, j], times[0, j] = p["item_id"], p["ts"]
        batch = SeqBatch(items, times, torch.tensor([len(past)]), torch.tensor([e["ts"]]))
        with torch.no_grad():
            scores = model.score(batch)[0]
        target = scores[e["item_id"]] if e["item_id"] in known else float("-inf")
        catalogue = [i for i in range(1, info.n_items + 1) if i in known]
        higher = sum(1 for i in catalogue if scores[i] > target)
        ties = sum(1 for i in catalogue if scores[i] == target and i != e["item_id"])
        out.append(1 + higher + ties)
    return out


def test_batched_engine_equals_a_naive_per_event_loop_under_none(con) -> None:  # type: ignore[no-untyped-def]
    model = make_toy_model(20)
    expected = naive_ranks(con, model)
    for size in (1, 5, 64):
        _, results = run(con, copy.deepcopy(model), NONE, ReplaySpec(batch_events=size))
        assert ranks_of(results).tolist() == expected, f"batch_events={size}"


def test_items_new_inside_a_micro_batch_join_the_catalogue_of_later_requests() -> None:
    con = connect_memory()
    store_toy(con, "late", n_items=30, late_items=8)  # items 23..30 first appear at event 250
    model = make_toy_model(30)
    expected = naive_ranks(con, model, "late")
    for size in (1, 7, 64):
        _, results = run(con, copy.deepcopy(model), NONE, ReplaySpec(batch_events=size), "late")
        assert ranks_of(results).tolist() == expected, f"batch_events={size}"
        cold = np.concatenate([r.events.is_cold for r in results])
        assert cold.sum() == 8  # exactly each late item's first event, whatever the batch size


@pytest.mark.parametrize("policy", [NONE, RESET, CONTINUAL], ids=lambda p: p.name)
def test_poisoned_future_leaves_earlier_batches_unchanged(policy: PolicySpec) -> None:
    events, users, items = toy_events()
    clean = connect_memory()
    write_dataset(clean, "toy", events=events, users=users, items=items, source="t", format="t")
    spec = ReplaySpec(batch_events=16)
    _, reference = run(clean, make_toy_model(20), policy, spec)
    cut = 4  # poison everything after micro-batch `cut`
    last_idx = int(reference[cut].events.idx[-1])
    rng = np.random.default_rng(99)
    n = events.num_rows
    tail = slice(last_idx + 1, n)
    poisoned_items = events.column("item_id").to_numpy().copy()
    poisoned_users = events.column("user_id").to_numpy().copy()
    poisoned_ts = events.column("ts").to_numpy().copy()
    poisoned_items[tail] = rng.integers(1, 21, n - last_idx - 1)
    poisoned_users[tail] = rng.integers(0, 12, n - last_idx - 1)
    poisoned_ts[tail] = poisoned_ts[last_idx] + np.sort(rng.integers(0, 10**6, n - last_idx - 1))
    garbage = (
        events.set_column(1, "user_id", pa.array(poisoned_users))
        .set_column(2, "item_id", pa.array(poisoned_items))
        .set_column(3, "ts", pa.array(poisoned_ts))
    )
    dirty = connect_memory()
    write_dataset(dirty, "toy", events=garbage, users=users, items=items, source="t", format="t")
    _, poisoned = run(dirty, make_toy_model(20), policy, spec)
    for a, b in zip(reference[: cut + 1], poisoned[: cut + 1]):
        assert (a.events.rank == b.events.rank).all()
        assert a.batch.tta_loss_before == b.batch.tta_loss_before


def test_inputs_only_hold_events_before_their_request(con) -> None:  # type: ignore[no-untyped-def]
    """Scoring: every input event of a request is earlier than that request (sessions put a
    user twice in a batch: the second request sees the first, already scored). Adaptation: every
    input event is no later than the micro-batch's earliest request."""
    model = make_toy_model(20)
    original_score, original_tta = model.score, model.test_time_loss
    calls = {"score": 0, "tta": 0, "later_wave": 0}

    def score(batch: SeqBatch) -> torch.Tensor:
        assert batch.targets is None
        valid = batch.items > 0
        latest = torch.where(valid, batch.times, 0).max(dim=1).values
        assert (latest <= batch.request_times).all()
        calls["score"] += 1
        return original_score(batch)

    def tta(batch: SeqBatch) -> torch.Tensor:
        assert batch.targets is None
        valid = batch.items > 0
        if valid.any():
            assert int(batch.times[valid].max()) <= int(batch.request_times.min())
        calls["tta"] += 1
        return original_tta(batch)

    model.score = score  # type: ignore[method-assign]
    model.test_time_loss = tta  # type: ignore[method-assign]
    _, results = run(con, model, RESET, ReplaySpec(batch_events=32))
    assert calls["tta"] > 10
    n_waves = sum(int(waves(r).max()) + 1 for r in results)
    assert n_waves > len(results)  # several users have 2+ requests per batch
    # one scoring per wave, and one of the first wave's inputs before the step (its effects)
    assert calls["score"] == n_waves + len(results)


def test_reset_restores_every_parameter_bit_for_bit(con) -> None:  # type: ignore[no-untyped-def]
    model = make_toy_model(20)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    info = dataset_info(con, "toy")
    engine = ReplayEngine(
        model,
        RESET,
        ReplaySpec(batch_events=16),
        (),
        n_users=info.n_users,
        n_items=info.n_items,
        seed=0,
    )
    engine.warm_up(iter_events(con, "toy", stop_idx=START))
    n = 0
    for eb in micro_batches(iter_events(con, "toy", start_idx=START), ReplaySpec(batch_events=16)):
        result = engine.step(eb)
        n += 1
        assert result.batch.tta_loss_after is not None
        assert result.batch.tta_loss_before is not None
        assert result.batch.tta_loss_after < result.batch.tta_loss_before  # the step did something
        for k, v in model.state_dict().items():
            assert torch.equal(v, theta0[k]), f"{k} changed after batch {eb.batch_id}"
        assert all(p.grad is None for p in model.parameters())
        assert engine.adapter.tta_opt is not None
        assert not engine.adapter.tta_opt.state
        assert result.batch.param_distance == 0.0
    assert n > 5


def test_reset_scores_with_the_adapted_weights(con) -> None:  # type: ignore[no-untyped-def]
    """The restore comes after scoring: reset ranks differ from none, though every batch restarts
    from the pretrained weights (so they also differ from continual)."""
    _, reset = run(con, make_toy_model(20), RESET, ReplaySpec(batch_events=16))
    _, none = run(con, make_toy_model(20), NONE, ReplaySpec(batch_events=16))
    _, continual = run(con, make_toy_model(20), CONTINUAL, ReplaySpec(batch_events=16))
    assert not (ranks_of(reset) == ranks_of(none)).all()
    assert not (ranks_of(reset) == ranks_of(continual)).all()
    # the first batch starts from the same weights under both adaptive policies
    assert (reset[0].events.rank == continual[0].events.rank).all()


def test_continual_carries_the_adaptation_forward(con) -> None:  # type: ignore[no-untyped-def]
    model = make_toy_model(20)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    _, results = run(con, model, CONTINUAL, ReplaySpec(batch_events=16))
    distances = [r.batch.param_distance for r in results]
    assert distances[0] > 0
    assert distances[-1] > distances[0]
    assert any(not torch.equal(v, theta0[k]) for k, v in model.state_dict().items())
    _, none_results = run(con, make_toy_model(20), NONE, ReplaySpec(batch_events=16))
    assert not (ranks_of(results) == ranks_of(none_results)).all()


def test_online_update_learns_from_revealed_events_only_after_scoring(con) -> None:  # type: ignore[no-untyped-def]
    online = PolicySpec(name="online", online=True, online_lr=0.05)
    _, learned = run(con, make_toy_model(20), online, ReplaySpec(batch_events=16))
    _, frozen = run(con, make_toy_model(20), NONE, ReplaySpec(batch_events=16))
    # the first batch is scored before any update
    assert (learned[0].events.rank == frozen[0].events.rank).all()
    assert learned[-1].batch.param_distance > 0
    assert sum(r.batch.backward_passes for r in learned) == len(learned)


def test_same_seed_gives_identical_results(con) -> None:  # type: ignore[no-untyped-def]
    online = PolicySpec(name="both", tta="continual", tta_lr=0.05, online=True)
    params = (("alpha", 0.3), ("window_size", 40), ("stat_size", 10))
    kswin = (DetectorSpec(name="kswin", signal="rr10", params=params),)
    spec = ReplaySpec(batch_events=16)
    a = run(con, make_toy_model(20), online, spec, detectors=kswin)[1]
    b = run(con, make_toy_model(20), online, spec, detectors=kswin)[1]
    assert (ranks_of(a) == ranks_of(b)).all()
    alarms_a = [al for r in a for al in r.alarms]
    assert alarms_a, "KSWIN at alpha 0.3 fires on this noisy stream"
    assert alarms_a == [al for r in b for al in r.alarms]  # KSWIN samples: seeded by the run


def test_detectors_report_alarms_at_replay_positions(con) -> None:  # type: ignore[no-untyped-def]
    detectors = (
        DetectorSpec(
            name="page_hinkley", signal="rr10", params=(("threshold", 0.5), ("min_instances", 5))
        ),
        DetectorSpec(name="ddm", signal="miss10", params=(("warm_start", 5),)),
        DetectorSpec(name="adwin", signal="tta_loss"),
    )
    _, results = run(con, make_toy_model(20), NONE, ReplaySpec(batch_events=8), detectors=detectors)
    alarms = [a for r in results for a in r.alarms]
    assert alarms, "a low PageHinkley threshold must fire on this noisy stream"
    for name, signal, idx, ts in alarms:
        assert START <= idx < 400
        assert name in ("page_hinkley", "ddm", "adwin")
        assert signal in ("rr10", "miss10", "tta_loss")
        assert isinstance(ts, int)


def test_periodic_reset_restores_theta0_every_n_batches(con) -> None:  # type: ignore[no-untyped-def]
    periodic = PolicySpec(name="periodic", tta="continual", tta_lr=0.05, reset_every=3)
    _, results = run(con, make_toy_model(20), periodic, ReplaySpec(batch_events=16))
    _, reset = run(con, make_toy_model(20), RESET, ReplaySpec(batch_events=16))
    assert len(results) > 7
    for r in results:
        after_reset = (r.batch.batch_id + 1) % 3 == 0
        assert r.batch.tta_reset == after_reset
        assert (r.batch.param_distance == 0.0) == after_reset, r.batch.batch_id
    # a batch right after a reset starts from θ₀ with a fresh optimizer: as under `reset`
    for k in (0, 3, 6):
        assert (results[k].events.rank == reset[k].events.rank).all()
    assert not (results[2].events.rank == reset[2].events.rank).all()  # two carried steps differ


def test_random_resets_restore_theta0_after_exactly_the_drawn_batches(con) -> None:  # type: ignore[no-untyped-def]
    policy = PolicySpec(name="random", tta="continual", tta_lr=0.05, reset_random=4)
    spec = ReplaySpec(batch_events=16)
    n_batches = len(list(micro_batches(iter_events(con, "toy", start_idx=START), spec)))
    drawn = random_reset_batches(policy, n_batches=n_batches, seed=7)
    assert len(drawn) == 4
    assert max(drawn) < n_batches - 1  # never after the last batch
    assert drawn == random_reset_batches(policy, n_batches=n_batches, seed=7)  # owned stream
    others = {random_reset_batches(policy, n_batches=n_batches, seed=s) for s in range(8)}
    assert len(others) > 1, "the draw depends on the seed"
    _, results = run(con, make_toy_model(20), policy, spec, seed=7, reset_batches=drawn)
    assert {r.batch.batch_id for r in results if r.batch.tta_reset} == drawn
    for r in results:
        assert (r.batch.param_distance == 0.0) == (r.batch.batch_id in drawn), r.batch.batch_id
    with pytest.raises(ScenarioError, match=r"'reset_random': expected at most 3 resets"):
        random_reset_batches(policy, n_batches=4, seed=7)
    assert random_reset_batches(CONTINUAL, n_batches=n_batches, seed=7) == frozenset()


def test_anchor_pulls_towards_theta0_and_one_is_plain_continual(con) -> None:  # type: ignore[no-untyped-def]
    spec = ReplaySpec(batch_events=16)
    _, plain = run(con, make_toy_model(20), CONTINUAL, spec)
    one = PolicySpec(name="a1", tta="continual", tta_lr=0.05, anchor=1.0)
    _, same = run(con, make_toy_model(20), one, spec)
    assert (ranks_of(same) == ranks_of(plain)).all()
    assert [r.batch.param_distance for r in same] == [r.batch.param_distance for r in plain]
    half = PolicySpec(name="a.5", tta="continual", tta_lr=0.05, anchor=0.5)
    _, pulled = run(con, make_toy_model(20), half, spec)
    assert 0 < pulled[-1].batch.param_distance < plain[-1].batch.param_distance
    assert not any(r.batch.tta_reset for r in pulled)


def test_drift_triggered_reset_restores_theta0_after_an_alarm(con) -> None:  # type: ignore[no-untyped-def]
    detector = DetectorSpec(
        name="page_hinkley", signal="rr10", params=(("threshold", 0.5), ("min_instances", 5))
    )
    policy = PolicySpec(
        name="drift-reset", tta="continual", tta_lr=0.05, reset_on_alarm="page_hinkley:rr10"
    )
    _, results = run(
        con, make_toy_model(20), policy, ReplaySpec(batch_events=8), detectors=(detector,)
    )
    fired = [r for r in results if r.alarms]
    assert fired, "a low PageHinkley threshold must fire on this noisy stream"
    for r in results:
        assert r.batch.tta_reset == bool(r.alarms)
        if r.alarms:
            assert r.batch.param_distance == 0.0
    quiet = [r for r in results if not r.alarms and r.batch.batch_id > 0]
    assert any(r.batch.param_distance > 0 for r in quiet)


def test_oracle_reset_restores_theta0_in_batches_holding_a_drift_start(con) -> None:  # type: ignore[no-untyped-def]
    info = dataset_info(con, "toy")
    policy = PolicySpec(name="oracle", tta="continual", tta_lr=0.05, reset_at_drifts=True)
    spec = ReplaySpec(batch_events=16)
    starts = (START + 20, START + 70, START + 71)
    engine = ReplayEngine(
        make_toy_model(20), policy, spec, (), n_users=info.n_users, n_items=info.n_items,
        seed=0, drift_starts=starts,
    )  # fmt: skip
    engine.warm_up(iter_events(con, "toy", stop_idx=START))
    batches = micro_batches(iter_events(con, "toy", start_idx=START), spec)
    results = [engine.step(eb) for eb in batches]
    _, reset = run(con, make_toy_model(20), RESET, spec)
    hit = [r.batch.batch_id for r in results if r.batch.tta_reset]
    assert hit == [1, 4]  # [166, 181] holds 170; [214, 229] holds 220 and 221
    # such a batch starts from θ₀ with a fresh optimizer, as under reset
    for k in hit:
        assert (results[k].events.rank == reset[k].events.rank).all()
    assert not (results[3].events.rank == reset[3].events.rank).all()


def test_entropy10_is_a_per_event_label_free_signal(con, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Detectors on `entropy10` get one value per scored event: the request's top-10 score
    entropy over ln 10, in [0, 1], computed before any target is revealed."""
    import streamsim.replay as replay_module

    fed: list[list[float]] = []
    real_feed = replay_module.feed

    def spy(watch, values, positions):  # type: ignore[no-untyped-def]
        if watch.spec.signal == "entropy10":
            fed.append(list(values))
        return real_feed(watch, values, positions)

    monkeypatch.setattr(replay_module, "feed", spy)
    detector = DetectorSpec(name="adwin", signal="entropy10")
    _, results = run(
        con, make_toy_model(20), NONE, ReplaySpec(batch_events=16), detectors=(detector,)
    )
    assert [len(v) for v in fed] == [len(r) for r in results]
    values = np.concatenate([np.asarray(v) for v in fed])
    assert ((values >= 0) & (values <= 1)).all()
    means = np.array([np.mean(v) for v in fed]) * np.log(10)
    assert means == pytest.approx(np.array([r.signals.get("topk_entropy") for r in results]))


@pytest.mark.parametrize("how", ["nan_loss", "nan_grad"])
def test_non_finite_steps_are_skipped_not_taken(con, monkeypatch, how: str) -> None:  # type: ignore[no-untyped-def]
    """A diverged test-time loss (or gradient) must not write NaN into the weights."""
    model = make_toy_model(20)
    first = next(iter(model.parameters()))

    def broken(batch):  # type: ignore[no-untyped-def]
        if how == "nan_loss":
            return first.sum() * float("nan")
        return (first.abs() ** 0.5).sum() * 0.0  # finite (0) but d/dx sqrt|x| at 0 is inf

    with torch.no_grad():
        first.zero_()
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    monkeypatch.setattr(model, "test_time_loss", broken)
    policy = PolicySpec(name="c", tta="continual", tta_lr=0.05, tta_steps=2)
    _, results = run(con, model, policy, ReplaySpec(batch_events=16))
    for r in results:
        assert r.batch.tta_skipped_steps == 2
        assert r.batch.backward_passes == (0 if how == "nan_loss" else 2)
    for k, v in model.state_dict().items():
        assert torch.equal(v, theta0[k]), k


@pytest.mark.parametrize(
    "policy",
    [
        PolicySpec(name="periodic", tta="continual", tta_lr=0.05, reset_every=3),
        PolicySpec(name="anchored", tta="continual", tta_lr=0.05, anchor=0.9),
    ],
    ids=["periodic", "anchored"],
)
def test_continual_modifiers_resume_identically(con, policy: PolicySpec) -> None:  # type: ignore[no-untyped-def]
    """State saved after batch 4 and loaded into a fresh engine continues exactly as before."""
    spec = ReplaySpec(batch_events=16)
    info = dataset_info(con, "toy")

    def engine() -> ReplayEngine:
        e = ReplayEngine(
            make_toy_model(20), policy, spec, (), n_users=info.n_users, n_items=info.n_items,
            seed=0,
        )  # fmt: skip
        e.warm_up(iter_events(con, "toy", stop_idx=START))
        return e

    whole = engine()
    straight = [
        whole.step(eb) for eb in micro_batches(iter_events(con, "toy", start_idx=START), spec)
    ]
    first = engine()
    batches = list(micro_batches(iter_events(con, "toy", start_idx=START), spec))
    for eb in batches[:5]:
        first.step(eb)
    second = engine()
    second.load_state(copy.deepcopy(first.state()))
    resumed = [second.step(eb) for eb in batches[5:]]
    assert [r.batch.tta_reset for r in resumed] == [r.batch.tta_reset for r in straight[5:]]
    assert (ranks_of(resumed) == ranks_of(straight[5:])).all()
    distances = [r.batch.param_distance for r in straight[5:]]
    assert [r.batch.param_distance for r in resumed] == distances


@pytest.mark.parametrize("name", ["popularity", "transition"])
def test_a_count_model_warmed_up_in_one_call_ranks_as_event_by_event(con, name: str) -> None:  # type: ignore[no-untyped-def]
    """Popularity reads no history, so its warm-up reveals a whole record batch at once; the
    reference reveals run by run (as a model that reads histories must). Same ranks."""
    import models

    spec = ReplaySpec(batch_events=16, probe_events=0)

    def build() -> object:
        return models.create(name, n_items=20, config={"max_len": 8})

    fast = build()
    _, got = run(con, fast, NONE, spec)
    slow = build()
    slow.observes_histories = True  # type: ignore[attr-defined]
    _, expected = run(con, slow, NONE, spec)
    assert (ranks_of(got) == ranks_of(expected)).all()
    assert type(fast).observes_histories == (name == "transition")  # type: ignore[attr-defined]

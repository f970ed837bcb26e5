"""The test-time step rules (model, placebo, entropy, selfsup, oracle) and the step size recorded
next to every adaptation result: sizes match where they must, reset restores bit for bit, no
arm reads a later event, and a null step is told apart from no step."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
import torch

from models.base import SeqBatch
from streamsim.adapt import Adapter, PolicySpec, next_item_inputs
from streamsim.errors import ModelError, ScenarioError
from streamsim.records import StepResult
from streamsim.replay import ReplayEngine, ReplaySpec, micro_batches
from streamsim.store import connect_memory, dataset_info, iter_events, write_dataset
from tests.support.toy import make_toy_model, store_toy, toy_events

START = 150
RULES = ("model", "placebo", "entropy", "selfsup", "oracle")


def policy(rule: str, tta: str = "reset", lr: float = 0.05) -> PolicySpec:
    return PolicySpec(name=f"{tta}-{rule}", tta=tta, tta_lr=lr, tta_step=rule)  # type: ignore[arg-type]


def run(con, model, pol: PolicySpec, spec: ReplaySpec | None = None) -> list[StepResult]:  # type: ignore[no-untyped-def]
    info = dataset_info(con, "toy")
    engine = ReplayEngine(
        model, pol, spec or ReplaySpec(batch_events=16), (), n_users=info.n_users,
        n_items=info.n_items, seed=0,
    )  # fmt: skip
    engine.warm_up(iter_events(con, "toy", stop_idx=START))
    batches = micro_batches(iter_events(con, "toy", start_idx=START), engine.spec)
    return [engine.step(eb) for eb in batches]


@pytest.fixture
def con():  # type: ignore[no-untyped-def]
    c = connect_memory()
    store_toy(c)
    return c


def test_placebo_moves_the_weights_exactly_as_far_as_the_model_step(con) -> None:  # type: ignore[no-untyped-def]
    """Under reset every batch starts from θ₀, so the model step and its placebo are sized by
    the same gradient: per batch the same ||Δθ||, a different direction."""
    model_steps = run(con, make_toy_model(20), policy("model"))
    placebo = run(con, make_toy_model(20), policy("placebo"))
    a = [r.batch.tta_step_norm for r in model_steps]
    b = [r.batch.tta_step_norm for r in placebo]
    assert all(x is not None and x > 0 for x in a)
    assert b == pytest.approx(a, rel=1e-9)
    assert [r.batch.tta_step_rel for r in placebo] == pytest.approx(
        [r.batch.tta_step_rel for r in model_steps], rel=1e-9
    )
    ranks_model = np.concatenate([r.events.rank for r in model_steps])
    ranks_placebo = np.concatenate([r.events.rank for r in placebo])
    assert not (ranks_model == ranks_placebo).all()  # same size, another direction
    # and the placebo's directions are owned: the same run again is the same run
    again = run(con, make_toy_model(20), policy("placebo"))
    assert (np.concatenate([r.events.rank for r in again]) == ranks_placebo).all()


@pytest.mark.parametrize("rule", RULES)
def test_reset_restores_every_parameter_bit_for_bit(con, rule: str) -> None:  # type: ignore[no-untyped-def]
    model = make_toy_model(20)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    results = run(con, model, policy(rule))
    assert any((r.batch.tta_step_norm or 0.0) > 0 for r in results), "the step moved nothing"
    for k, v in model.state_dict().items():
        assert torch.equal(v, theta0[k]), k
    assert all(r.batch.param_distance == 0.0 for r in results)


@pytest.mark.parametrize("rule", RULES)
def test_continual_carries_every_rule_forward(con, rule: str) -> None:  # type: ignore[no-untyped-def]
    results = run(con, make_toy_model(20), policy(rule, tta="continual"))
    assert results[-1].batch.param_distance > 0


@pytest.mark.parametrize("rule", RULES)
def test_no_arm_reads_a_later_event(rule: str) -> None:
    """Poison every event after micro-batch `cut`: batches up to `cut` are unchanged, for every
    step rule (the oracle reads its own batch's targets before scoring them, never a later
    batch's)."""
    events, users, items = toy_events()
    clean = connect_memory()
    write_dataset(clean, "toy", events=events, users=users, items=items, source="t", format="t")
    reference = run(clean, make_toy_model(20), policy(rule, tta="continual"))
    cut = 4
    last = int(reference[cut].events.idx[-1])
    rng = np.random.default_rng(7)
    n = events.num_rows
    poisoned = events.column("item_id").to_numpy().copy()
    poisoned[last + 1 :] = rng.integers(1, 21, n - last - 1)
    dirty = connect_memory()
    garbage = events.set_column(2, "item_id", pa.array(poisoned))
    write_dataset(dirty, "toy", events=garbage, users=users, items=items, source="t", format="t")
    result = run(dirty, make_toy_model(20), policy(rule, tta="continual"))
    for a, b in zip(reference[: cut + 1], result[: cut + 1]):
        assert (a.events.rank == b.events.rank).all()
        assert a.batch.tta_loss_before == b.batch.tta_loss_before
        assert a.batch.tta_step_norm == b.batch.tta_step_norm


def test_only_the_oracle_is_given_targets_and_it_is_diagnostic() -> None:
    model = make_toy_model(20)
    batch = SeqBatch(
        items=torch.tensor([[3, 4, 0]]), times=torch.tensor([[10, 20, 0]]),
        lengths=torch.tensor([2]), request_times=torch.tensor([30]),
    )  # fmt: skip
    with pytest.raises(ValueError, match="only it, takes the batch's targets"):  # noqa: SIM117
        with Adapter(model, policy("model")).adapted(batch, targets=torch.tensor([5])):
            pass
    oracle = policy("oracle")
    assert oracle.diagnostic
    assert not policy("selfsup").diagnostic
    with pytest.raises(ValueError, match="got targets not given"):  # noqa: SIM117
        with Adapter(model, oracle).adapted(batch):
            pass


def test_selfsup_predicts_each_history_from_itself() -> None:
    batch = SeqBatch(
        items=torch.tensor([[3, 4, 5], [7, 0, 0], [8, 9, 0]]),
        times=torch.tensor([[10, 20, 30], [15, 0, 0], [11, 12, 0]]),
        lengths=torch.tensor([3, 1, 2]),
        request_times=torch.tensor([40, 40, 40]),
    )
    shifted = next_item_inputs(batch)
    assert shifted is not None
    assert shifted.targets is not None
    assert shifted.targets.tolist() == [5, 9]  # each history's last item; the 1-event one skipped
    assert shifted.items.tolist() == [[3, 4, 0], [8, 0, 0]]
    assert shifted.lengths.tolist() == [2, 1]
    assert shifted.request_times.tolist() == [30, 12]  # the time of the predicted event
    assert int(shifted.times.max()) <= 20
    single = SeqBatch(
        items=torch.tensor([[7, 0]]), times=torch.tensor([[1, 0]]), lengths=torch.tensor([1]),
        request_times=torch.tensor([2]),
    )  # fmt: skip
    assert next_item_inputs(single) is None


def test_a_null_step_is_told_apart_from_no_step(con) -> None:  # type: ignore[no-untyped-def]
    none = run(con, make_toy_model(20), PolicySpec(name="none"))
    assert all(r.batch.tta_step_norm is None for r in none)
    assert all(r.batch.tta_top10_changed is None for r in none)
    tiny = run(con, make_toy_model(20), policy("model", lr=1e-12))
    assert all(r.batch.tta_step_norm is not None for r in tiny)
    assert all(r.batch.tta_step_rel is not None and r.batch.tta_step_rel < 1e-9 for r in tiny)
    assert sum(r.batch.tta_hit10_flips or 0 for r in tiny) == 0
    big = run(con, make_toy_model(20), policy("model", lr=5.0))
    assert max(r.batch.tta_top10_changed or 0.0 for r in big) > 0.0
    assert max(r.batch.tta_rank_changed or 0.0 for r in big) > 0.0
    unmeasured = ReplaySpec(batch_events=16, step_effects=False)
    off = run(con, make_toy_model(20), policy("model"), unmeasured)
    assert all(r.batch.tta_step_norm is not None for r in off)  # the size is always known
    assert all(r.batch.tta_top10_changed is None for r in off)  # the effects were not measured


def test_step_rules_are_checked_against_the_model_and_the_policy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from streamsim import scenario
    from tests.support.tiny import build_tiny

    sasrec = build_tiny("sasrec", n_items=20, max_len=5)
    with pytest.raises(ModelError, match="model-agnostic tta_step"):
        Adapter(sasrec, policy("placebo"))
    Adapter(sasrec, policy("entropy"))  # label-free and model-agnostic: any trainable model
    Adapter(sasrec, policy("selfsup"))
    path = tmp_path / "s.toml"
    path.write_text(
        '[data]\ndataset = "d"\n[[adaptation.policies]]\nname = "p"\ntta_step = "entropy"\n'
    )
    with pytest.raises(ScenarioError, match="'entropy' is a test-time step; expected tta"):
        scenario.load(path)


@pytest.mark.parametrize("rule", ["entropy", "selfsup"])
def test_a_placebo_can_copy_the_size_of_any_label_free_step(con, rule: str) -> None:  # type: ignore[no-untyped-def]
    """`placebo_of` sizes the random step by another rule's gradient: per batch under reset the
    same ||Δθ|| as that rule's step, another direction; "auto" gives it that rule's rate."""
    steps = run(con, make_toy_model(20), policy(rule))
    placebo = run(con, make_toy_model(20), replace(policy("placebo"), placebo_of=rule))  # type: ignore[arg-type]
    a = [r.batch.tta_step_norm for r in steps]
    assert all(x is not None and x > 0 for x in a)
    assert [r.batch.tta_step_norm for r in placebo] == pytest.approx(a, rel=1e-9)
    ranks = np.concatenate([r.events.rank for r in steps])
    assert not (np.concatenate([r.events.rank for r in placebo]) == ranks).all()
    from tests.support.tiny import build_tiny

    Adapter(
        build_tiny("sasrec", n_items=20, max_len=5), replace(policy("placebo"), placebo_of=rule)
    )  # type: ignore[arg-type]


def test_placebo_of_is_refused_on_other_steps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from streamsim import scenario

    path = tmp_path / "s.toml"
    path.write_text(
        '[data]\ndataset = "d"\n[[adaptation.policies]]\nname = "p"\ntta = "reset"\n'
        'tta_step = "entropy"\nplacebo_of = "selfsup"\n'
    )
    with pytest.raises(ScenarioError, match="key 'placebo_of': sizes the placebo step"):
        scenario.load(path)


@pytest.mark.parametrize(
    ("name", "rule"),
    [("ttt4rec", "entropy"), ("ttt4rec", "model"), ("t2arec", "model"), ("sasrec", "selfsup")],
)
def test_a_step_on_the_test_time_parameters_only_equals_the_full_backward_step(
    name: str, rule: str
) -> None:
    """The adapter asks autograd for the test-time parameters' gradients only (skipping, e.g.,
    the item table's gradient through full-catalogue scores); the reference takes the plain
    `loss.backward()` over every parameter and the same SGD step."""
    from tests.support.tiny import build_tiny, random_seq_batch

    model = build_tiny(name, n_items=30, max_len=8, seed=1)
    if not model.has_test_time_loss and rule == "model":
        pytest.skip(f"{name} has no test-time loss")
    batch = random_seq_batch(30, 8, (8, 5, 3, 1, 6), seed=2).without_targets()
    reference = build_tiny(name, n_items=30, max_len=8, seed=1)
    pol = policy(rule, tta="continual", lr=0.5)
    adapter = Adapter(model, pol)
    with adapter.adapted(batch):
        pass
    ref = Adapter(reference, pol)  # its loss, its parameters; the step by hand
    loss = ref._loss(batch, None, None)
    loss.backward()
    with torch.no_grad():
        for p in ref.tta_params:
            if p.grad is not None:
                p -= 0.5 * p.grad
    fast = dict(model.named_parameters())
    moved = 0
    for key, p in reference.named_parameters():
        assert torch.equal(fast[key], p), key
        moved += int(not torch.equal(p, dict(build_tiny(name, n_items=30, max_len=8, seed=1)
                                                  .named_parameters())[key]))  # fmt: skip
    assert moved > 0, "the step moved something"

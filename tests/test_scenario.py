"""Scenario loader: every shipped file loads; bad files give file + key path messages; CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamsim import scenario
from streamsim.cli import app
from streamsim.drift import SIGNAL_NAMES
from streamsim.errors import ScenarioError
from streamsim.splits import SplitSpec
from streamsim.train import TrainSpec

SHIPPED = [
    "weekend-shift", "sudden-shift", "gradual-drift", "recurring-shift", "new-items", "no-drift",
    "ml-100k-stream", "beauty-stream",
]  # fmt: skip

GOOD = """
name = "x"
description = "a test scenario"
[data]
dataset = "d"
"""


def test_every_shipped_scenario_loads() -> None:
    names = [n for n, _ in scenario.list_bundled()]
    assert set(SHIPPED) <= set(names)
    for name in SHIPPED:
        sc = scenario.load(name)
        assert sc.name == name
        assert [p.tta for p in sc.policies][:3] == ["none", "reset", "continual"]
        assert sc.split.valid_start < sc.split.replay_start
        assert {d.signal for d in sc.detectors} <= set(SIGNAL_NAMES)
        assert len(sc.content_hash) == 64
    ws = scenario.load("weekend-shift")
    assert ws.model.name == "t2arec"
    assert ws.policies[3].placebo_of == "entropy"  # the control is the entropy step's size
    assert [(p.name, p.tta, p.tta_step, p.tta_lr, p.online) for p in ws.policies][1:] == [
        ("reset-entropy", "reset", "entropy", "auto", False),
        ("continual-entropy", "continual", "entropy", "auto", False),
        ("reset-placebo", "reset", "placebo", "auto", False),
        ("online", "none", "model", 0.005, True),
    ]
    # small enough for the README's main job on 2 cores (timed in docs/performance.md): at most
    # 40 epochs (early stopping) over the pretraining part of <= 40k synthetic events
    assert ws.train.epochs <= 40
    synth_cfg = ws.data.synthetic
    assert synth_cfg is not None
    assert synth_cfg.n_users * synth_cfg.events_per_user <= 40_000
    assert ws.replay.batch_events == 256
    assert ws.data.synthetic is not None
    assert ws.data.synthetic.drifts[0].kind == "recurring"
    assert "streamsim ingest" in scenario.load("ml-100k-stream").data.hint


def test_the_tta_sweep_is_weekend_shift_with_other_policies() -> None:
    ws, sweep = scenario.load("weekend-shift"), scenario.load("weekend-shift-tta-sweep")
    # same data, split, model, training and seed: the pretrained checkpoint is shared
    assert (sweep.data, sweep.split, sweep.model, sweep.train, sweep.seed) == (
        ws.data, ws.split, ws.model, ws.train, ws.seed,
    )  # fmt: skip
    assert sweep.policies[0].tta == "none"
    lrs = sorted({p.tta_lr for p in sweep.policies[1:]})
    assert lrs == [0.05, 0.5, 5.0]
    assert {p.tta for p in sweep.policies[1:]} == {"reset", "continual"}
    assert max(p.tta_steps for p in sweep.policies) == 5


def test_defaults_and_overrides(tmp_path: Path) -> None:
    p = tmp_path / "x.toml"
    p.write_text(GOOD)
    sc = scenario.load(p)
    assert sc.split == SplitSpec()
    assert sc.train == TrainSpec()
    assert sc.policies == scenario.DEFAULT_POLICIES
    over = scenario.load(p, {"model.name": "mamba4rec", "seed": 3, "policies": ["none"]})
    assert over.model.name == "mamba4rec"
    assert over.seed == 3
    assert [q.name for q in over.policies] == ["none"]
    assert over.content_hash != sc.content_hash
    assert scenario.load(p).content_hash == sc.content_hash
    with pytest.raises(ScenarioError, match=r"\[replay\] key 'batch_events'.*expected an integer"):
        scenario.load(p, {"replay.batch_events": "many"})
    with pytest.raises(ScenarioError, match="--policy 'bogus' is not a policy"):
        scenario.load(p, {"policies": ["bogus"]})
    # the whole scenario is checked when it is loaded, before anything is written: a model that
    # cannot run one of the policies is refused with the policy named
    with pytest.raises(ScenarioError, match=r"policy 'reset'.*'sasrec' has no test-time loss"):
        scenario.load(p, {"model.name": "sasrec"})
    with pytest.raises(ScenarioError, match=r"\[model\]: unknown model 'nope'"):
        scenario.load(p, {"model.name": "nope"})
    with pytest.raises(ScenarioError, match=r"\[model\]: .*'d_modell'"):
        scenario.load(p, {"model.config.d_modell": 3})
    online_only = {"adaptation.policies": [{"name": "online", "online": True}]}
    with pytest.raises(ScenarioError, match=r"policy 'online'.*no trainable parameters"):
        scenario.load(p, {"model.name": "popularity", **online_only})
    d = scenario.to_dict(sc)
    assert d["train"]["epochs"] == 20
    assert d["replay"]["batch_events"] == 256
    json.dumps(d)


BAD = [
    (
        "[replay]\nbatchsize = 3\n",
        r"x\.toml: \[replay\] unknown key 'batchsize'; expected one of \[",
    ),
    ("bogus = 1\n", r"x\.toml: \[data\] unknown key 'bogus'"),
    ("[train]\nepochs = 'ten'\n", r"\[train\] key 'epochs': expected an integer; got 'ten'"),
    ("[train]\nepochs = -1\n", r"\[train\] key 'epochs': expected a value > 0"),
    ("[replay]\nbatch_events = 0\n", r"\[replay\] key 'batch_events': expected a value > 0"),
    ("[replay]\nprobe_events = -1\n", r"\[replay\] key 'probe_events': expected a value >= 0"),
    ("[replay]\nprobe_every = 0.0\n", r"\[replay\] key 'probe_every': expected a fraction"),
    ("[replay]\nprobe_every = 2\n", r"'probe_every'.*\(0, 1\], got 2"),
    ("[split]\nvalid_start = 0.8\nreplay_start = 0.7\n", r"replay_start \(0\.7\) < valid_start"),
    ("[split]\nreplay_start = 0.7\nreplay_end = 0.7\n", r"empty replay window"),
    ("[split]\nreplay_start = 1.5\n", r"a fraction must be <= 1"),
    ("[[adaptation.policies]]\nname='a'\n[[adaptation.policies]]\nname='a'\n", "duplicate policy"),
    ("[[adaptation.policies]]\nname='a'\ntta='sometimes'\n", r"key 'tta': expected one of"),
    (
        "[[adaptation.policies]]\nname='a'\n[adaptation.policies.sample_filter]\nk=10\n",
        r"policies\]\]\[0\]\.sample_filter: a sample filter needs test-time adaptation",
    ),
    (
        "[[adaptation.policies]]\nname='a'\ntta='reset'\n[adaptation.policies.sample_filter]\n"
        "kk=10\n",
        r"sample_filter unknown key 'kk'; expected one of \['k', 'e0_quantile'",
    ),
    (
        "[[adaptation.policies]]\nname='a'\ntta='reset'\n[adaptation.policies.sample_filter]\n"
        "e0_quantile=1.5\n",
        r"sample_filter key 'e0_quantile': expected 0\.\.1; got 1\.5",
    ),
    ("[[detectors]]\nname='ddm'\nsignal='rr10'\n", r"\[\[detectors\]\]\[0\].*cannot watch 'rr10'"),
    (
        "[[detectors]]\nname='adwin'\nsignal='rr10'\n[detectors.params]\ndeltaa = 0.1\n",
        r"\[\[detectors\]\]\[0\]: detector 'adwin': bad parameters",
    ),
    (
        "[replay]\nlabel_free_signals = false\n[[detectors]]\nname='adwin'\nsignal='tta_loss'\n",
        r"signal 'tta_loss' needs \[replay\] label_free_signals = true",
    ),
    ("[[detectors]]\nname='adwinn'\nsignal='rr10'\n", "unknown detector 'adwinn'"),
    ("[[detectors]]\nname='adwin'\nsignal='hr'\n", "unknown signal 'hr'"),
    ("[segments]\ncalendar=['month']\n", "unknown 'month'"),
    ("[data.synthetic]\nn_users = -5\n", r"\[data.synthetic\] key 'n_users': expected a value > 0"),
    (
        "[data.synthetic]\nduration_days = 10\n[[data.synthetic.drifts]]\nkind='sudden'\n"
        "start_day=20.0\n",
        "after the end of the stream",
    ),
    (
        "[data.synthetic]\n[[data.synthetic.drifts]]\nkind='sudden'\n[[data.synthetic.drifts]]\n"
        "kind='gradual'\n",
        r"x\.toml: \[data\.synthetic\.drifts\]: the generator makes one drift per stream; got 2",
    ),
    ("[data.synthetic]\nweekday_share = 1.2\n", r"key 'weekday_share': expected a share in 0\.\.1"),
    ("[data.synthetic]\nstart_date = 'Jan 1st'\n", r"key 'start_date': expected an ISO date"),
    ("[data.synthetic]\nsession_mean_events = 0.5\n", r"'session_mean_events': expected >= 1"),
    (
        "[data.synthetic]\nnew_items_days = [60.0]\nnew_items_count = 5\n",
        r"key 'new_items_days': expected days in \[0, 56\); got 60\.0",
    ),
    ("[data.synthetic]\nnew_items_count = -5\n", r"key 'new_items_count': expected a value >= 0"),
    (
        "[data.synthetic]\nduration_days = 10\n[[data.synthetic.drifts]]\nkind='sharp'\n",
        r"drifts\[0\]\] key 'kind': expected one of",
    ),
    (
        "[data.synthetic]\nstart_date='2024-01-01'\nduration_days=10\n[split]\nby='time'\n"
        "valid_start=1704067200.0\nreplay_start=1900000000.0\n",
        "is after the last event",
    ),
    (
        "[[adaptation.policies]]\nname='p'\ntta='reset'\nreset_every=4\n",
        r"\[\[adaptation.policies\]\]\[0\] key 'reset_every': modifies continual.*"
        r"got tta = 'reset'",
    ),
    (
        "[[adaptation.policies]]\nname='p'\ntta='continual'\nonline=true\nanchor=0.9\n",
        r"key 'anchor': modifies continual.*got tta = 'continual', online = true",
    ),
    (
        "[[adaptation.policies]]\nname='p'\ntta='none'\nreset_at_drifts=true\n",
        r"key 'reset_at_drifts': modifies continual.*got tta = 'none'",
    ),
    (
        "[[adaptation.policies]]\nname='p'\ntta='continual'\nanchor=0.0\n",
        r"key 'anchor': expected a weight in \(0, 1\], got 0.0",
    ),
    (
        "[[adaptation.policies]]\nname='p'\ntta='continual'\nreset_every=0\n",
        r"key 'reset_every': expected a value > 0",
    ),
    (
        "[[adaptation.policies]]\nname='p'\ntta='reset'\nreset_random=3\n",
        r"key 'reset_random': modifies continual.*got tta = 'reset'",
    ),
    (
        "[[adaptation.policies]]\nname='p'\ntta='continual'\nreset_random=-1\n",
        r"key 'reset_random': expected a value >= 0",
    ),
    (
        "[[adaptation.policies]]\nname='p'\ntta='continual'\nreset_on_alarm='adwin:rr10'\n"
        "[[detectors]]\nname='adwin'\nsignal='ndcg10'\n",
        r"key 'reset_on_alarm': no detector 'adwin:rr10'; expected 'name:signal'.*"
        r"\['adwin:ndcg10'\]",
    ),
]


@pytest.mark.parametrize(("extra", "message"), BAD)
def test_bad_files(tmp_path: Path, extra: str, message: str) -> None:
    p = tmp_path / "x.toml"
    p.write_text(GOOD + extra)
    with pytest.raises(ScenarioError, match=message):
        scenario.load(p)


def test_missing_and_invalid(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="unknown scenario 'nope'"):
        scenario.load("nope")
    p = tmp_path / "y.toml"
    p.write_text("name = \n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        scenario.load(p)
    p.write_text("name = 'y'\nbogus = 2\n" + GOOD.replace('name = "x"', ""))
    with pytest.raises(ScenarioError, match=r"y\.toml: unknown key 'bogus'; expected one of"):
        scenario.load(p)
    p.write_text("name = 'y'\n")
    with pytest.raises(ScenarioError, match=r"missing section \[data\]"):
        scenario.load(p)


def test_cli_list_show(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["scenarios", "list", "--json"])
    assert res.exit_code == 0, res.output
    assert "weekend-shift" in {r["name"] for r in json.loads(res.output)}
    res = runner.invoke(app, ["scenarios", "list"])
    assert res.exit_code == 0
    assert "no-drift" in res.output
    res = runner.invoke(app, ["scenarios", "show", "weekend-shift", "--json"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert shown["train"]["patience"] == 3
    assert shown["model"]["config"] == {"max_len": 50}
    res = runner.invoke(app, ["scenarios", "show", "sudden-shift"])
    assert res.exit_code == 0
    assert "batch_events: 256" in res.output
    bad = tmp_path / "b.toml"
    bad.write_text(GOOD + "[replay]\nbatchsize = 1\n")
    res = runner.invoke(app, ["scenarios", "show", str(bad)])
    assert res.exit_code == 1
    assert "unknown key 'batchsize'" in res.output


def test_policy_with_a_sample_filter(tmp_path: Path) -> None:
    p = tmp_path / "f.toml"
    p.write_text(
        GOOD + "[[adaptation.policies]]\nname = 'reset+eta'\ntta = 'reset'\n"
        "[adaptation.policies.sample_filter]\nk = 10\ne0_quantile = 0.5\n"
    )
    sc = scenario.load(p)
    (policy,) = sc.policies
    assert policy.sample_filter is not None
    assert (policy.sample_filter.k, policy.sample_filter.e0_quantile) == (10, 0.5)
    assert policy.sample_filter.epsilon == 0.3  # the default, shown by `scenarios show`
    assert scenario.to_dict(sc)["policies"][0]["sample_filter"]["k"] == 10

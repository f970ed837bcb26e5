"""The summary of one run that `replay` and `runs show` print: metrics, quartiles, detectors,
forgetting, the adaptation's resets and the recommendations' health."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import duckdb

from streamsim.compare import Comparison, ComparisonError, PairedResult, compare
from streamsim.detection import DetectorReport, detector_report
from streamsim.metrics import overall
from streamsim.runs import run_info
from streamsim.segments import quartiles
from streamsim.store import fetch_one


@dataclass(frozen=True)
class Forgetting:
    """The forgetting probe of a run (`streamsim.probe`): NDCG@10 of θ₀ minus the current
    weights on fixed pre-replay requests. `points` = 0 when the run has no probe."""

    points: int
    last: float | None  # at the last probe point
    se_last: float | None  # its standard error (paired per-request differences)
    max: float | None  # the largest over the probe points
    probe_ndcg10_last: float | None  # the probe's NDCG@10 at the end
    top1_flip_last: float | None  # share of probe requests whose top-1 changed vs θ₀


@dataclass(frozen=True)
class Health:
    """Means over a run's micro-batches of the recommendation-diversity diagnostics: top-10
    coverage of the catalogue, Gini of the top-10 counts, marginal entropy of the top-1
    predictions, mean top-10 score entropy (None when not recorded)."""

    coverage: float | None
    rec_gini: float | None
    top1_entropy: float | None
    topk_entropy: float | None


@dataclass(frozen=True)
class StepSize:
    """How far a run's test-time steps moved the weights and what they changed, as means over
    the micro-batches with a step (`n_batches` = 0: the policy takes no test-time step, every
    other field None). A step that changes nothing is reported with its size, never as
    missing: ``step_rel`` 3e-6 with 0 flips is a measured null."""

    n_batches: int
    step_norm: float | None  # mean ||θ_after − θ_before||
    step_rel: float | None  # mean of that / ||θ_before||
    top10_changed: float | None  # mean share of top-10 lists the step changed
    rank_changed: float | None  # mean share of target ranks it moved
    hit10_flips: int | None  # targets that entered or left the top 10, summed


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    policy: str
    model: str
    n_events: int
    events_per_s: float
    metrics: dict[str, float]  # `streamsim.metrics.overall`: ndcg@10, hr@10, ... by group
    quartiles: tuple[float, ...]  # NDCG@10 per quarter of the replay
    detectors: tuple[DetectorReport, ...]
    forgetting: Forgetting
    tta_resets: int  # periodic, drift-triggered or oracle restores of θ₀ (continual policies)
    tta_skipped_steps: int  # test-time steps not taken: non-finite loss or gradient
    health: Health
    step: StepSize
    diagnostic: bool  # the policy reads what it is scored on (the oracle): a ceiling only
    tta: str  # none | reset | continual
    tta_step: str  # what the test-time step descends (model, placebo, entropy, ...)
    online: bool  # supervised updates on revealed events
    tta_lr: float  # the test-time learning rate replayed
    placebo_of: str  # the rule a placebo copies the step size of
    tta_lr_chosen: bool  # chosen on the validation window (tta_lr = "auto")

    @property
    def label_free(self) -> bool:
        """A test-time adaptation that reads no label: a deployable method (not the placebo,
        not the oracle, no online learning from revealed targets)."""
        return self.tta != "none" and self.tta_step in ("model", "entropy", "selfsup")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["quartiles"] = list(self.quartiles)
        out["detectors"] = [d.to_json() for d in self.detectors]
        return out


def summarize(con: duckdb.DuckDBPyConnection, run_id: str) -> RunSummary:
    info = run_info(con, run_id)
    policy = info["manifest"].get("policy", {})
    q = quartiles(con, run_id, metric="ndcg10")
    return RunSummary(
        run_id=run_id,
        policy=info["policy"],
        model=info["model"],
        n_events=int(info["n_events"]),
        events_per_s=float(info["events_per_s"] or 0.0),
        metrics=overall(con, run_id),
        quartiles=tuple(float(v) for v in q["value"].tolist()),
        detectors=tuple(detector_report(con, run_id)),
        forgetting=forgetting(con, run_id),
        tta_resets=_count(con, "count(*) FILTER (WHERE tta_reset)", run_id),
        tta_skipped_steps=_count(con, "coalesce(sum(tta_skipped_steps), 0)", run_id),
        health=health(con, run_id),
        step=step_size(con, run_id),
        diagnostic=bool(info["manifest"].get("diagnostic", False)),
        tta=str(policy.get("tta", "none")),
        tta_step=str(policy.get("tta_step", "model")),
        online=bool(policy.get("online", False)),
        tta_lr=float(policy.get("tta_lr", 0.0)),
        placebo_of=str(policy.get("placebo_of", "model")),
        tta_lr_chosen=info["manifest"].get("tta_lr_auto") is not None,
    )


def health(con: duckdb.DuckDBPyConnection, run_id: str) -> Health:
    means = ", ".join(f"avg({f.name})" for f in fields(Health))
    (row,) = con.execute(f"SELECT {means} FROM run_batches_of(?)", [run_id]).fetchall()
    return Health(*(None if v is None else float(v) for v in row))


def step_size(con: duckdb.DuckDBPyConnection, run_id: str) -> StepSize:
    (row,) = con.execute(
        "SELECT count(tta_step_norm), avg(tta_step_norm), avg(tta_step_rel),"
        " avg(tta_top10_changed), avg(tta_rank_changed), sum(tta_hit10_flips)"
        " FROM run_batches_of(?)",
        [run_id],
    ).fetchall()
    n, norm, rel, top10, ranks, flips = row

    def number(v: float | None) -> float | None:
        return None if v is None else float(v)

    return StepSize(
        n_batches=int(n),
        step_norm=number(norm),
        step_rel=number(rel),
        top10_changed=number(top10),
        rank_changed=number(ranks),
        hit10_flips=None if flips is None else int(flips),
    )


@dataclass(frozen=True)
class Contrast:
    """Two runs of one model over the same events that differ in one thing, read as a pair:
    a continual run against the reset run taking the same step, or a label-free step against
    the placebo of its size (same schedule, steps and learning rate)."""

    base: RunSummary
    other: RunSummary
    result: PairedResult  # other minus base, per day (`streamsim.compare`)
    isolates: str  # what the pair differs in, in words

    def line(self) -> str:
        r = self.result
        verdict = (
            "no detectable difference"
            if r.verdict == "no significant difference"
            else f"{self.other.policy} is {r.verdict} than {self.base.policy}"
        )
        return (
            f"{self.other.model}/{self.other.policy} vs {self.base.policy} ({self.isolates}):"
            f" {r.mean_diff:+.4f} NDCG@10 [95% CI {r.ci_low:+.4f}, {r.ci_high:+.4f}]: {verdict}."
        )

    def to_json(self) -> dict[str, Any]:
        """The two run ids, what the pair isolates and the paired result (NaN becomes None)."""
        out: dict[str, Any] = {
            "base": self.base.run_id, "other": self.other.run_id, "isolates": self.isolates,
        }  # fmt: skip
        for f in fields(self.result):
            v = getattr(self.result, f.name)
            out[f.name] = None if isinstance(v, float) and math.isnan(v) else v
        return out


CARRIED = "the same step, carried forward vs restored after every micro-batch"
AGAINST_PLACEBO = "its step vs a random one of the same size"


def contrasts(
    con: duckdb.DuckDBPyConnection, summaries: Sequence[RunSummary]
) -> tuple[Contrast, ...]:
    """Each continual run against the reset run of the same model and step (rule, steps,
    learning rate as replayed, entropy K), then each label-free step against the placebo of the
    same rule, schedule, steps and rate; runs over different events are not paired."""
    policies = {s.run_id: run_info(con, s.run_id)["manifest"].get("policy", {}) for s in summaries}

    def key(s: RunSummary, *names: str) -> tuple[str, ...]:
        return (s.model, *(json.dumps(policies[s.run_id].get(n)) for n in names))

    step = ("tta_steps", "tta_lr", "entropy_k")
    resets = {key(s, "tta_step", "placebo_of", *step): s for s in reversed(summaries)
              if s.tta == "reset" and not s.online}  # fmt: skip
    placebos = {(s.tta, *key(s, "placebo_of", *step)): s for s in reversed(summaries)
                if s.tta_step == "placebo" and not s.online}  # fmt: skip
    wanted: list[tuple[RunSummary, RunSummary, str]] = []
    for s in summaries:
        if s.tta == "continual" and not s.online:
            base = resets.get(key(s, "tta_step", "placebo_of", *step))
            if base is not None:
                wanted.append((base, s, CARRIED))
    for s in summaries:
        if s.label_free and not s.online:
            base = placebos.get((s.tta, *key(s, "tta_step", *step)))
            if base is not None:
                wanted.append((base, s, AGAINST_PLACEBO))
    out = []
    for base, other, isolates in wanted:
        try:
            result = compare(con, [base.run_id, other.run_id]).pairs[0]
        except ComparisonError:
            continue
        out.append(Contrast(base, other, result, isolates))
    return tuple(out)


def reading(
    summaries: Sequence[RunSummary],
    comparison: Comparison | None,
    pairs: Sequence[Contrast] = (),
) -> list[str]:
    """One plain-language sentence per compared run: its NDCG@10 difference from the baseline
    (the first run) with the 95% CI, what the verdict means, and the size of its steps, so that
    a null is read next to the step that produced it; then one per continual/reset pair and
    per label-free step and its placebo (`contrasts`) and, against a frozen baseline,
    whether any label-free method helped."""
    if comparison is None or len(summaries) < 2:
        return []
    base = summaries[0]
    by_id = {s.run_id: s for s in summaries}
    lines = []
    for pair in comparison.pairs:
        s = by_id[pair.run_id]
        label = f"{s.model}/{s.policy}"
        diff = (
            f"{label}: {pair.mean_diff:+.4f} {comparison.metric} vs {base.policy}"
            f" [95% CI {pair.ci_low:+.4f}, {pair.ci_high:+.4f}]"
        )
        if pair.verdict == "no significant difference":
            verdict = "no detectable difference"
        else:
            verdict = f"{pair.verdict} than {base.policy}"
        step = s.step
        chosen = " chosen on the validation window" if s.tta_lr_chosen else ""
        steps = f"its {s.tta_step} steps (lr {s.tta_lr:g}{chosen})"
        if s.tta_step == "placebo":
            steps = (
                f"its placebo steps (random directions the size of the {s.placebo_of} step,"
                f" lr {s.tta_lr:g}{chosen})"
            )
        if step.n_batches == 0:
            how = "it takes no test-time step"
        elif step.step_rel is not None and step.top10_changed is not None:
            how = (
                f"{steps} moved the weights by {step.step_rel:.1e} of their norm and changed"
                f" {step.top10_changed:.1%} of top-10 lists ({step.hit10_flips} hit@10 flips)"
            )
        else:
            how = f"{steps} moved the weights by {step.step_rel or 0.0:.1e} of their norm"
        note = " (diagnostic ceiling: it reads the targets it is scored on)" if s.diagnostic else ""
        lines.append(f"{diff}: {verdict}; {how}{note}.")
    lines.extend(pair.line() for pair in pairs)
    if base.tta == "none" and not base.online:
        lines.append(_conclusion(summaries, comparison, pairs))
    return lines


def _conclusion(
    summaries: Sequence[RunSummary], comparison: Comparison, pairs: Sequence[Contrast] = ()
) -> str:
    """Whether any label-free test-time adaptation beat the frozen baseline (and, where its
    placebo ran, a random step of its size too)."""
    by_id = {s.run_id: s for s in summaries}
    methods = [(by_id[p.run_id], p) for p in comparison.pairs if by_id[p.run_id].label_free]
    if not methods:
        return "No label-free test-time adaptation was compared here."
    placebo = {c.other.run_id: c.result for c in pairs if c.isolates == AGAINST_PLACEBO}
    better = [(s, p) for s, p in methods if p.verdict == "better"]
    helped = [f"{s.policy} ({p.mean_diff:+.4f})" for s, p in better
              if s.run_id not in placebo or placebo[s.run_id].verdict == "better"]  # fmt: skip
    moved = [
        s.policy for s, _ in better if s.run_id in placebo and placebo[s.run_id].verdict != "better"
    ]
    if helped:
        tail = f"; {', '.join(moved)} only as much as a random step of its size" if moved else ""
        return f"Label-free test-time adaptation helped here: {', '.join(helped)}{tail}."
    if moved:
        return (
            f"No label-free test-time adaptation helped here beyond moving the weights: "
            f"{', '.join(moved)} beat {summaries[0].policy} but not a random step of its size."
        )
    hurt = [s.policy for s, p in methods if p.verdict == "worse"]
    tail = f"; it hurt under {', '.join(hurt)}" if hurt else ""
    return (
        "No label-free test-time adaptation helped here: none of "
        f"{', '.join(s.policy for s, _ in methods)} is detectably better than"
        f" {summaries[0].policy}{tail}."
    )


def _count(con: duckdb.DuckDBPyConnection, aggregate: str, run_id: str) -> int:
    row = fetch_one(con, f"SELECT {aggregate} FROM run_batches_of(?)", [run_id])
    assert row is not None
    return int(row[0])


def forgetting(con: duckdb.DuckDBPyConnection, run_id: str) -> Forgetting:
    row = fetch_one(
        con,
        "SELECT count(forgetting_ndcg10), arg_max(forgetting_ndcg10, batch_id)"
        " FILTER (WHERE forgetting_ndcg10 IS NOT NULL), arg_max(forgetting_se, batch_id)"
        " FILTER (WHERE forgetting_ndcg10 IS NOT NULL), max(forgetting_ndcg10),"
        " arg_max(probe_ndcg10, batch_id) FILTER (WHERE probe_ndcg10 IS NOT NULL),"
        " arg_max(probe_top1_flip, batch_id) FILTER (WHERE probe_top1_flip IS NOT NULL)"
        " FROM run_batches_of(?)",
        [run_id],
    )
    assert row is not None
    n, *rest = row
    return Forgetting(int(n), *(None if v is None else float(v) for v in rest))

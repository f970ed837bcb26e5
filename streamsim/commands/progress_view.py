"""Rendering the typed progress events (`streamsim.progress`) of `train` and `replay`.

On a terminal: rich progress bars, one for pretraining and one per policy. Anywhere else (a log
file, nohup, CI): one plain line per training epoch and per tenth of each policy's replay, so a
log shows progress as it happens instead of only at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from streamsim import health
from streamsim.progress import (
    Progress as ProgressFn,
)
from streamsim.progress import (
    ProgressEvent,
    ReplayBatch,
    ReplayFinished,
    ReplayStarted,
    TrainEpoch,
    TrainStep,
)


def epoch_line(event: TrainEpoch) -> str:
    """``epoch 3: train loss 5.1234 (rec 5.0, time 0.1), valid ndcg@10 0.1234, hr@10 0.2345``,
    and on a second line the epoch's training health when it was measured."""
    r = event.record
    parts = [f"{k[6:]} {v:.4f}" for k, v in r.items() if k.startswith("train.")]
    terms = f" ({', '.join(parts)})" if parts else ""
    line = (
        f"epoch {event.epoch}: train loss {r.get('train_loss', float('nan')):.4f}{terms}, valid"
        f" ndcg@10 {r.get('valid.ndcg@10', float('nan')):.4f},"
        f" hr@10 {r.get('valid.hr@10', float('nan')):.4f}"
    )
    summary = health.summary_line(r)  # the kept epoch's warning comes at the end
    return line if summary is None else f"{line}\n  {summary}"


@contextmanager
def progress_view(out: Console) -> Iterator[ProgressFn]:
    """A progress callback rendering to `out`: bars on a terminal, plain lines elsewhere."""
    if out.is_terminal:
        with _bars(out) as callback:
            yield callback
    else:
        yield _Lines(out)


class _Lines:
    """Plain lines: every training epoch, every tenth of a replay, and each run's end."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.next_tenth: dict[str, int] = {}
        self.ndcg: dict[str, tuple[float, int, float]] = {}  # sum, events, start time

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, TrainEpoch):
            self.out.print(epoch_line(event))
        elif isinstance(event, ReplayStarted):
            self.next_tenth[event.policy] = event.done * 10 // max(event.total, 1) + 1
            self.ndcg[event.policy] = (0.0, 0, time.perf_counter())
            self.out.print(f"replay {event.policy}: run {event.run_id}, {event.total} events")
        elif isinstance(event, ReplayBatch):
            total, n, t0 = self.ndcg[event.policy]
            total += float(event.result.events.ndcg10.sum())
            n += len(event.result)
            self.ndcg[event.policy] = (total, n, t0)
            tenth = self.next_tenth[event.policy]
            if event.done * 10 >= tenth * max(event.total, 1):
                self.next_tenth[event.policy] = event.done * 10 // max(event.total, 1) + 1
                rate = n / max(time.perf_counter() - t0, 1e-9)
                self.out.print(
                    f"replay {event.policy}: {event.done}/{event.total} events"
                    f" ({100 * event.done / max(event.total, 1):.0f}%), ndcg@10 {total / n:.4f},"
                    f" {rate:.0f} events/s"
                )
        elif isinstance(event, ReplayFinished) and event.reused:
            self.out.print(f"replay {event.policy}: kept the finished run {event.run_id}")


@contextmanager
def _bars(out: Console) -> Iterator[ProgressFn]:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total}"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=out,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}
    sums: dict[str, tuple[float, int, float]] = {}

    def callback(event: ProgressEvent) -> None:
        if isinstance(event, TrainStep):
            if "train" not in tasks:
                tasks["train"] = bar.add_task("pretraining", total=1.0, info="")
            bar.update(
                tasks["train"],
                completed=event.done,
                description=f"pretraining epoch {event.epoch}",
                info=f"loss {event.loss:.3f}  {event.examples_per_s:.0f} ex/s",
            )
        elif isinstance(event, TrainEpoch):
            bar.console.print(epoch_line(event))
        elif isinstance(event, ReplayStarted):
            tasks[event.policy] = bar.add_task(
                f"replay {event.policy}", total=event.total, completed=event.done, info=""
            )
            sums[event.policy] = (0.0, 0, time.perf_counter())
        elif isinstance(event, ReplayBatch):
            total, n, t0 = sums[event.policy]
            total += float(event.result.events.ndcg10.sum())
            n += len(event.result)
            sums[event.policy] = (total, n, t0)
            rate = n / max(time.perf_counter() - t0, 1e-9)
            bar.update(
                tasks[event.policy],
                completed=event.done,
                info=f"{rate:.0f} events/s  ndcg@10 {total / n:.4f}",
            )
        elif isinstance(event, ReplayFinished) and event.reused:
            bar.console.print(f"replay {event.policy}: kept the finished run {event.run_id}")

    with bar:
        yield callback

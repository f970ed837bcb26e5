"""Command output on a narrow terminal: figures are never cut, names fold."""

from __future__ import annotations

import io

from rich.console import Group
from rich.table import Table

from streamsim.commands import FiguresConsole

ROW = (
    "t2arec/continual-entropy", "11250", "0.2075", "-0.0242 [-0.0412, -0.0091]",
    "0.1300 0.1260 0.1048 0.0937", "2.3e-03", "73.9%", "+0.0576 ± 0.0064", "-",
)  # fmt: skip
HEADERS = (
    "run", "events", "HR@10", "Δ NDCG@10 vs none [95% CI]", "NDCG@10 by quartile", "step",
    "top-10 changed", "forgetting", "alarms",
)  # fmt: skip


def table() -> Table:
    t = Table(title="replay")
    for h in HEADERS:
        t.add_column(h, justify="right")
    t.add_row(*ROW)
    return t


def render(*objects: object, width: int = 80) -> str:
    buf = io.StringIO()
    FiguresConsole(file=buf, width=width, markup=False).print(*objects)
    return buf.getvalue()


def test_a_wide_table_on_80_columns_keeps_every_figure_and_header() -> None:
    out = render(table())
    for figure in ROW[1:]:
        assert figure in out, figure
    for header in HEADERS[1:]:
        assert header in out, header
    assert "…" not in out
    assert "t2arec/continual" in out  # the name folds onto two lines instead
    assert "-entropy" in out


def test_tables_inside_a_group_and_narrow_tables_print_as_usual() -> None:
    small = Table()
    small.add_column("a")
    small.add_column("b")
    small.add_row("x", "0.123")
    out = render(Group(small, table()))
    assert "-0.0242 [-0.0412, -0.0091]" in out
    assert max(len(line) for line in render(small).splitlines()) < 80
    assert render("plain", "text") == "plain text\n"

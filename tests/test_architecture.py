"""The plan of the house, checked: no import cycle, SQL on base tables only in the store's rooms,
one record vocabulary, specs next to their code, no work-item names a reader cannot follow."""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streamsim import records, store

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "streamsim"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The `streamsim` modules a file imports, at module level or inside functions."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "streamsim":
                out.update(f"streamsim.{a.name}" for a in node.names)
            elif node.module.startswith("streamsim."):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("streamsim."))
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(p) if m in files} for name, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """The first import cycle of a module graph, as a path ``a -> b -> a``; None if acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_no_import_cycle_inside_the_package() -> None:
    graph = _graph()
    assert "streamsim.scenario" in graph
    assert "streamsim.pipeline" in graph
    assert graph["streamsim.scenario"] >= {"streamsim.adapt", "streamsim.replay"}
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_specs_live_with_the_code_they_configure() -> None:
    from streamsim.adapt import PolicySpec
    from streamsim.drift import DetectorSpec
    from streamsim.replay import ReplaySpec
    from streamsim.segments import SegmentSpec
    from streamsim.splits import SplitSpec
    from streamsim.synth import SynthConfig
    from streamsim.train import ModelSpec, TrainSpec

    for cls in (PolicySpec, DetectorSpec, ReplaySpec, SegmentSpec, SplitSpec, SynthConfig):
        assert callable(getattr(cls, "from_table", None)), cls
    for cls in (ModelSpec, TrainSpec):
        assert callable(getattr(cls, "from_table", None)), cls
    # the scenario module no longer defines them: it only composes them
    scenario_src = (PACKAGE / "scenario.py").read_text()
    assert "class PolicySpec" not in scenario_src
    assert "class ReplaySpec" not in scenario_src
    assert len(scenario_src.splitlines()) < 350


BASE_TABLES = (
    "datasets", "events", "users", "items", "categories", "event_regimes", "drifts", "runs",
    "run_events", "run_batches", "run_signals", "run_alarms",
)  # fmt: skip
SQL_ROOMS = {"streamsim/store.py", "streamsim/runs.py"}
_TABLE_USE = re.compile(
    r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+(" + "|".join(BASE_TABLES) + r")\b(?!\s*\()", re.I
)


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module (SQL lives in them), with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))
    return out


def test_sql_on_base_tables_only_in_the_store_rooms() -> None:
    """Outside store.py and runs.py, SQL reads the store's read interface (table macros such as
    ``run_events_of(?)``), never a base table, so a schema change is made in one place."""
    sources = sorted([*PACKAGE.rglob("*.py"), *(ROOT / "dashboards").glob("*.py")])
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {match.group(0)}"
        for path in sources
        if str(path.relative_to(ROOT)) not in SQL_ROOMS
        for line, text in _string_constants(path)
        for match in _TABLE_USE.finditer(text)
    ]
    assert offenders == []


def test_the_sql_rule_catches_a_base_table() -> None:
    assert _TABLE_USE.search("SELECT avg(ndcg10) FROM run_events WHERE run_id = ?")
    assert _TABLE_USE.search(" JOIN items i ON i.dataset = ?")
    assert not _TABLE_USE.search("SELECT avg(ndcg10) FROM run_events_of(?)")
    assert not _TABLE_USE.search("FROM global_drifts(?)")


def _table_columns(table: str) -> list[str]:
    con = store.connect_memory()
    return [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]


@pytest.mark.parametrize(
    ("table", "cls"),
    [("run_events", records.EventRecords), ("run_batches", records.BatchResult)],
)
def test_record_fields_are_exactly_the_table_columns(table: str, cls: type) -> None:
    fields = [f.name for f in dataclasses.fields(cls)]
    assert _table_columns(table) == ["run_id", *fields]


def test_alarms_and_signals_have_their_tables() -> None:
    assert _table_columns("run_alarms") == ["run_id", *records.Alarm._fields]
    assert _table_columns("run_signals") == ["run_id", "batch_id", "signal", "value"]
    # every known signal comes back as a column of the per-batch read interface
    con = store.connect_memory()
    cols = [d[0] for d in con.execute("SELECT * FROM run_batches_of('x')").description]
    assert cols == [f.name for f in dataclasses.fields(records.BatchResult)] + list(
        records.SIGNALS
    )


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):  # not a checkout: walk the tree
        return [p for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts]
    return [ROOT / p for p in out]


_WORK_ITEM = re.compile(r"(?:\b|_)issue[ _-]?#?\d+|\(#\d+\)", re.I)
_DESIGN_REF = re.compile(
    r"shared/design|\b(?:MODELS|PROTOCOL|FEASIBILITY|ANCHORS|STYLE|ARCHITECTURE)\.md\b"
)


def test_no_file_heading_or_comment_named_after_a_work_item() -> None:
    offenders = []
    for path in _tracked_files():
        rel = str(path.relative_to(ROOT))
        if _WORK_ITEM.search(rel):
            offenders.append(f"file name: {rel}")
        if path.suffix not in (".py", ".md", ".toml", ".sh") or not path.exists():
            continue
        if rel == "tests/test_architecture.py":
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if _WORK_ITEM.search(line):
                offenders.append(f"{rel}:{n}: {line.strip()[:80]}")
            if _DESIGN_REF.search(line):
                offenders.append(f"{rel}:{n}: points outside the repository: {line.strip()[:80]}")
    assert offenders == []


def test_the_name_rules_catch_what_they_should() -> None:
    assert _WORK_ITEM.search("docs/models_issue7.md")
    assert _WORK_ITEM.search("## Models (issue 7)")
    assert not _WORK_ITEM.search("tissue 7 days")
    assert _DESIGN_REF.search("see PROTOCOL.md §6.4")
    assert not _DESIGN_REF.search("see docs/protocol.md")


# commands that read the store or print help must not pay for torch (seconds of start-up)
LIGHT_COMMANDS = (["--help"], ["runs", "list"], ["datasets", "list"], ["compare", "--help"])


def imports_torch(argv: list[str], store: Path) -> bool:
    """Whether ``python -m streamsim --store STORE ARGV`` has torch loaded when it ends."""
    probe = (
        "import sys, runpy\n"
        f"sys.argv = ['streamsim', '--store', {str(store)!r}, *{argv!r}]\n"
        "try:\n"
        "    runpy.run_module('streamsim', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=False
    )
    last = out.stdout.strip().splitlines()[-1:]
    assert last in (["TORCH"], ["NO-TORCH"]), out.stderr[-2000:]
    return last == ["TORCH"]


@pytest.mark.parametrize("argv", LIGHT_COMMANDS, ids=" ".join)
def test_commands_that_run_no_model_import_no_torch(argv: list[str], tmp_path: Path) -> None:
    assert not imports_torch(argv, tmp_path)


def test_the_torch_probe_sees_a_command_that_loads_models(tmp_path: Path) -> None:
    assert imports_torch(["models", "list"], tmp_path)

"""Static guard on the package source: no SQL text built from data-derived names, no pickle loads.

Scanned: every ``*.py`` under ``streamsim/``, ``models/`` and ``dashboards/``, parsed with `ast`
(comments and docstrings never match; implicit string concatenation is one f-string).

Definitions
-----------
*SQL text*: an f-string or string literal whose literal parts contain an upper-case SQL word
(``SELECT FROM WHERE JOIN INSERT INTO UPDATE DELETE CREATE DROP ALTER COPY ATTACH DETACH PRAGMA
INSTALL LOAD CAST TRY_CAST VALUES UNION CASE WHEN AS``, as a whole word followed by a space, a
``(`` or the end) or a DuckDB file function (``read_csv( read_parquet( read_json( read_text(
read_blob( glob(``); also any f-string assigned to a name ending in ``_sql`` or returned by a
function whose name ends in ``_sql``. Error messages are not SQL text: f-strings inside a
``raise``, assigned to ``msg``, or passed to ``echo``/``print``/``warn``/``add_row`` or ``help=``.

*Interpolation*: an ``{expr}`` of SQL text, the non-literal operands of ``+`` next to SQL text,
and the arguments of ``%`` or ``.format()`` applied to SQL text.

*Column names from data*: an expression that reads ``.column_names``, ``.description``,
``.columns`` or ``.schema.names`` (Arrow tables, DuckDB results, DataFrames), directly or through
a variable assigned from such an expression in the same function; a use inside
``quote_ident(...)`` does not count.

Rules
-----
1. (every file) SQL text is never formatted with ``%`` or ``.format()``.
2. (every file) No interpolation is hand-quoted: ``"{x}"`` (an identifier quoted without escaping)
   and ``'{x}'`` (a literal quoted without escaping) are refused in SQL text.
3. (every file) No interpolation holds column names from data, except in the functions listed in
   `FIXED_COLUMN_SITES`, each with the reason its columns are fixed by code.
4. (the ingest modules, `INGEST_MODULES`: they read untrusted files) Every interpolation in SQL
   text is ``quote_ident(...)``, ``int(...)``, a name, attribute or call ending in ``_sql`` (SQL
   built in that module and checked by this same rule), or ``", ".join(...)`` of those; no
   ``!r``/``!s`` conversion. Values are bound as parameters, never formatted into the text.
5. (every file) Every ``torch.load(...)`` passes ``weights_only=True`` as a literal.

Not seen: SQL assembled with ``"".join`` of a list or kept in a variable that is not named
``*_sql`` in a module outside `INGEST_MODULES`; such code is out of this guard's reach and needs
review. The self-tests at the end run the checker on the code this guard was written against.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("streamsim", "models", "dashboards")
INGEST_MODULES = {
    "streamsim/ingest.py",
    "streamsim/delimited.py",
    "streamsim/fetch.py",
    "streamsim/parquet_io.py",
    "streamsim/commands/datasets.py",
}
# (file, function): why the Arrow column names it formats into SQL are fixed by code
FIXED_COLUMN_SITES: dict[tuple[str, str], str] = {}  # none left: every name is quoted

_SQL_WORD = re.compile(
    r"(?<![A-Za-z_])(SELECT|FROM|WHERE|JOIN|INSERT|INTO|UPDATE|DELETE|CREATE|DROP|ALTER|COPY"
    r"|ATTACH|DETACH|PRAGMA|INSTALL|LOAD|CAST|TRY_CAST|VALUES|UNION|CASE|WHEN|AS)(?=[\s(]|$)"
    r"|\b(read_csv|read_parquet|read_json|read_text|read_blob|glob)\("
)
_COLUMN_ATTRS = {"column_names", "description", "columns"}
_MESSAGE_CALLS = {"echo", "print", "warn", "add_row", "add_column", "secho"}


@dataclass(frozen=True, slots=True)
class Violation:
    path: str
    line: int
    rule: int
    source: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: rule {self.rule}: {self.source}"


# ----------------------------------------------------------------------------- the checker


def _literal(node: ast.JoinedStr) -> str:
    return "".join(v.value for v in node.values if isinstance(v, ast.Constant))


def _is_call_to(node: ast.AST, name: str) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == name) or (
        isinstance(func, ast.Attribute) and func.attr == name
    )


def _name_of(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _name_of(node.func)
    return None


class _Checker:
    def __init__(self, path: str, tree: ast.Module) -> None:
        self.path = path
        self.tree = tree
        self.strict = path in INGEST_MODULES
        self.parents: dict[ast.AST, ast.AST] = {}
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent
        self.out: list[Violation] = []
        self._tainted: dict[ast.AST | None, set[str]] = {}
        self.torch_loads = {
            a.asname or a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module == "torch"
            for a in n.names
            if a.name == "load"
        }

    def report(self, node: ast.AST, rule: int) -> None:
        self.out.append(Violation(self.path, getattr(node, "lineno", 0), rule, ast.unparse(node)))

    # -- context

    def function(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node
        return None

    def is_message(self, node: ast.AST) -> bool:
        while node in self.parents:
            parent = self.parents[node]
            if isinstance(parent, ast.Raise):
                return True
            if isinstance(parent, ast.keyword) and parent.arg == "help":
                return True
            if isinstance(parent, ast.Call) and _name_of(parent.func) in _MESSAGE_CALLS:
                return True
            if isinstance(parent, ast.Assign | ast.AugAssign | ast.AnnAssign):
                targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
                return any(isinstance(t, ast.Name) and t.id == "msg" for t in targets)
            if isinstance(parent, ast.stmt):
                return False
            node = parent
        return False

    def named_sql(self, node: ast.AST) -> bool:
        """An f-string assigned to ``*_sql`` or returned by a ``*_sql`` function."""
        parent = self.parents.get(node)
        while isinstance(parent, ast.IfExp | ast.BinOp | ast.BoolOp):
            parent = self.parents.get(parent)
        if isinstance(parent, ast.Assign):
            return any((_name_of(t) or "").endswith("_sql") for t in parent.targets)
        if isinstance(parent, ast.Return):
            func = self.function(parent)
            return func is not None and func.name.endswith("_sql")
        return False

    def is_sql(self, node: ast.JoinedStr) -> bool:
        if self.is_message(node):
            return False
        return bool(_SQL_WORD.search(_literal(node))) or self.named_sql(node)

    # -- data-derived column names (rule 3)

    def _column_source(self, expr: ast.AST, tainted: set[str]) -> bool:
        """`expr` reads column names from data outside any quote_ident(...) call."""
        if _is_call_to(expr, "quote_ident"):
            return False
        if isinstance(expr, ast.Attribute):
            if expr.attr in _COLUMN_ATTRS:
                return True
            if expr.attr == "names" and _name_of(expr.value) == "schema":
                return True
        if isinstance(expr, ast.Name) and expr.id in tainted:
            return True
        if isinstance(expr, ast.GeneratorExp | ast.ListComp | ast.SetComp):
            # column names the loop reads reach the result only through its element
            inner = set(tainted)
            for gen in expr.generators:
                if self._column_source(gen.iter, inner):
                    inner |= {n.id for n in ast.walk(gen.target) if isinstance(n, ast.Name)}
            return self._column_source(expr.elt, inner)
        return any(self._column_source(c, tainted) for c in ast.iter_child_nodes(expr))

    def tainted_names(self, func: ast.AST | None) -> set[str]:
        if func not in self._tainted:
            self._tainted[func] = self._taint(func)
        return self._tainted[func]

    def _taint(self, func: ast.AST | None) -> set[str]:
        scope = func if func is not None else self.tree
        tainted: set[str] = set()
        changed = True
        while changed:
            changed = False
            for node in ast.walk(scope):
                pairs: list[tuple[ast.AST, ast.AST]] = []
                if isinstance(node, ast.Assign):
                    pairs = [(t, node.value) for t in node.targets]
                elif isinstance(node, ast.AugAssign | ast.AnnAssign) and node.value is not None:
                    pairs = [(node.target, node.value)]
                elif isinstance(node, ast.For | ast.comprehension):
                    pairs = [(node.target, node.iter)]
                for target, value in pairs:
                    if not self._column_source(value, tainted):
                        continue
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name) and name.id not in tainted:
                            tainted.add(name.id)
                            changed = True
        return tainted

    # -- rule 4

    def allowed(self, expr: ast.AST) -> bool:
        if _is_call_to(expr, "quote_ident") or _is_call_to(expr, "int"):
            return True
        if isinstance(expr, ast.Name | ast.Attribute | ast.Call) and (
            _name_of(expr) or ""
        ).endswith("_sql"):
            return True
        if _is_call_to(expr, "join") and isinstance(expr, ast.Call) and len(expr.args) == 1:
            arg = expr.args[0]
            if isinstance(arg, ast.GeneratorExp | ast.ListComp):
                return self.allowed(arg.elt)
            if isinstance(arg, ast.List | ast.Tuple):
                return all(self.allowed(e) for e in arg.elts)
        return False

    # -- the scan

    def check_interpolations(
        self, owner: ast.AST, parts: list[tuple[ast.AST, str, str, int]]
    ) -> None:
        """`parts`: (expression, text before, text after, conversion) of one piece of SQL text."""
        func = self.function(owner)
        tainted = self.tainted_names(func)
        where = (self.path, func.name if func is not None else "<module>")
        for expr, before, after, conversion in parts:
            if (before.endswith('"') and after.startswith('"')) or (
                before.endswith("'") and after.startswith("'")
            ):
                self.report(owner, 2)
            if where not in FIXED_COLUMN_SITES and self._column_source(expr, tainted):
                self.report(owner, 3)
            if self.strict and (conversion != -1 or not self.allowed(expr)):
                self.report(owner, 4)

    def run(self) -> list[Violation]:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.JoinedStr) and self.is_sql(node):
                parts = []
                values = node.values
                for k, v in enumerate(values):
                    if isinstance(v, ast.FormattedValue):
                        before = values[k - 1] if k > 0 else None
                        after = values[k + 1] if k + 1 < len(values) else None
                        parts.append((
                            v.value,
                            before.value if isinstance(before, ast.Constant) else "",
                            after.value if isinstance(after, ast.Constant) else "",
                            v.conversion,
                        ))  # fmt: skip
                self.check_interpolations(node, parts)
            elif isinstance(node, ast.BinOp):
                self.check_binop(node)
            elif _is_call_to(node, "format") and isinstance(node, ast.Call):
                base = node.func.value if isinstance(node.func, ast.Attribute) else None
                if isinstance(base, ast.Constant) and _SQL_WORD.search(str(base.value)):
                    self.report(node, 1)
            elif isinstance(node, ast.Call) and self.is_torch_load(node):
                safe = any(
                    k.arg == "weights_only"
                    and isinstance(k.value, ast.Constant)
                    and k.value.value is True
                    for k in node.keywords
                )
                if not safe:
                    self.report(node, 5)
        return self.out

    def check_binop(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Mod):
            if isinstance(node.left, ast.Constant) and _SQL_WORD.search(str(node.left.value)):
                self.report(node, 1)
            return
        if not isinstance(node.op, ast.Add) or isinstance(self.parents.get(node), ast.BinOp):
            return
        operands: list[ast.AST] = []

        def flatten(n: ast.AST) -> None:
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add):
                flatten(n.left)
                flatten(n.right)
            else:
                operands.append(n)

        flatten(node)
        texts = [
            o.value for o in operands if isinstance(o, ast.Constant) and isinstance(o.value, str)
        ]
        if not any(_SQL_WORD.search(t) for t in texts) or self.is_message(node):
            return
        parts = []
        for k, o in enumerate(operands):
            if isinstance(o, ast.Constant | ast.JoinedStr):
                continue
            before = operands[k - 1] if k > 0 else None
            after = operands[k + 1] if k + 1 < len(operands) else None
            parts.append((
                o,
                str(before.value) if isinstance(before, ast.Constant) else "",
                str(after.value) if isinstance(after, ast.Constant) else "",
                -1,
            ))  # fmt: skip
        self.check_interpolations(node, parts)

    def is_torch_load(self, node: ast.Call) -> bool:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "load":
            return isinstance(func.value, ast.Name) and func.value.id == "torch"
        return isinstance(func, ast.Name) and func.id in self.torch_loads


def check_source(path: str, source: str) -> list[Violation]:
    """The guard's findings for one file (`path` relative to the repository root)."""
    return _Checker(path, ast.parse(source)).run()


def package_violations() -> list[Violation]:
    found: list[Violation] = []
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            rel = file.relative_to(ROOT).as_posix()
            found += check_source(rel, file.read_text(encoding="utf-8"))
    return found


# ----------------------------------------------------------------------------- the guard


def test_no_sql_text_built_from_data_derived_names() -> None:
    found = [v for v in package_violations() if v.rule != 5]
    assert found == [], "\n".join(map(str, found))


def test_torch_load_is_weights_only() -> None:
    found = [v for v in package_violations() if v.rule == 5]
    assert found == [], "\n".join(map(str, found))


def test_fixed_column_sites_exist() -> None:
    """A listed exception whose function is gone is stale and must be removed."""
    for path, func in FIXED_COLUMN_SITES:
        file = ROOT / path
        if not file.is_file():
            continue
        names = {
            n.name for n in ast.walk(ast.parse(file.read_text())) if isinstance(n, ast.FunctionDef)
        }
        assert func in names, f"{path}: {func} is listed in FIXED_COLUMN_SITES but gone"


# ----------------------------------------------------------------------------- self-tests

# the reader of RecBole `.item` files before this guard (an injection: the header is data)
OLD_RECBOLE = """
def _recbole(cur, item_file):
    icols = {c.split(":")[0]: c for c in _header(cur, ireader)}
    title = next((icols[k] for k in ("movie_title", "title") if k in icols), None)
    genre = next((icols[k] for k in ("genre", "class") if k in icols), None)
    t_expr = f'"{title}"' if title else "NULL"
    g_expr = f"replace(\\"{genre}\\", ' ', '|')" if genre else "NULL"
    cur.execute(
        f'CREATE TEMP TABLE _meta AS SELECT "{icols["item_id"]}" AS i, {t_expr} AS title,'
        f" {g_expr} AS genres FROM {ireader}"
    )
"""

OLD_DELIMITED = """
def _delimited(cur, path, names):
    opts = ["names=[" + ", ".join(f"'{n}'" for n in names) + "]"]
    return f"read_csv({_s(path)}, {', '.join(opts)})"
"""

OLD_INSERT = """
def _insert(con, table, data):
    cols = ", ".join(data.column_names)
    con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _incoming")
"""


def test_guard_catches_the_injection_it_was_written_for() -> None:
    found = check_source("streamsim/ingest.py", OLD_RECBOLE)
    assert {v.rule for v in found} == {2, 4}
    assert any("{icols['item_id']}" in v.source for v in found)
    hand_quoted = check_source("streamsim/other.py", OLD_RECBOLE)
    assert {v.rule for v in hand_quoted} == {2}, hand_quoted
    old = check_source("streamsim/ingest.py", OLD_DELIMITED)
    assert {v.rule for v in old} == {4}, old


def test_guard_catches_column_names_from_data_and_allows_quoting() -> None:
    assert {v.rule for v in check_source("streamsim/x.py", OLD_INSERT)} == {3}
    quoted = OLD_INSERT.replace('", ".join(data.column_names)',
                                '", ".join(quote_ident(c) for c in data.column_names)')  # fmt: skip
    assert check_source("streamsim/x.py", quoted) == []
    assert check_source("streamsim/store.py", OLD_INSERT) != []  # no exception is listed


def test_guard_rules_on_small_cases() -> None:
    cases = {
        'con.execute("SELECT %s FROM t" % name)': {1},
        'con.execute("SELECT {} FROM t".format(name))': {1},
        "con.execute('SELECT * FROM t WHERE a = \\'' + value + '\\'')": {2, 4},
        'con.execute(f"SELECT * FROM {table_sql} WHERE a = ?", [v])': set(),
        'con.execute(f"SELECT {name!r} FROM t")': {4},
        "x = torch.load(p)": {5},
        "x = torch.load(p, weights_only=False)": {5},
        "x = torch.load(p, weights_only=True)": set(),
        'msg = f"expected FROM..TO, got {text!r}"': set(),
    }
    for code, rules in cases.items():
        found = check_source("streamsim/ingest.py", code)
        assert {v.rule for v in found} == rules, (code, found)

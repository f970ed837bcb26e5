"""Binding a TOML table to a typed frozen dataclass, with the file and key path in every error.

Every section of a scenario file is a frozen dataclass defined next to the code it configures
(`PolicySpec` in `streamsim.adapt`, `ReplaySpec` in `streamsim.replay`, ...). Each has a
``from_table(table, where)`` class method that calls `bind` here for the generic part (unknown
keys, types from the field annotations, required keys) and then checks its own values. `where`
is the location prefix of every message, e.g. ``"scenarios/x.toml: [split]"``, so an error reads

    scenarios/x.toml: [split] key 'valid_start': expected a number; got 'soon'
"""

from __future__ import annotations

import math
import re
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from streamsim.errors import ScenarioError


def load_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML file; `ScenarioError` naming the file when it is not valid TOML."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with path.open("rb") as fh:
            return dict(tomllib.load(fh))
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: not valid TOML: {exc}"
        raise ScenarioError(msg) from exc


def bind(cls: Any, table: Any, where: str, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keyword arguments of dataclass `cls` from a TOML table.

    Unknown keys, wrong types (checked against the field annotations) and missing required keys
    are refused with `where` and the key in the message. Keys in `skip` are left to the caller
    (nested tables such as a policy's ``sample_filter``).
    """
    if not isinstance(table, dict):
        msg = f"{where}: expected a table; got {table!r}"
        raise ScenarioError(msg)
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(table) - set(names))
    if unknown:
        msg = f"{where} unknown key {unknown[0]!r}; expected one of {names}"
        raise ScenarioError(msg)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in table and f.name not in skip:
            kwargs[f.name] = check_value(table[f.name], str(f.type), f"{where} key {f.name!r}")
    missing = [
        f.name
        for f in fields(cls)
        if f.name not in kwargs
        and f.name not in skip
        and f.default is MISSING
        and f.default_factory is MISSING
    ]
    if missing:
        msg = f"{where}: missing required key {missing[0]!r}"
        raise ScenarioError(msg)
    return kwargs


def at_least_zero(value: float | int | None, where: str, *, strict: bool = False) -> None:
    """Refuse a negative value (or, `strict`, a value <= 0); None passes."""
    if value is None:
        return
    if not math.isfinite(value):
        msg = f"{where}: expected a finite number; got {value!r}"
        raise ScenarioError(msg)
    if value < 0 or (strict and value == 0):
        bound = "> 0" if strict else ">= 0"
        msg = f"{where}: expected a value {bound}; got {value!r}"
        raise ScenarioError(msg)


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*")


def check_name(value: str, where: str) -> None:
    """Refuse a name that would not be a safe file name: scenario and policy names become parts
    of run ids, resume-state directories and dashboard file names."""
    if not _NAME.fullmatch(value) or ".." in value:
        msg = (
            f"{where}: expected a name of letters, digits and '_', '-', '.', '+', '=' (not"
            f" starting with '.', '-', '+' or '=', no '..'); got {value!r}"
        )
        raise ScenarioError(msg)


def check_value(value: Any, annotation: str, where: str) -> Any:
    """Check `value` against a field annotation string; return the normalised value.

    Understands the annotations the specs use: bool, int, float (ints widen), str, Any,
    ``Literal[...]``, ``tuple[X, ...]`` and unions with None.
    """
    ann = annotation.replace(" ", "")
    options = _split_union(ann)
    if len(options) > 1:
        if value is None and "None" in options:
            return None
        errors = []
        for option in options:
            if option == "None":
                continue
            try:
                return check_value(value, option, where)
            except ScenarioError as exc:
                errors.append(str(exc))
        raise ScenarioError(errors[0])
    if ann == "Any":
        return value
    if ann == "bool":
        if not isinstance(value, bool):
            msg = f"{where}: expected a boolean; got {value!r}"
            raise ScenarioError(msg)
        return value
    if ann == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"{where}: expected an integer; got {value!r}"
            raise ScenarioError(msg)
        return value
    if ann == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            msg = f"{where}: expected a number; got {value!r}"
            raise ScenarioError(msg)
        return float(value)
    if ann == "str":
        if not isinstance(value, str):
            msg = f"{where}: expected a string; got {value!r}"
            raise ScenarioError(msg)
        return value
    if ann.startswith("Literal["):
        allowed = [a.strip("'\"") for a in ann[len("Literal[") : -1].split(",")]
        if value not in allowed:
            msg = f"{where}: expected one of {allowed}; got {value!r}"
            raise ScenarioError(msg)
        return value
    if ann.startswith("tuple[") and ann.endswith(",...]"):
        inner = ann[len("tuple[") : -len(",...]")]
        if not isinstance(value, (list, tuple)):
            msg = f"{where}: expected a list; got {value!r}"
            raise ScenarioError(msg)
        return tuple(check_value(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    msg = f"unsupported annotation {annotation!r}"
    raise TypeError(msg)  # a programming error in a spec, not a user error


def _split_union(ann: str) -> list[str]:
    """The top-level alternatives of a ``A | B[...] | None`` annotation string."""
    depth, start, parts = 0, 0, []
    for i, ch in enumerate(ann):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(ann[start:i])
            start = i + 1
    parts.append(ann[start:])
    return parts

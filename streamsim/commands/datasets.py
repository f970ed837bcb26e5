"""CLI commands: ``ingest`` and ``datasets`` (list, show, fetch, export, import, delete)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import duckdb
import typer
from rich.table import Table

from streamsim.commands import add_group, console, workspace
from streamsim.errors import IngestError
from streamsim.store import (
    DatasetInfo,
    count_categories,
    dataset_info,
    dataset_names,
    drop_dataset,
    open_workspace,
    top_categories,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ReplaceOption = Annotated[
    bool, typer.Option("--replace", help="Overwrite a stored dataset of the same name.")
]


def _iso(ts: int) -> str:
    """Epoch seconds as a UTC date-time; a value no calendar date holds prints as a number."""
    try:
        return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"epoch {ts} s (out of range)"


def _date(ts: int) -> str:
    text = _iso(ts)
    return text[:10] if text[:1].isdigit() else text


def _date_range(text: str) -> tuple[str, str]:
    start, sep, end = text.partition("..")
    if not sep or not start.strip() or not end.strip():
        msg = f"--date-range {text!r}: expected FROM..TO, e.g. 1900-01-01..2100-01-01"
        raise IngestError(msg)
    return start.strip(), end.strip()


def describe(con: duckdb.DuckDBPyConnection, name: str, *, top: int = 10) -> dict[str, Any]:
    """Everything ``datasets show`` prints: the stored row plus density and top categories."""
    info = dataset_info(con, name)
    out = info.to_json()
    out["first"] = _iso(info.t_min)
    out["last"] = _iso(info.t_max)
    out["density"] = info.n_events / max(1, info.n_users * info.n_items)
    out["top_categories"] = [
        {"category": raw, "events": n} for raw, n in top_categories(con, name, top=top)
    ]
    out["n_categories"] = count_categories(con, name)
    return out


def _summary_row(info: DatasetInfo) -> list[str]:
    return [
        info.name,
        info.format,
        f"{info.n_events:,}",
        f"{info.n_users:,}",
        f"{info.n_items:,}",
        _date(info.t_min),
        _date(info.t_max),
        info.fingerprint[:12],
    ]


def register(app: typer.Typer) -> None:
    """Add ``ingest`` and the ``datasets`` group to the root app."""
    app.command("ingest")(ingest)
    add_group(
        app, "datasets", "List, inspect, fetch, export, import and delete stored datasets.",
        list=datasets_list, show=datasets_show, fetch=datasets_fetch, export=datasets_export,
        **{"import": datasets_import}, delete=datasets_delete, changes=datasets_changes,
    )  # fmt: skip


def ingest(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Log file or directory of a known format.")],
    name: Annotated[str, typer.Option("--name", help="Dataset name in the store.")],
    format: Annotated[
        str, typer.Option("--format", help="Input format (default: detect from the path).")
    ] = "auto",
    user_col: Annotated[
        str | None,
        typer.Option("--user-col", help="csv/parquet: the user id column (default: by name)."),
    ] = None,
    item_col: Annotated[
        str | None,
        typer.Option("--item-col", help="csv/parquet: the item id column (default: by name)."),
    ] = None,
    time_col: Annotated[
        str | None,
        typer.Option("--time-col", help="csv/parquet: the timestamp column (epoch or ISO)."),
    ] = None,
    category_col: Annotated[
        str | None,
        typer.Option("--category-col", help="csv/parquet: the item category column, if any."),
    ] = None,
    rating_col: Annotated[
        str | None, typer.Option("--rating-col", help="csv/parquet: the rating column, if any.")
    ] = None,
    time_unit: Annotated[
        str,
        typer.Option(
            "--time-unit",
            help="How to read the timestamps (csv/parquet): auto (epoch s/ms/us/ns from the"
            " magnitude, or ISO dates), s, ms, us, ns or iso.",
        ),
    ] = "auto",
    date_range: Annotated[
        str,
        typer.Option(
            "--date-range",
            help="FROM..TO: accepted event dates; a timestamp outside is an error.",
        ),
    ] = "1970-01-01..2100-01-01",
    replace: ReplaceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Parse an interaction log and store it as dataset NAME.

    csv/parquet: a column flag left out is filled from the header names.

    Recognised: user/user_id/userId, item/item_id/movieId/asin, timestamp/time/ts/date.

    Also category/genre and rating/score; the columns read and those ignored are printed.
    """
    from streamsim.ingest import ingest

    dates = _date_range(date_range)
    con = open_workspace(workspace(ctx))
    try:
        info = ingest(
            con,
            path,
            name=name,
            format=format,
            user_col=user_col,
            item_col=item_col,
            time_col=time_col,
            category_col=category_col,
            rating_col=rating_col,
            time_unit=time_unit,
            date_range=dates,
            replace=replace,
        )
    finally:
        con.close()
    _done(info, "ingested", as_json)


def datasets_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the stored datasets."""
    con = open_workspace(workspace(ctx), read_only=True)
    try:
        infos = [dataset_info(con, n) for n in dataset_names(con)]
    finally:
        con.close()
    if as_json:
        typer.echo(json.dumps([i.to_json() for i in infos], indent=2))
        return
    table = Table(title=f"datasets in {workspace(ctx).root}")
    for col in ("name", "format", "events", "users", "items", "first", "last", "fingerprint"):
        table.add_column(col, justify="right" if col in ("events", "users", "items") else "left")
    for info in infos:
        table.add_row(*_summary_row(info))
    console().print(table)


def datasets_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    as_json: JsonOption = False,
) -> None:
    """Counts, time span, density and top categories of one dataset."""
    con = open_workspace(workspace(ctx), read_only=True)
    try:
        out = describe(con, name)
    finally:
        con.close()
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    table = Table(title=f"dataset {name}", show_header=False)
    table.add_column("key")
    table.add_column("value")
    for key in ("source", "format", "fingerprint", "created"):
        table.add_row(key, str(out[key]))
    table.add_row("events", f"{out['n_events']:,}")
    table.add_row("users", f"{out['n_users']:,}")
    table.add_row("items", f"{out['n_items']:,}")
    table.add_row("categories", f"{out['n_categories']:,}")
    table.add_row("time span", f"{out['first']} .. {out['last']} UTC")
    table.add_row("density", f"{out['density']:.6f}")
    for entry in out["top_categories"]:
        table.add_row(f"category {entry['category']}", f"{entry['events']:,} events")
    console().print(table)


def datasets_fetch(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Public dataset name (see docs/data.md).")],
    replace: ReplaceOption = False,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Mirror to download from instead.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Download a public dataset (checksum-verified, resumable) and ingest it."""
    from streamsim.fetch import fetch

    ws = workspace(ctx)
    con = open_workspace(ws)
    try:
        info = fetch(con, name, workspace=ws, base_url=base_url, replace=replace)
    finally:
        con.close()
    _done(info, "fetched", as_json)
    if not as_json and not info.params.get("checksum_pinned", True):
        typer.echo(
            f"sha256 {info.params['sha256']} (checksum not pinned in the registry;"
            " verify it and pin it in streamsim/fetch.py)"
        )


def datasets_export(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    path: Annotated[Path, typer.Argument(help="Directory to write the Parquet files to.")],
) -> None:
    """Write a dataset as Parquet files + meta.json."""
    from streamsim.parquet_io import export_dataset

    con = open_workspace(workspace(ctx), read_only=True)
    try:
        out = export_dataset(con, name, path)
    finally:
        con.close()
    typer.echo(f"exported {name} to {out}")


def datasets_import(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Directory written by 'datasets export'.")],
    name: Annotated[str | None, typer.Option("--name", help="Store under this name.")] = None,
    replace: ReplaceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Store a dataset exported as Parquet."""
    from streamsim.parquet_io import import_dataset

    con = open_workspace(workspace(ctx))
    try:
        info = import_dataset(con, path, name=name, replace=replace)
    finally:
        con.close()
    _done(info, "imported", as_json)


def datasets_delete(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Dataset name.")]
) -> None:
    """Remove a dataset and its mapping tables from the store."""
    con = open_workspace(workspace(ctx))
    try:
        drop_dataset(con, name)
    finally:
        con.close()
    typer.echo(f"deleted {name}")


def datasets_changes(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    add: Annotated[
        list[str] | None,
        typer.Option(
            "--add",
            help="A known change: START (ISO date or datetime, UTC unless it names an offset),"
            " or START..END for a gradual one (repeatable).",
        ),
    ] = None,
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="sudden (one date), gradual (START..END) or recurring (the weekend regime"
            " from START: a change every Saturday and Monday 00:00 UTC).",
        ),
    ] = "sudden",
    scope: Annotated[
        str | None,
        typer.Option(
            "--scope",
            help="Only some users changed: a CSV of their user ids (one per line), or a category"
            " name (the users with an event of it before the change).",
        ),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove the changes added before (first).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Known change points of a dataset: detector scoring, its baselines and the drift-aligned
    segments use them as they use a synthetic stream's ground truth; a scoped change also
    scores the per-user shift signal. Lists them."""
    from streamsim.changes import add_changes, list_changes
    from streamsim.store import clear_known_changes

    con = open_workspace(workspace(ctx), read_only=not (add or clear))
    try:
        if clear:
            clear_known_changes(con, name)
        if add:
            add_changes(con, name, add, kind, scope=scope)
        rows = list_changes(con, name)
    finally:
        con.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"changes of {name} ({len(rows)})")
    for col in ("id", "kind", "type", "start (UTC)", "end (UTC)", "start idx", "users"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["drift_id"]), str(r["kind"]), str(r["drift_type"]), str(r["start"]),
            str(r["end"]), str(r["start_idx"]), f"{float(str(r['scope'])):.1%}",
        )  # fmt: skip
    console().print(table)


_READ_AS = {
    "s": "epoch seconds",
    "ms": "epoch milliseconds",
    "us": "epoch microseconds",
    "ns": "epoch nanoseconds",
    "iso": "ISO dates",
}


def _done(info: DatasetInfo, verb: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(info.to_json(), indent=2))
        return
    typer.echo(
        f"{verb} {info.name}: {info.n_events:,} events, {info.n_users:,} users,"
        f" {info.n_items:,} items, {_iso(info.t_min)} .. {_iso(info.t_max)} UTC"
        f" (format {info.format}, fingerprint {info.fingerprint[:12]})"
    )
    read_as = _READ_AS.get(str(info.params.get("time_read_as")))
    columns = info.params.get("columns")
    if isinstance(columns, dict):
        roles = ("user", "item", "time", "category", "rating")
        read = ", ".join(f"{r}={columns[r]!r}" for r in roles if r in columns)
        ignored = info.params.get("ignored_columns") or []
        typer.echo(
            f"columns: {read}; timestamps read as {read_as};"
            f" ignored: {', '.join(repr(c) for c in ignored) if ignored else 'none'}"
        )
    elif read_as is not None:
        typer.echo(f"timestamps read as {read_as}")

"""Ingest throughput: streamsim's generic-CSV ingest vs DuckDB's own ``read_csv`` of the same file.

    python benchmarks/ingest.py --rows 1000000 --repeats 3

Generates a CSV of `--rows` rows (user, item, epoch-seconds timestamp, category) with DuckDB,
then times, in the same run and alternating, (a) DuckDB materialising ``read_csv`` of the file
into a table and (b) `streamsim.ingest.ingest` of the file into a fresh on-disk workspace (parse,
timestamp validation, replay order, dense ids, mapping tables, fingerprint, one transaction).
Prints the best time of each, rows/s and the ratio ingest / read_csv.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb

from streamsim.ingest import ingest
from streamsim.store import Workspace


def make_csv(path: Path, rows: int) -> None:
    con = duckdb.connect()
    con.execute(
        "COPY (SELECT hash(i) % 50000 AS user, 1 + hash(i * 7) % 20000 AS item,"
        " 1500000000 + i // 3 AS ts, hash(i * 13) % 100 AS cat FROM range(?) t(i))"
        f" TO '{path}' (HEADER, DELIMITER ',')",
        [rows],
    )
    con.close()


def time_read_csv(path: Path) -> float:
    con = duckdb.connect()
    start = time.perf_counter()
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{path}', header=true)")
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


def time_ingest(path: Path, root: Path, k: int) -> float:
    con = Workspace.resolve(root / f"ws{k}").connect()
    start = time.perf_counter()
    ingest(con, path, name="bench", user_col="user", item_col="item", time_col="ts",
           category_col="cat")  # fmt: skip
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = root / "log.csv"
        make_csv(path, args.rows)
        print(f"file: {args.rows:,} rows, {path.stat().st_size / 1e6:.1f} MB")
        t_read, t_ingest = [], []
        for k in range(args.repeats):
            t_read.append(time_read_csv(path))
            t_ingest.append(time_ingest(path, root, k))
        best_read, best_ingest = min(t_read), min(t_ingest)
        print(f"duckdb read_csv   : {best_read:.3f} s  {args.rows / best_read:,.0f} rows/s"
              f"  (all: {', '.join(f'{t:.3f}' for t in t_read)})")  # fmt: skip
        print(f"streamsim ingest  : {best_ingest:.3f} s  {args.rows / best_ingest:,.0f} rows/s"
              f"  (all: {', '.join(f'{t:.3f}' for t in t_ingest)})")  # fmt: skip
        print(f"ratio ingest / read_csv (time): {best_ingest / best_read:.2f}x")


if __name__ == "__main__":
    main()

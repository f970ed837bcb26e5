"""Ingesting every staged dataset gives exactly the counts and time span of its SOURCE.md."""

from __future__ import annotations

import pytest

from streamsim.ingest import ingest
from streamsim.store import connect_memory, events_fingerprint
from tests.conftest import shared_dataset

# name: (format, rows, users, items, first ts, last ts, has categories) -- from each SOURCE.md
EXPECTED = {
    "ml-100k": ("ml-100k", 100_000, 943, 1_682, 874724710, 893286638, True),
    "ml-latest-small": ("ml-latest", 100_836, 610, 9_724, 828124615, 1537799250, True),
    "amazon-beauty-5core": ("user-lines", 198_502, 22_363, 12_101, 1023840000, 1406073600, False),
    "amazon-sports-5core": ("user-lines", 296_337, 35_598, 18_357, 1015459200, 1406073600, False),
    "ciaodvd": ("ciaodvd", 72_665, 17_615, 16_121, 959731200, 1385596800, True),
    "yelp2019-ticoserec": ("user-lines", 316_354, 30_431, 20_033, 1546300809, 1576252117, False),
    "taobao-userbehavior-prefix": ("taobao", 84_475, 815, 55_368, 1505117799, 1512316763, True),
    "amazon-grocery-5core-rechorus": (
        "rechorus",
        121_892,
        14_681,
        8_687,
        965779200,
        1405987200,
        True,
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_staged_dataset_matches_source_md(name: str) -> None:
    path = shared_dataset(name)
    fmt, rows, users, items, t0, t1, has_cat = EXPECTED[name]
    con = connect_memory()
    info = ingest(con, path, name=name)
    got = (info.format, info.n_events, info.n_users, info.n_items, info.t_min, info.t_max)
    assert got == (fmt, rows, users, items, t0, t1)
    assert info.has_category is has_cat
    # the stored fingerprint is the hash of the committed events (several blocks for big sets)
    assert info.fingerprint == events_fingerprint(con, name)
    # dense ids and replay order invariants
    row = con.execute(
        "SELECT min(user_id), max(user_id), min(item_id), max(item_id), min(idx), max(idx),"
        " bool_and(ts >= lag_ts) FROM (SELECT *, coalesce(lag(ts) OVER (ORDER BY idx), ts) AS"
        " lag_ts FROM events WHERE dataset = ?)",
        [name],
    ).fetchone()
    assert row == (0, users - 1, 1, items, 0, rows - 1, True)
    n_map = con.execute(
        "SELECT (SELECT count(*) FROM users WHERE dataset = ?),"
        " (SELECT count(*) FROM items WHERE dataset = ?)",
        [name, name],
    ).fetchone()
    assert n_map == (users, items)


def test_ml100k_genres_and_categories() -> None:
    con = connect_memory()
    ingest(con, shared_dataset("ml-100k"), name="ml")
    row = con.execute(
        "SELECT i.title, i.genres, c.raw FROM items i JOIN categories c"
        " ON c.dataset = i.dataset AND c.category = i.category"
        " WHERE i.dataset = 'ml' AND i.raw = '1'"
    ).fetchone()
    assert row == ("Toy Story (1995)", "Animation|Children's|Comedy", "Animation")


def test_ciaodvd_categories_are_genre_ids() -> None:
    con = connect_memory()
    ingest(con, shared_dataset("ciaodvd"), name="c")
    n = con.execute("SELECT count(*) FROM categories WHERE dataset = 'c'").fetchone()
    assert n == (17,)

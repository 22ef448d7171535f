"""The store contract: every backend (SQLite, Elasticsearch on osmem-server) must pass these."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from elasticsearch import Elasticsearch

from mlcycle.common.errors import InvalidInput, StoreError, Unavailable
from mlcycle.common.store.base import (
    COLLECTIONS,
    COMMENTS,
    LABELS,
    MAX_QUERY_CHARS,
    VOTES,
    SortBy,
    Store,
    encode_cursor,
)
from mlcycle.common.store.elastic import ElasticStore
from mlcycle.common.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration


def comment(doc_id: str, text: str, **fields: object) -> dict[str, object]:
    return {"id": doc_id, "text": text, **fields}


def write(store: Store, collection: str, docs: list[dict[str, object]]) -> None:
    store.upsert(collection, docs)
    store.refresh()


def ids(store: Store, collection: str = COMMENTS, **kwargs: object) -> list[str]:
    return [doc["id"] for doc in store.search(collection, **kwargs).items]  # type: ignore[arg-type]


def all_pages(store: Store, collection: str = COMMENTS, **kwargs: object) -> list[str]:
    """Follow cursors to the end, collecting ids page by page."""
    seen: list[str] = []
    cursor = None
    for _ in range(1000):
        page = store.search(collection, cursor=cursor, **kwargs)  # type: ignore[arg-type]
        assert len(page.items) <= kwargs.get("limit", 50)
        seen += [doc["id"] for doc in page.items]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor
    raise AssertionError("pagination never ended")


# -- writes and lookups ------------------------------------------------------------------


def test_upsert_then_get(store: Store) -> None:
    doc = comment("c1", "first comment", source="test", metadata={"year": 2015, "ns": "user"})
    assert store.upsert(COMMENTS, [doc]) == 1
    assert store.get(COMMENTS, "c1") == doc
    assert store.get(COMMENTS, "missing") is None
    assert store.get(COMMENTS, "") is None
    assert store.get(VOTES, "c1") is None


def test_same_id_twice_keeps_one_document_last_wins(store: Store) -> None:
    store.upsert(COMMENTS, [comment("c1", "old", source="a")])
    store.upsert(COMMENTS, [comment("c1", "new")])
    store.refresh()
    assert store.get(COMMENTS, "c1") == comment("c1", "new")  # replaced, not merged
    assert store.count(COMMENTS) == 1


def test_duplicate_ids_within_one_batch_last_wins(store: Store) -> None:
    batch = [comment("c1", "one"), comment("c2", "two"), comment("c1", "three")]
    assert store.upsert(COMMENTS, batch) == 2
    store.refresh()
    assert store.get(COMMENTS, "c1") == comment("c1", "three")
    assert store.count(COMMENTS) == 2


def test_redelivered_batch_changes_nothing(store: Store) -> None:
    batch = [comment(f"c{i}", f"text {i}") for i in range(10)]
    store.upsert(COMMENTS, batch)
    store.upsert(COMMENTS, batch)
    store.refresh()
    assert store.count(COMMENTS) == 10
    assert ids(store, query="text", limit=100) != []
    assert store.get(COMMENTS, "c3") == comment("c3", "text 3")


def test_empty_upsert_writes_nothing(store: Store) -> None:
    assert store.upsert(COMMENTS, []) == 0
    store.refresh()
    assert store.count(COMMENTS) == 0


def test_delete_removes_from_lookups_counts_and_search_and_is_idempotent(store: Store) -> None:
    write(store, COMMENTS, [comment(f"c{i}", f"word{i} shared") for i in range(3)])
    assert store.delete(COMMENTS, ["c1", "c1", "missing"]) == 1
    store.refresh()
    assert store.get(COMMENTS, "c1") is None
    assert store.count(COMMENTS) == 2
    assert sorted(ids(store, query="shared")) == ["c0", "c2"]
    assert store.delete(COMMENTS, ["c1"]) == 0  # a redelivered retraction changes nothing
    assert store.delete(COMMENTS, []) == 0
    write(store, COMMENTS, [comment("c1", "back again")])
    assert ids(store, query="back") == ["c1"]


@pytest.mark.parametrize(
    "bad",
    [{"text": "no id"}, {"id": 7, "text": "numeric id"}, {"id": "", "text": "empty id"}],
)
def test_documents_without_a_string_id_are_rejected_whole_batch(store: Store, bad: dict) -> None:
    with pytest.raises(InvalidInput):
        store.upsert(COMMENTS, [comment("ok", "fine"), bad])
    store.refresh()
    assert store.count(COMMENTS) == 0


def test_unserializable_document_is_bad_input(store: Store) -> None:
    with pytest.raises(InvalidInput):
        store.upsert(COMMENTS, [comment("c1", "fine"), comment("c2", "set", tags={1, 2})])
    store.refresh()
    assert store.count(COMMENTS) == 0


def test_update_fields_sets_only_those_fields_and_skips_missing_ids(store: Store) -> None:
    write(store, COMMENTS, [comment("u1", "old words", source="a"), comment("u2", "other")])
    score = {"label": 1, "probability": 0.9}
    updated = store.update_fields(COMMENTS, {"u1": {"prediction": score}, "gone": {"x": 1}})
    assert updated == 1
    assert store.get(COMMENTS, "u1") == {
        "id": "u1",
        "text": "old words",
        "source": "a",
        "prediction": score,
    }
    assert store.get(COMMENTS, "gone") is None  # not created
    assert store.update_fields(COMMENTS, {}) == 0


def test_an_update_never_reverts_a_newer_version_written_meanwhile(store: Store) -> None:
    write(store, COMMENTS, [comment("v", "first version")])
    # A newer version replaces the document between a scorer's read and its write...
    write(store, COMMENTS, [comment("v", "second version", source="edited")])
    store.update_fields(COMMENTS, {"v": {"prediction": {"label": 0}}})
    store.refresh()
    # ...and the score lands on it, without bringing the first version back.
    assert store.get(COMMENTS, "v") == {
        "id": "v",
        "text": "second version",
        "source": "edited",
        "prediction": {"label": 0},
    }
    assert ids(store, query="second") == ["v"]
    # A later replacement keeps its own fields; an update of the text re-indexes it.
    store.update_fields(COMMENTS, {"v": {"text": "third"}})
    store.refresh()
    assert ids(store, query="third") == ["v"]
    assert ids(store, query="second") == []


@pytest.mark.parametrize(
    "changes",
    [{"": {"a": 1}}, {"x": {}}, {"x": {"id": "y"}}, {"x": {"a.b": 1}}, {"x": {"a": object()}}],
)
def test_bad_updates_are_bad_input(store: Store, changes: dict) -> None:
    write(store, COMMENTS, [comment("x", "t")])
    with pytest.raises(InvalidInput):
        store.update_fields(COMMENTS, changes)
    assert store.get(COMMENTS, "x") == comment("x", "t")


# -- document by document ----------------------------------------------------------------------

# 300 two-byte characters: 300 characters, 600 bytes in UTF-8.
LONG_ID = "é" * 300


def test_an_id_over_512_utf8_bytes_refuses_an_all_or_nothing_write(store: Store) -> None:
    with pytest.raises(InvalidInput, match="600 bytes in UTF-8, longer than .* 512"):
        store.upsert(COMMENTS, [comment("ok", "fine"), comment(LONG_ID, "too long an id")])
    store.refresh()
    assert store.count(COMMENTS) == 0


def test_upsert_each_stores_the_rest_and_names_what_it_refused(store: Store) -> None:
    fits = "é" * 256  # exactly 512 bytes
    refused = store.upsert_each(
        COMMENTS,
        [
            comment("c1", "fine"),
            comment(LONG_ID, "too long an id"),
            comment("c2", "set", tags={1, 2}),
            comment(fits, "at the limit"),
        ],
    )
    store.refresh()
    assert set(refused) == {LONG_ID, "c2"}
    assert "600 bytes in UTF-8" in refused[LONG_ID]
    assert "not JSON-serializable" in refused["c2"]
    assert sorted(ids(store)) == sorted(["c1", fits])
    assert store.get(COMMENTS, fits)["text"] == "at the limit"
    # Idempotent: the same batch again writes the same and refuses the same.
    assert store.upsert_each(COMMENTS, [comment("c1", "fine"), comment(LONG_ID, "x")]).keys() == {
        LONG_ID
    }
    assert store.count(COMMENTS) == 2
    assert store.upsert_each(COMMENTS, []) == {}


def test_get_many(store: Store) -> None:
    write(store, COMMENTS, [comment(f"c{i}", f"text {i}") for i in range(5)])
    found = store.get_many(COMMENTS, ["c1", "c3", "nope", "c3", ""])
    assert found == {"c1": comment("c1", "text 1"), "c3": comment("c3", "text 3")}
    assert store.get_many(COMMENTS, []) == {}


def test_get_many_beyond_one_request(store: Store) -> None:
    write(store, VOTES, [{"id": f"v{i:05d}", "label": i % 2} for i in range(1500)])
    wanted = [f"v{i:05d}" for i in range(1500)]
    assert len(store.get_many(VOTES, wanted)) == 1500


def test_count_and_stats(store: Store) -> None:
    store.upsert(COMMENTS, [comment(f"c{i}", "x") for i in range(3)])
    store.upsert(VOTES, [{"id": f"v{i}", "item_id": "c0", "label": 1} for i in range(2)])
    store.refresh()
    assert store.count(COMMENTS) == 3
    stats = store.stats()
    assert set(stats) == set(COLLECTIONS)
    assert stats[COMMENTS] == 3 and stats[VOTES] == 2 and stats[LABELS] == 0


def test_heterogeneous_metadata_is_accepted(store: Store) -> None:
    docs = [
        comment("c1", "a", metadata={"year": 2001, "logged_in": True}),
        comment("c2", "b", metadata={"year": "two thousand", "logged_in": "yes"}),
        comment("c3", "c", metadata={"year": {"nested": [1, "x"]}}),
        comment("c4", "d", score=1),
        comment("c5", "e", score=0.25),
    ]
    write(store, COMMENTS, docs)
    assert store.get_many(COMMENTS, [d["id"] for d in docs]) == {d["id"]: d for d in docs}
    assert ids(store, filters={"score": 0.25}) == ["c5"]


def test_unicode_round_trips_and_is_searchable(store: Store) -> None:
    doc = comment(
        "ü-1 ✓",
        "Привет мир — مرحبا بالعالم — 你好 — naïve e\u0301 👩‍👩‍👧 zero\u200bwidth",
        metadata={"ключ": "значение", "emoji": "🔥"},
    )
    write(store, COMMENTS, [doc])
    assert store.get(COMMENTS, "ü-1 ✓") == doc
    assert ids(store, query="ПРИВЕТ") == ["ü-1 ✓"]
    assert ids(store, query="مرحبا") == ["ü-1 ✓"]
    assert ids(store, query="naive") == ["ü-1 ✓"]


def test_ids_with_url_characters(store: Store) -> None:
    odd_ids = ["a/b", "q?x=1&y=2", "hash#frag", "pct%2F", "sp ace", "..", "_doc", "+plus"]
    write(store, COMMENTS, [comment(doc_id, "odd id") for doc_id in odd_ids])
    for doc_id in odd_ids:
        assert store.get(COMMENTS, doc_id) == comment(doc_id, "odd id")
    assert set(store.get_many(COMMENTS, odd_ids)) == set(odd_ids)
    assert all_pages(store, limit=3) == sorted(odd_ids)


# -- collections and bad input -------------------------------------------------------------


@pytest.mark.parametrize("name", ["nope", "comments; DROP TABLE comments", "", "COMMENTS"])
def test_unknown_collection_is_bad_input(store: Store, name: str) -> None:
    with pytest.raises(InvalidInput):
        store.upsert(name, [comment("c1", "x")])
    with pytest.raises(InvalidInput):
        store.get(name, "c1")
    with pytest.raises(InvalidInput):
        store.get_many(name, ["c1"])
    with pytest.raises(InvalidInput):
        store.search(name)
    with pytest.raises(InvalidInput):
        store.count(name)


@pytest.mark.parametrize("limit", [0, -1, 100_000])
def test_out_of_range_limit_is_bad_input(store: Store, limit: int) -> None:
    with pytest.raises(InvalidInput):
        store.search(COMMENTS, limit=limit)


# -- filters -------------------------------------------------------------------------------


@pytest.fixture
def labeled(store: Store) -> Store:
    write(
        store,
        LABELS,
        [
            {"id": "l1", "split": "train", "label": 1, "probability": 0.9, "human": True},
            {"id": "l2", "split": "train", "label": 0, "probability": 0.1, "human": False},
            {"id": "l3", "split": "dev", "label": 1, "probability": 0.9, "run": None},
            {"id": "l4", "split": "test", "label": 0, "probability": 0.5, "run": "r1"},
        ],
    )
    return store


def test_equality_filters(labeled: Store) -> None:
    assert ids(labeled, LABELS, filters={"split": "train"}) == ["l1", "l2"]
    assert ids(labeled, LABELS, filters={"split": "train", "label": 1}) == ["l1"]
    assert ids(labeled, LABELS, filters={"probability": 0.9}) == ["l1", "l3"]
    assert ids(labeled, LABELS, filters={"human": False}) == ["l2"]
    assert ids(labeled, LABELS, filters={"human": True}) == ["l1"]
    assert ids(labeled, LABELS, filters={"id": "l4"}) == ["l4"]
    assert ids(labeled, LABELS, filters={"split": "nowhere"}) == []
    assert labeled.count(LABELS, {"label": 0}) == 2


def test_none_filter_matches_missing_or_null(labeled: Store) -> None:
    assert ids(labeled, LABELS, filters={"run": None}) == ["l1", "l2", "l3"]
    assert ids(labeled, LABELS, filters={"run": None, "split": "dev"}) == ["l3"]
    assert labeled.count(LABELS, {"human": None}) == 2


@pytest.mark.parametrize(
    "filters",
    [
        {"a.b": 1},
        {"x') OR 1=1 --": 1},
        {"$.split": "train"},
        {"": 1},
        {"1abc": 1},
        {"split": ["train"]},
        {"split": {"$ne": 1}},
        {"text": "exact text"},
    ],
)
def test_bad_filters_are_bad_input(labeled: Store, filters: dict) -> None:
    with pytest.raises(InvalidInput):
        labeled.search(LABELS, filters=filters)
    with pytest.raises(InvalidInput):
        labeled.count(LABELS, filters)


# -- full-text search ----------------------------------------------------------------------


@pytest.fixture
def corpus(store: Store) -> Store:
    write(
        store,
        COMMENTS,
        [
            comment("c1", "Hello world, this is a friendly comment", toxic=False),
            comment("c2", "HELLO again: you are an idiot", toxic=True),
            comment("c3", "Nothing to see here"),
            comment("c4", "Le café était très bon", toxic=False),
            comment("c5", "hello hello hello"),
        ],
    )
    return store


def test_search_finds_words_case_insensitively(corpus: Store) -> None:
    assert set(ids(corpus, query="hello")) == {"c1", "c2", "c5"}
    assert set(ids(corpus, query="HeLLo")) == {"c1", "c2", "c5"}
    assert ids(corpus, query="idiot") == ["c2"]
    assert ids(corpus, query="absent") == []


def test_search_requires_every_word(corpus: Store) -> None:
    assert ids(corpus, query="hello world") == ["c1"]
    assert ids(corpus, query="hello idiot") == ["c2"]
    assert ids(corpus, query="hello nothing") == []


def test_search_ignores_accents(corpus: Store) -> None:
    assert ids(corpus, query="cafe etait") == ["c4"]
    assert ids(corpus, query="CAFÉ") == ["c4"]


def test_search_with_filters(corpus: Store) -> None:
    assert ids(corpus, query="hello", filters={"toxic": True}) == ["c2"]
    assert ids(corpus, query="hello", filters={"toxic": None}) == ["c5"]


def test_search_orders_by_relevance_then_id(store: Store) -> None:
    write(
        store,
        COMMENTS,
        [
            comment("z-best", "apple apple apple"),
            comment("b-tie", "apple pie with cream and sugar on a plate"),
            comment("a-tie", "apple pie with cream and sugar on a plate"),
            comment("c-none", "banana"),
        ],
    )
    assert ids(store, query="apple") == ["z-best", "a-tie", "b-tie"]


def test_blank_query_means_no_query(corpus: Store) -> None:
    everything = ["c1", "c2", "c3", "c4", "c5"]
    assert ids(corpus) == everything
    assert ids(corpus, query="") == everything
    assert ids(corpus, query="  \t\n ") == everything
    assert ids(corpus, query="\x00") == everything


@pytest.mark.parametrize(
    "query",
    ['"', '""', "*", "()", "-", "^", ":", "'", "\\", "{", "}", "[", "]", "😀", "!!!"],
)
def test_query_without_words_matches_nothing(corpus: Store, query: str) -> None:
    assert ids(corpus, query=query) == []


@pytest.mark.parametrize(
    "query",
    [
        '"hello',
        'hello"',
        "hello*",
        "(hello)",
        "hello!!!",
        "{hello}",
        "hello\x00",
        "^hello",
        "+hello",
        "-hello",
        "[hello]",
    ],
)
def test_syntax_characters_are_plain_text(corpus: Store, query: str) -> None:
    assert set(ids(corpus, query=query)) == {"c1", "c2", "c5"}


@pytest.mark.parametrize(
    "query",
    [
        "AND(",
        "hello AND",
        "OR hello",
        "NOT hello",
        "NEAR(hello world)",
        "text:hello",
        "hello OR world",
        "hello~2",
        "hello)) OR ((1=1",
        "'; DROP TABLE comments; --",
        '" OR 1=1 --',
        "🔥 hello 🔥",
        "\u202ehello",
        "%_%",
        "a" * MAX_QUERY_CHARS,
        " ".join(["hello"] * 150),
    ],
)
def test_hostile_queries_never_error(corpus: Store, query: str) -> None:
    page = corpus.search(COMMENTS, query=query, limit=10)
    assert isinstance(page.items, list)
    assert corpus.count(COMMENTS) == 5


def test_overlong_query_is_bad_input(corpus: Store) -> None:
    with pytest.raises(InvalidInput):
        corpus.search(COMMENTS, query="a" * (MAX_QUERY_CHARS + 1))


def test_replaced_text_is_searchable_by_new_words_only(store: Store) -> None:
    write(store, COMMENTS, [comment("c1", "original wording"), comment("c2", "original too")])
    write(store, COMMENTS, [comment("c1", "replacement phrasing")])
    assert ids(store, query="wording") == []
    assert ids(store, query="original") == ["c2"]
    assert ids(store, query="replacement") == ["c1"]
    write(store, COMMENTS, [{"id": "c2", "label": 1}])  # text removed altogether
    assert ids(store, query="original") == []
    assert ids(store, query="replacement phrasing") == ["c1"]


# -- pagination ----------------------------------------------------------------------------


@pytest.fixture
def many(store: Store) -> Store:
    # Varying repetitions give distinct relevance scores; equal texts give ties.
    docs = [
        comment(f"c{i:03d}", " ".join(["match"] * (1 + i % 4) + ["filler"] * (i % 3)), odd=i % 2)
        for i in range(37)
    ]
    docs += [comment(f"n{i:03d}", "unrelated words", odd=i % 2) for i in range(6)]
    write(store, COMMENTS, docs)
    return store


@pytest.mark.parametrize("limit", [1, 4, 7])
def test_pagination_by_id_visits_every_document_once(many: Store, limit: int) -> None:
    seen = all_pages(many, limit=limit)
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) == 43


@pytest.mark.parametrize("limit", [1, 3, 10])
def test_pagination_by_relevance_visits_every_match_once(many: Store, limit: int) -> None:
    one_page = ids(many, query="match", limit=100)
    assert len(one_page) == 37
    assert all_pages(many, query="match", limit=limit) == one_page


def test_pagination_with_filters(many: Store) -> None:
    with_query = all_pages(many, query="match", filters={"odd": 1}, limit=4)
    assert len(with_query) == len(set(with_query)) == 18
    without = all_pages(many, filters={"odd": 0}, limit=5)
    assert without == sorted(without) and len(without) == 22


def test_exactly_full_last_page_has_no_cursor(store: Store) -> None:
    write(store, COMMENTS, [comment(f"c{i}", "same words") for i in range(4)])
    assert store.search(COMMENTS, limit=4).next_cursor is None
    assert store.search(COMMENTS, query="same", limit=4).next_cursor is None
    first = store.search(COMMENTS, limit=2)
    second = store.search(COMMENTS, limit=2, cursor=first.next_cursor)
    assert second.next_cursor is None and len(second.items) == 2


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "",
        "e30",  # {}
        "W10",  # []
        encode_cursor([1.5]),
        encode_cursor([-1]),
        encode_cursor(["a", "b", "c"]),
        encode_cursor([None, None, None]),
        "////",
    ],
)
def test_tampered_cursor_is_bad_input(many: Store, cursor: str) -> None:
    with pytest.raises(InvalidInput):
        many.search(COMMENTS, cursor=cursor)
    with pytest.raises(InvalidInput):
        many.search(COMMENTS, query="match", cursor=cursor)


def test_cursor_from_other_kind_of_search_is_bad_input(many: Store) -> None:
    by_id = many.search(COMMENTS, limit=2).next_cursor
    by_score = many.search(COMMENTS, query="match", limit=2).next_cursor
    assert by_id and by_score
    with pytest.raises(InvalidInput):
        many.search(COMMENTS, query="match", cursor=by_id)
    with pytest.raises(InvalidInput):
        many.search(COMMENTS, cursor=by_score)


@pytest.fixture
def dated(store: Store) -> Store:
    """Records with a sortable field: ties, a null and some missing it, a number too."""
    docs = [
        {
            "id": f"j{i:03d}",
            "created_at": f"2026-11-{1 + i % 9:02d}T10:00:00",
            "n": i % 5,
            "odd": i % 2,
        }
        for i in range(29)
    ]
    docs += [{"id": "j900", "created_at": None, "odd": 0}, {"id": "j901", "odd": 1}, {"id": "j902"}]
    write(store, LABELS, docs)
    return store


def expected_order(docs: list[dict], field: str, descending: bool) -> list[str]:
    """Null smallest, then the value, then the id, all in one direction."""
    key = [(d.get(field) is not None, d.get(field) or 0, d["id"]) for d in docs]
    return [k[2] for k in sorted(key, reverse=descending)]


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("limit", [1, 3, 7, 100])
def test_sorted_listing_visits_every_document_once_in_order(
    dated: Store, descending: bool, limit: int
) -> None:
    docs = list(dated.scan(LABELS))
    sort = SortBy("created_at", descending=descending)
    assert all_pages(dated, LABELS, limit=limit, sort=sort) == expected_order(
        docs, "created_at", descending
    )


@pytest.mark.parametrize("descending", [False, True])
def test_sorted_listing_by_number_with_filters(dated: Store, descending: bool) -> None:
    odd = [d for d in dated.scan(LABELS) if d.get("odd") == 1]
    sort = SortBy("n", descending=descending)
    seen = all_pages(dated, LABELS, limit=4, sort=sort, filters={"odd": 1})
    assert seen == expected_order(odd, "n", descending)


def test_sort_on_a_field_no_document_has(dated: Store) -> None:
    assert all_pages(dated, LABELS, limit=5, sort=SortBy("absent")) == sorted(
        d["id"] for d in dated.scan(LABELS)
    )


@pytest.mark.parametrize(
    "sort", [SortBy("text"), SortBy("a.b"), SortBy(""), SortBy("x; DROP TABLE labels")]
)
def test_bad_sort_is_bad_input(dated: Store, sort: SortBy) -> None:
    with pytest.raises(InvalidInput):
        dated.search(LABELS, sort=sort)


def test_sort_and_query_together_is_bad_input(corpus: Store) -> None:
    with pytest.raises(InvalidInput):
        corpus.search(COMMENTS, query="match", sort=SortBy("id"))


def test_scan_visits_many_documents_in_id_order(store: Store) -> None:
    docs = [{"id": f"v{i:05d}", "item_id": f"c{i % 97}", "label": i % 2} for i in range(2500)]
    write(store, VOTES, docs)
    scanned = [doc["id"] for doc in store.scan(VOTES, batch_size=300)]
    assert scanned == sorted(d["id"] for d in docs)
    assert sum(1 for _ in store.scan(VOTES, filters={"label": 1}, batch_size=250)) == 1250


def test_ping(store: Store) -> None:
    assert store.ping() is True


# -- SQLite specifics ----------------------------------------------------------------------


def test_sqlite_data_survives_reopen(tmp_path) -> None:
    path = tmp_path / "store.sqlite3"
    first = SqliteStore(path)
    first.upsert(COMMENTS, [comment("c1", "durable words"), comment("c2", "more")])
    # Another process opening the file sees the committed batch without any close.
    second = SqliteStore(path)
    assert second.get(COMMENTS, "c1") == comment("c1", "durable words")
    first.close()
    second.close()
    reopened = SqliteStore(path)
    assert reopened.count(COMMENTS) == 2
    assert ids(reopened, query="durable") == ["c1"]
    reopened.close()


def test_sqlite_concurrent_writers_and_readers(tmp_path) -> None:
    path = tmp_path / "store.sqlite3"
    writer_a, writer_b = SqliteStore(path), SqliteStore(path)  # as two processes would
    errors: list[BaseException] = []

    def write_many(store: SqliteStore, prefix: str) -> None:
        try:
            for batch in range(20):
                docs = [comment(f"{prefix}{batch:02d}-{i:02d}", "concurrent") for i in range(50)]
                store.upsert(COMMENTS, docs)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def read_many() -> None:
        try:
            for _ in range(50):
                writer_a.search(COMMENTS, query="concurrent", limit=20)
                writer_a.count(COMMENTS)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=write_many, args=(writer_a, "a")),
        threading.Thread(target=write_many, args=(writer_b, "b")),
        threading.Thread(target=write_many, args=(writer_a, "c")),
        threading.Thread(target=read_many),
        threading.Thread(target=read_many),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert writer_b.count(COMMENTS) == 3000
    assert len(all_pages(writer_b, query="concurrent", limit=1000)) == 3000
    writer_a.close()
    writer_b.close()


def test_sqlite_fts_index_stays_consistent(tmp_path) -> None:
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    store.upsert(COMMENTS, [comment(f"c{i}", f"first version {i}") for i in range(50)])
    store.upsert(COMMENTS, [comment(f"c{i}", f"second version {i}") for i in range(0, 50, 2)])
    store.upsert(COMMENTS, [{"id": "c1", "label": 0}, comment("c3", 42)])  # type: ignore[arg-type]
    store.upsert(VOTES, [{"id": "v1", "label": 1}])
    store.close()
    with sqlite3.connect(path) as conn:
        for table in ("comments_fts", "votes_fts"):
            # Raises "database disk image is malformed" when index and table disagree.
            conn.execute(f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)")
    conn.close()


def test_sqlite_closed_store_refuses_work(sqlite_store: SqliteStore) -> None:
    sqlite_store.close()
    with pytest.raises(StoreError):
        sqlite_store.count(COMMENTS)


def test_sqlite_batch_upsert_is_fast(sqlite_store: SqliteStore) -> None:
    # A loose guard (the measured figure is far lower): catches per-document commits.
    words = ["toxic", "comment", "about", "wikipedia", "edits", "and", "talk", "pages", "user"]
    timings = []
    for batch in range(3):
        docs = [
            comment(f"c{batch}-{i:04d}", " ".join(words[(i + j) % 9] for j in range(60)))
            for i in range(2000)
        ]
        start = time.perf_counter()
        sqlite_store.upsert(COMMENTS, docs)
        timings.append(time.perf_counter() - start)
    assert sorted(timings)[1] < 0.5


# -- Elasticsearch specifics ---------------------------------------------------------------


def test_elastic_mapping_conflict_is_a_store_error(elastic_store: ElasticStore) -> None:
    elastic_store.upsert(LABELS, [{"id": "l1", "probability": 0.5}])
    with pytest.raises(StoreError) as info:
        elastic_store.upsert(LABELS, [{"id": "l2", "probability": "high"}])
    assert info.value.details["failed"] == 1


def test_elastic_upsert_each_refuses_a_mapping_conflict_and_stores_the_rest(
    elastic_store: ElasticStore,
) -> None:
    elastic_store.upsert(LABELS, [{"id": "l1", "probability": 0.5}])
    refused = elastic_store.upsert_each(
        LABELS,
        [
            {"id": "l2", "probability": "high"},
            {"id": "l3", "probability": 0.7},
            {"id": LONG_ID, "probability": 0.1},
        ],
    )
    assert set(refused) == {"l2", LONG_ID}
    # Elasticsearch's own reason, naming the field.
    assert "[probability]" in refused["l2"]
    elastic_store.refresh()
    assert sorted(ids(elastic_store, LABELS)) == ["l1", "l3"]


def test_elastic_upsert_each_unreachable_is_unavailable() -> None:
    store = ElasticStore(Elasticsearch("http://127.0.0.1:9", max_retries=0, request_timeout=2))
    with pytest.raises(Unavailable):
        store.upsert_each(COMMENTS, [comment("c1", "x")])
    store.close()


def test_elastic_index_has_explicit_mapping(elastic_store: ElasticStore) -> None:
    elastic_store.upsert(COMMENTS, [comment("c1", "x")])
    index = elastic_store.index_name(COMMENTS)
    assert index == "test-comments"
    mapping = elastic_store.client.indices.get_mapping(index=index)[index]["mappings"]
    assert mapping["properties"]["id"]["type"] == "keyword"
    assert mapping["properties"]["text"]["type"] == "text"


def test_elastic_second_store_reuses_existing_index(es_url: str) -> None:
    first = ElasticStore(Elasticsearch(es_url), "shared-")
    second = ElasticStore(Elasticsearch(es_url), "shared-")
    first.upsert(COMMENTS, [comment("c1", "x")])
    second.upsert(COMMENTS, [comment("c2", "y")])
    second.refresh()
    assert first.count(COMMENTS) == 2
    first.close()
    second.close()


def test_elastic_unreachable_is_unavailable() -> None:
    store = ElasticStore(Elasticsearch("http://127.0.0.1:9", max_retries=0, request_timeout=2))
    assert store.ping() is False
    with pytest.raises(Unavailable):
        store.upsert(COMMENTS, [comment("c1", "x")])
    store.close()

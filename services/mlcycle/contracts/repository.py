"""One typed repository per stored record type, over the :class:`~mlcycle.common.store.Store`.

Business code reads and writes records through a repository and gets pydantic
models back, never the store's raw documents. A collection that holds several
record types (``runs``: label runs, training jobs, trials, ...) tells them apart
by a ``kind`` field; a repository of such a type filters on its kind, so one
type's id never answers as another's.

A concrete repository names its collection, its record type and, where the
collection is shared, its kind, and adds the queries its callers need::

    class TrainingJobs(Repository[TrainingJob]):
        collection = RUNS
        record_type = TrainingJob
        kind = "train-job"
        noun = "training job"
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from mlcycle.common.errors import NotFound
from mlcycle.common.store import Store
from mlcycle.common.store.base import Document, Filters, SortBy


class StoredRecord(BaseModel):
    """A record kept in the store under its ``id``.

    Unknown fields are ignored on read, so a document written by a newer
    version still loads; every field a service writes is declared on its type.
    """

    model_config = ConfigDict(extra="ignore")

    id: str

    def to_document(self) -> Document:
        """The stored form: JSON types only."""
        return self.model_dump(mode="json")


R = TypeVar("R", bound=StoredRecord)


@dataclass(frozen=True)
class RecordPage(Generic[R]):
    """One page of records; pass ``next_cursor`` back for the next (None at the end)."""

    items: list[R]
    next_cursor: str | None = None


class Repository(Generic[R]):
    """Typed reads and idempotent writes of one record type."""

    collection: ClassVar[str]
    record_type: type[R]
    # The value of the ``kind`` field in a collection shared by several record types.
    kind: ClassVar[str | None] = None
    # How NotFound names a missing record: "no <noun> 'x'".
    noun: ClassVar[str] = "record"

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- reads -----------------------------------------------------------------------------

    def get(self, record_id: str) -> R | None:
        """The record with ``record_id``, or None (also when the id holds another kind)."""
        return self._load(self.store.get(self.collection, record_id))

    def require(self, record_id: str) -> R:
        """The record with ``record_id``, or :class:`NotFound` naming it."""
        record = self.get(record_id)
        if record is None:
            raise NotFound(f"no {self.noun} {record_id!r}", details={"id": record_id})
        return record

    def get_many(self, record_ids: Sequence[str]) -> dict[str, R]:
        """The records among ``record_ids`` that exist, keyed by id."""
        found = self.store.get_many(self.collection, record_ids)
        loaded = {doc_id: self._load(doc) for doc_id, doc in found.items()}
        return {doc_id: record for doc_id, record in loaded.items() if record is not None}

    def page(
        self,
        *,
        filters: Filters | None = None,
        limit: int = 50,
        cursor: str | None = None,
        sort: SortBy | None = None,
        query: str | None = None,
    ) -> RecordPage[R]:
        """One page of matching records, sorted and paged by the store itself."""
        found = self.store.search(
            self.collection,
            query=query,
            filters=self._filters(filters),
            limit=limit,
            cursor=cursor,
            sort=sort,
        )
        items = [record for record in map(self._load, found.items) if record is not None]
        return RecordPage(items=items, next_cursor=found.next_cursor)

    def scan(self, filters: Filters | None = None, batch_size: int = 1000) -> Iterator[R]:
        """Every matching record in id order, a page at a time (constant memory)."""
        for doc in self.store.scan(self.collection, self._filters(filters), batch_size):
            record = self._load(doc)
            if record is not None:
                yield record

    def count(self, filters: Filters | None = None) -> int:
        """How many records match ``filters``."""
        return self.store.count(self.collection, self._filters(filters))

    # -- writes ----------------------------------------------------------------------------

    def save(self, record: R) -> R:
        """Insert or replace ``record`` by id; durable when this returns."""
        self.store.upsert(self.collection, [self._dump(record)])
        return record

    def save_all(self, records: Iterable[R]) -> int:
        """Insert or replace ``records`` in one write; how many distinct ids were written."""
        return self.store.upsert(self.collection, [self._dump(r) for r in records])

    # -- conversion ------------------------------------------------------------------------

    def _filters(self, filters: Filters | None) -> Filters | None:
        if self.kind is None:
            return filters
        return {**(filters or {}), "kind": self.kind}

    def _load(self, doc: Mapping[str, Any] | None) -> R | None:
        if doc is None or (self.kind is not None and doc.get("kind") != self.kind):
            return None
        return self.record_type.model_validate(doc)

    def _dump(self, record: R) -> Document:
        doc = record.to_document()
        if self.kind is not None:
            doc["kind"] = self.kind
        return doc

"""Labels in the ``labels`` collection: by run and item, by run and split."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from mlcycle.common.store import LABELS
from mlcycle.contracts.labels import Label, LabelDecision, label_id
from mlcycle.contracts.repository import RecordPage, Repository


class Labels(Repository[Label]):
    """Labels of every run, live labels included (run ``live-<task>``)."""

    collection = LABELS
    record_type = Label
    noun = "label"

    def of_item(self, run: str, item_id: str) -> Label | None:
        """``item_id``'s label in ``run``, or None."""
        return self.get(label_id(run, item_id))

    def first_of_item(self, runs: Sequence[str], item_id: str) -> Label | None:
        """``item_id``'s label in the first of ``runs`` that labeled it, or None."""
        for run in dict.fromkeys(runs):
            label = self.of_item(run, item_id)
            if label is not None:
                return label
        return None

    def in_run(self, run: str, item_ids: Sequence[str]) -> dict[str, Label]:
        """The labels ``run`` gave to ``item_ids``, by item id (items it did not label left out)."""
        found = self.get_many([label_id(run, item) for item in item_ids])
        return {label.item_id: label for label in found.values()}

    def decisions(self, label_ids: Sequence[str]) -> dict[str, LabelDecision]:
        """The decisions of the labels among ``label_ids`` that exist, by label id.

        Only the three deciding fields are read: a run compares every label it
        writes with the previous run's, and full records would cost more than
        the comparison.
        """
        found = self.store.get_many(self.collection, label_ids)
        return {
            doc_id: LabelDecision(int(doc["label"]), str(doc["split"]), float(doc["probability"]))
            for doc_id, doc in found.items()
        }

    def of_split(self, run: str, split: str, batch_size: int = 1000) -> Iterator[Label]:
        """Every label of ``run`` in ``split``, in id (hence item id) order."""
        return self.scan({"run": run, "split": split}, batch_size=batch_size)

    def item_ids(self, run: str, split: str) -> list[str]:
        """The ids of the items ``run`` labeled into ``split``, in order.

        Only the item ids are read, so a label written by an older version
        that lacks a field still counts.
        """
        docs = self.store.scan(self.collection, {"run": run, "split": split})
        return [str(doc["item_id"]) for doc in docs]

    def page_of_run(
        self, run: str, *, split: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> RecordPage[Label]:
        """One page of ``run``'s labels (of ``split`` only, when given), in id order."""
        filters = {"run": run} if split is None else {"run": run, "split": split}
        return self.page(filters=filters, limit=limit, cursor=cursor)

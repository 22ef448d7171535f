"""Every English corpus of ../shared/data as one binary toxicity task, for the benchmarks.

Read at run time with the project's own importers, never copied. Per corpus:
the comments, their crowd votes under the ``toxicity`` task, the labeler's
``majority`` soft labels, and the labeler's ``hash_split`` of each id. An item
whose votes tie exactly (possible with an even number of votes: HS-Brexit's
six, ConvAbuse's two or four) has no majority and is left out: neither label
would be the crowd's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlcycle.contracts.comments import Comment, Vote
from mlcycle.contracts.splits import hash_split
from mlcycle.importers import get_importer
from mlcycle.labeler.aggregate import aggregate
from mlcycle.labeler.votes import VoteMatrix

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TASK = "toxicity"
SPLITS = ("train", "dev", "test")

# corpus name -> (importer format, files under DATA). The names are the sources the
# importers record on each comment.
ENGLISH: dict[str, tuple[str, tuple[str, ...]]] = {
    "davidson": ("davidson", ("davidson_hate_offensive/labeled_data.csv.gz",)),
    "md-agreement": (
        "lewidi",
        tuple(f"md_agreement/MD-Agreement_{s}.json.gz" for s in ("train", "dev", "test")),
    ),
    "convabuse": (
        "lewidi",
        tuple(f"convabuse/ConvAbuse_{s}.json.gz" for s in ("train", "dev", "test")),
    ),
    "hs-brexit": (
        "lewidi",
        tuple(f"hs_brexit/HS-Brexit_{s}.json.gz" for s in ("train", "dev", "test")),
    ),
    "hatexplain": (
        "hatexplain",
        tuple(f"hatexplain_valtest/hatexplain_{s}.jsonl.gz" for s in ("validation", "test")),
    ),
}


@dataclass(frozen=True)
class Corpus:
    """Items of one or more corpora: text, source corpus, crowd label, soft label, split."""

    ids: np.ndarray  # str (n,)
    texts: list[str]
    sources: np.ndarray  # str (n,)
    labels: np.ndarray  # int64 (n,), 1 = toxic by the crowd's majority
    soft: np.ndarray  # float32 (n, 2), each class's share of the votes
    splits: np.ndarray  # str (n,)

    def __len__(self) -> int:
        return len(self.texts)

    def rows(self, *, sources: tuple[str, ...], splits: tuple[str, ...] = SPLITS) -> np.ndarray:
        """Row numbers of the items from ``sources`` in ``splits``."""
        mask = np.isin(self.sources, sources) & np.isin(self.splits, splits)
        return np.flatnonzero(mask)

    def texts_of(self, rows: np.ndarray) -> list[str]:
        return [self.texts[i] for i in rows]

    def names(self) -> list[str]:
        return list(dict.fromkeys(self.sources.tolist()))


def available(data: Path = DATA) -> list[str]:
    """The English corpora whose files are all present under ``data``."""
    return [
        name
        for name, (_, files) in ENGLISH.items()
        if all((data / file).is_file() for file in files)
    ]


def load(names: list[str], data: Path = DATA) -> Corpus:
    """The items of corpora ``names`` with a crowd majority on ``toxicity``."""
    parts = [_load_one(name, data) for name in names]
    return Corpus(
        ids=np.concatenate([p.ids for p in parts]),
        texts=[t for p in parts for t in p.texts],
        sources=np.concatenate([p.sources for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        soft=np.concatenate([p.soft for p in parts]),
        splits=np.concatenate([p.splits for p in parts]),
    )


def _load_one(name: str, data: Path) -> Corpus:
    fmt, files = ENGLISH[name]
    comments: dict[str, Comment] = {}
    votes: list[tuple[str, str, int]] = []
    for record in get_importer(fmt).read([data / f for f in files]):
        if isinstance(record, Comment):
            comments[record.id] = record
        elif isinstance(record, Vote) and record.task == TASK:
            votes.append((record.item_id, record.annotator_id, int(record.label)))
    ids = list(comments)
    matrix = VoteMatrix.from_triplets(votes, 2, item_ids=ids)
    soft = aggregate(matrix, "majority").probs[: len(ids)].astype(np.float32)
    voted = np.isin(np.array(ids), np.array([v[0] for v in votes]))
    decided = voted & (np.abs(soft[:, 1] - 0.5) > 1e-6)
    keep = np.flatnonzero(decided)
    return Corpus(
        ids=np.array([ids[i] for i in keep]),
        texts=[comments[ids[i]].text for i in keep],
        sources=np.full(len(keep), name),
        labels=(soft[keep, 1] > 0.5).astype(np.int64),
        soft=soft[keep],
        splits=np.array([hash_split(ids[i]) for i in keep]),
    )

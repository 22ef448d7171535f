"""Made-up comments and crowd votes shaped like Wikipedia Talk Labels, for demos and scale tests.

Nothing here is real text: comments are strings of ordinary words, and the
"toxic" ones also carry a few insults from a small fixed list, so a model has
something to learn and a benchmark has a ground truth. Each synthetic worker
has a fixed reliability and flips the true label with the complementary
probability, so vote aggregation (majority vs Dawid-Skene) has something to
recover. The hidden truth is kept in ``metadata["true_toxicity"]``.

The same seed gives the same records, byte for byte.
"""

from __future__ import annotations

import csv
import gzip
import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from mlcycle.contracts.comments import Comment, Vote

SOURCE = "synthetic"
NEUTRAL_WORDS = (
    "article section source edit page talk thanks please review citation added removed "
    "reference history policy consensus discussion sentence paragraph link image table "
    "template version revert change agree disagree think article's claim fact date year "
    "city river album song team season election party book author film company school "
    "the a of and to in is that for it on with as was this be by are from at or an"
).split()
TOXIC_WORDS = (
    "idiot stupid moron loser pathetic dumb jerk clown garbage worthless ignorant fool "
    "shut-up nonsense liar hate"
).split()
SPLITS = (("train", 0.6), ("dev", 0.2), ("test", 0.2))


def synthetic_records(
    n_comments: int,
    *,
    votes_per_comment: int = 10,
    n_annotators: int = 500,
    toxic_share: float = 0.15,
    seed: int = 0,
) -> Iterator[Comment | Vote]:
    """Yield ``n_comments`` comments, each followed by its ``votes_per_comment`` votes."""
    rng = random.Random(seed)
    # Most workers are careful, some are noisy: what makes aggregation matter.
    reliability = [rng.uniform(0.6, 0.98) for _ in range(n_annotators)]
    per_item = min(votes_per_comment, n_annotators)
    rev_id = 1000
    for _ in range(n_comments):
        rev_id += rng.randint(1, 9)
        toxic = rng.random() < toxic_share
        yield _comment(rng, str(rev_id), toxic)
        for worker in rng.sample(range(n_annotators), per_item):
            yield _vote(rng, str(rev_id), worker, toxic, reliability[worker])


def _comment(rng: random.Random, item_id: str, toxic: bool) -> Comment:
    words = rng.choices(NEUTRAL_WORDS, k=rng.randint(5, 40))
    insults = rng.randint(1, 3) if toxic else int(rng.random() < 0.03)  # a little noise
    for _ in range(insults):
        words.insert(rng.randrange(len(words) + 1), rng.choice(TOXIC_WORDS))
    if rng.random() < 0.05:
        words.insert(rng.randrange(1, len(words)), "\n")
    text = " ".join(words).replace(" \n ", "\n")
    split = rng.choices([s for s, _ in SPLITS], weights=[w for _, w in SPLITS])[0]
    metadata = {
        "year": rng.randint(2001, 2015),
        "logged_in": rng.random() < 0.8,
        "ns": rng.choice(("article", "user")),
        "sample": rng.choice(("random", "blocked")),
        "split": split,
        "true_toxicity": int(toxic),
    }
    return Comment(id=item_id, text=text, source=SOURCE, metadata=metadata)


def _vote(rng: random.Random, item_id: str, worker: int, toxic: bool, reliability: float) -> Vote:
    label = int(toxic) if rng.random() < reliability else int(not toxic)
    score = float(rng.choice((-2, -1)) if label else rng.choice((0, 0, 1, 1, 2)))
    return Vote(
        item_id=item_id,
        annotator_id=str(worker),
        label=label,
        score=score,
        task="toxicity",
        source=SOURCE,
    )


def write_wikidetox_files(
    directory: Path, n_comments: int, *, compress: bool = False, **options: object
) -> list[Path]:
    """Write synthetic records as the two Wikipedia Talk Labels TSVs; return their paths.

    ``options`` go to :func:`synthetic_records`. The files use the release's
    conventions (``rev_id`` as ``1234.0``, ``NEWLINE_TOKEN``), so they exercise
    the real importer.
    """
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".tsv.gz" if compress else ".tsv"
    comments_path = directory / f"toxicity_annotated_comments{suffix}"
    votes_path = directory / f"toxicity_annotations{suffix}"
    with _open_write(comments_path) as c_handle, _open_write(votes_path) as v_handle:
        comments = csv.writer(c_handle, delimiter="\t", lineterminator="\n")
        votes = csv.writer(v_handle, delimiter="\t", lineterminator="\n")
        comments.writerow(["rev_id", "comment", "year", "logged_in", "ns", "sample", "split"])
        votes.writerow(["rev_id", "worker_id", "toxicity", "toxicity_score"])
        for record in synthetic_records(n_comments, **options):  # type: ignore[arg-type]
            if isinstance(record, Comment):
                meta = record.metadata
                text = record.text.replace("\n", "NEWLINE_TOKEN").replace("\t", "TAB_TOKEN")
                columns = ("year", "logged_in", "ns", "sample", "split")
                comments.writerow([f"{record.id}.0", text, *(meta[c] for c in columns)])
            else:
                votes.writerow(
                    [f"{record.item_id}.0", record.annotator_id, record.label, record.score]
                )
    return [comments_path, votes_path]


def _open_write(path: Path) -> TextIO:
    if path.name.endswith(".gz"):
        # mtime 0 so that the same seed gives the same bytes.
        raw = gzip.GzipFile(path, "wb", mtime=0)
        return io.TextIOWrapper(raw, encoding="utf-8", newline="")
    return open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115

"""HateXplain, the corpus of each comment, and every corpus of a folder at once.

Every file here is small and made up by the test, in the layout of the real release.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pytest

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.comments import Comment, Vote
from mlcycle.featurization.config import MetadataConfig
from mlcycle.featurization.metadata import fit_metadata
from mlcycle.importers import get_importer
from mlcycle.importers.corpora import (
    CorporaImporter,
    corpus_of,
    find_corpora,
    format_with_selection,
)

pytestmark = pytest.mark.unit


def read_all(fmt: str, paths: list[Path]) -> tuple[list[Comment | Vote], object]:
    importer = get_importer(fmt)
    records = list(importer.read(paths))
    return records, importer.stats


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def post(post_id: str, labels: list, ids: list, tokens: list[str], **extra: object) -> dict:
    return {
        "id": post_id,
        "annotators": {
            "label": labels,
            "annotator_id": ids,
            "target": [["Women"] if label != 1 else ["None"] for label in labels],
        },
        "rationales": extra.pop("rationales", []),
        "post_tokens": tokens,
        **extra,
    }


def hatexplain_file(path: Path, posts: list[dict | str]) -> Path:
    lines = [p if isinstance(p, str) else json.dumps(p) for p in posts]
    return write(path, ("\n".join(lines) + "\n").encode())


# --------------------------------------------------------------------------- hatexplain


def test_hatexplain_posts_votes_under_two_tasks_and_rationales(tmp_path: Path) -> None:
    mask = [[0, 1, 1], [0, 0, 1]]
    path = hatexplain_file(
        tmp_path / "hatexplain_validation.jsonl.gz",
        [
            post("11_twitter", [0, 2, 2], [83, 3, 51], ["you", "awful", "lot"], rationales=mask),
            post("12_gab", [1, 1, 0], [4, 5, 6], ["nice", "day"]),
        ],
    )
    records, stats = read_all("hatexplain", [path])
    comments = [r for r in records if isinstance(r, Comment)]
    votes = [r for r in records if isinstance(r, Vote)]

    assert [(c.id, c.text, c.source) for c in comments] == [
        ("hatexplain-11_twitter", "you awful lot", "hatexplain"),
        ("hatexplain-12_gab", "nice day", "hatexplain"),
    ]
    assert comments[0].metadata == {
        "dataset": "hatexplain",
        "official_split": "validation",
        "post_tokens": ["you", "awful", "lot"],
        "rationales": mask,
        "targets": [["Women"], ["Women"], ["Women"]],
    }
    # No ``split``: the labeler would put every post in dev or test and none in train.
    assert "split" not in comments[0].metadata
    toxicity = [(v.item_id[-3:], v.annotator_id, v.label) for v in votes if v.task == "toxicity"]
    assert toxicity == [
        ("ter", "hatexplain-83", 1),
        ("ter", "hatexplain-3", 1),
        ("ter", "hatexplain-51", 1),
        ("gab", "hatexplain-4", 0),
        ("gab", "hatexplain-5", 0),
        ("gab", "hatexplain-6", 1),
    ]
    # Coded like Davidson's class: 0 hate speech, 1 offensive, 2 neither.
    classes = [v.label for v in votes if v.task == "hate_offensive"]
    assert classes == [0, 1, 1, 2, 2, 0]
    assert all(v.source == "hatexplain" and not v.synthetic_annotator for v in votes)
    assert stats.skipped == 0


def test_hatexplain_reads_the_authors_spelling_and_skips_bad_rows(tmp_path: Path) -> None:
    authors = {
        "id": "7_gab",
        "annotators": [
            {"label": "offensive", "annotator_id": 1, "target": ["None"]},
            {"label": "normal", "annotator_id": 2, "target": ["None"]},
            {"label": "shouting", "annotator_id": 3, "target": []},
            {"label": "normal", "annotator_id": 2, "target": []},
        ],
        "rationales": [],
        "post_tokens": ["hey", "there"],
    }
    path = hatexplain_file(
        tmp_path / "hatexplain_test.jsonl",
        [
            authors,
            "{not json",
            json.dumps({"id": "8_gab", "annotators": {}, "post_tokens": []}),
            json.dumps(post("9_gab", [0, 1], [1, 2, 3], ["lengths", "differ"])),
            "",
        ],
    )
    records, stats = read_all("hatexplain", [path])
    assert [r.id for r in records if isinstance(r, Comment)] == ["hatexplain-7_gab"]
    votes = [(v.annotator_id, v.task, v.label) for v in records if isinstance(v, Vote)]
    assert votes == [
        ("hatexplain-1", "toxicity", 1),
        ("hatexplain-1", "hate_offensive", 1),
        ("hatexplain-2", "toxicity", 0),
        ("hatexplain-2", "hate_offensive", 2),
    ]
    assert stats.skipped_reasons == {
        "bad label": 1,
        "duplicate annotator": 1,
        "not JSON": 1,
        "post without tokens": 1,
        "unreadable annotators": 1,
    }


def test_hatexplain_ids_are_stable_across_imports(tmp_path: Path) -> None:
    path = hatexplain_file(
        tmp_path / "hatexplain_test.jsonl", [post("5_twitter", [1, 1, 1], [1, 2, 3], ["ok"])]
    )
    first, _ = read_all("hatexplain", [path])
    second, _ = read_all("hatexplain", [tmp_path])
    assert first == second


def test_hatexplain_metadata_never_becomes_a_feature(tmp_path: Path) -> None:
    """Tokens, rationales and targets are lists; the corpus and its split name the source."""
    path = hatexplain_file(
        tmp_path / "hatexplain_test.jsonl",
        [
            post(f"{i}_gab", [i % 3, 1, 0], [1, 2, 3], ["w"] * (i + 1), rationales=[[1] * (i + 1)])
            for i in range(6)
        ],
    )
    records, _ = read_all("hatexplain", [path])
    metadata = [c.metadata for c in records if isinstance(c, Comment)]
    encoder = fit_metadata(metadata, MetadataConfig())
    assert encoder.fields == frozenset()
    # Named explicitly, a list is still no value: every row falls in the missing slot.
    named = fit_metadata(metadata, MetadataConfig(categorical=("rationales", "post_tokens")))
    assert all(len(c.categories) == 0 for c in named.categorical)


def test_lewidi_and_corpus_fields_stay_out_of_inferred_features() -> None:
    rows = [
        {"dataset": "md-agreement", "lang": "en", "annotation_task": "offensiveness detection",
         "official_split": "test", "split": "train", "hard_label": 1, "score": 0.5},
        {"dataset": "armis", "lang": "ar", "annotation_task": "misogyny and sexism detection",
         "official_split": "dev", "split": "dev", "hard_label": 0, "score": 1.5},
    ]  # fmt: skip
    assert fit_metadata(rows, MetadataConfig()).fields == frozenset({"score"})


# --------------------------------------------------------------------------- sources


def test_lewidi_comments_and_votes_name_their_corpus(tmp_path: Path) -> None:
    item = {"text": "t", "annotators": "Ann1,Ann2", "annotations": "0,1", "split": "dev"}
    path = write(tmp_path / "HS-Brexit_dev.json", json.dumps({"1": item}).encode())
    records, _ = read_all("lewidi", [path])
    assert {r.source for r in records} == {"hs-brexit"}


# --------------------------------------------------------------------------- every corpus


def davidson_csv(rows: list[tuple[int, int, int, int, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["", "count", "hate_speech", "offensive_language", "neither", "class", "tweet"])
    for row_id, hate, offensive, neither, text in rows:
        counts = [hate, offensive, neither]
        writer.writerow([row_id, sum(counts), *counts, counts.index(max(counts)), text])
    return out.getvalue().encode()


def lewidi_json(prefix: str, n: int, split: str) -> bytes:
    items = {
        str(i): {"text": f"{prefix} text {i}", "annotators": "Ann1,Ann2,Ann3",
                 "annotations": "1,0,1" if i % 2 else "0,0,1", "split": split}
        for i in range(1, n + 1)
    }  # fmt: skip
    return json.dumps(items).encode()


def corpus_folder(root: Path) -> Path:
    """Six made-up corpora in the shared folder's layout, with the files that are not corpora."""
    write(root / "davidson_hate_offensive" / "labeled_data.csv.gz",
          davidson_csv([(0, 0, 3, 0, "made up one"), (4, 1, 0, 2, "made up two")]))
    write(root / "davidson_hate_offensive" / "SOURCE.md", b"# about\n")
    for folder, prefix, n in (("md_agreement", "MD-Agreement", 3), ("convabuse", "ConvAbuse", 1),
                              ("hs_brexit", "HS-Brexit", 2), ("armis", "ArMIS", 2)):
        for split in ("train", "dev"):
            write(root / folder / f"{prefix}_{split}.json.gz", lewidi_json(prefix, n, split))
        write(root / folder / f"{folder}_items.csv.gz", b"item_id,split,text\n")
        write(root / folder / "lewidi2023_readme.md", b"readme\n")
    hatexplain_file(root / "hatexplain_valtest" / "hatexplain_validation.jsonl.gz",
                    [post("1_gab", [1, 2, 2], [1, 2, 3], ["a", "b"])])
    hatexplain_file(root / "hatexplain_valtest" / "hatexplain_test.jsonl.gz",
                    [post("2_gab", [0, 0, 1], [1, 2, 4], ["c"])])
    write(root / "hatexplain_valtest" / "hatexplain_valtest_votes.csv.gz", b"item_id\n")
    return root  # fmt: skip


def sources(records: list[Comment | Vote]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        if isinstance(record, Comment):
            counts[record.source or ""] = counts.get(record.source or "", 0) + 1
    return counts


def test_every_corpus_of_a_folder_is_recognised_by_its_files(tmp_path: Path) -> None:
    root = corpus_folder(tmp_path / "data")
    found = find_corpora([root])
    assert list(found) == [
        "davidson", "md-agreement", "convabuse", "hs-brexit", "hatexplain", "armis"
    ]  # fmt: skip
    assert [p.name for p in found["hatexplain"]] == [
        "hatexplain_test.jsonl.gz",
        "hatexplain_validation.jsonl.gz",
    ]
    assert corpus_of(Path("x/armis_items.csv.gz")) is None
    assert corpus_of(Path("MD-Agreement_train.json")) == "md-agreement"

    records, stats = read_all("corpora", [root])
    assert sources(records) == {
        "davidson": 2, "md-agreement": 6, "convabuse": 2, "hs-brexit": 4, "hatexplain": 2,
        "armis": 4,
    }  # fmt: skip
    assert stats.skipped == 0
    # The tasks: one binary toxicity task over every corpus, the 3-class one where it exists.
    tasks = {(r.source, r.task) for r in records if isinstance(r, Vote)}
    assert {source for source, task in tasks if task == "toxicity"} == set(sources(records))
    assert {source for source, task in tasks if task == "hate_offensive"} == {
        "davidson",
        "hatexplain",
    }
    assert stats.comments == 20 and stats.votes == len(records) - 20


def test_the_english_mix_leaves_arabic_out_and_only_picks_corpora(tmp_path: Path) -> None:
    root = corpus_folder(tmp_path / "data")
    english, _ = read_all("corpora:english", [root])
    assert set(sources(english)) == {
        "davidson", "md-agreement", "convabuse", "hs-brexit", "hatexplain"
    }  # fmt: skip
    two, _ = read_all("corpora:hatexplain, Davidson", [root])
    assert set(sources(two)) == {"davidson", "hatexplain"}
    importer = get_importer("corpora:armis,english")
    assert isinstance(importer, CorporaImporter)
    with pytest.raises(InvalidInput, match="no English corpus"):
        importer.read([root])


def test_ids_are_the_same_through_the_mix_as_alone(tmp_path: Path) -> None:
    root = corpus_folder(tmp_path / "data")
    mixed, _ = read_all("corpora", [root])
    alone, _ = read_all("lewidi", [root / "md_agreement"])
    assert [r for r in mixed if r.source == "md-agreement"] == alone
    again, _ = read_all("corpora", [root])
    assert again == mixed


def test_selections_that_cannot_work_are_refused(tmp_path: Path) -> None:
    root = corpus_folder(tmp_path / "data")
    with pytest.raises(InvalidInput, match="unknown corpus 'wiki'"):
        get_importer("corpora:wiki")
    with pytest.raises(InvalidInput, match="only corpora"):
        get_importer("davidson:english")
    with pytest.raises(InvalidInput, match="'hatexplain' not found"):
        get_importer("corpora:hatexplain").read([root / "armis"])
    with pytest.raises(InvalidInput, match="SOURCE.md is not a file of a known corpus"):
        get_importer("corpora").read([root / "davidson_hate_offensive" / "SOURCE.md"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("not a corpus")
    with pytest.raises(InvalidInput, match="no corpus found"):
        get_importer("corpora").read([tmp_path / "empty"])
    single, _ = read_all("corpora", [root / "hs_brexit" / "HS-Brexit_dev.json.gz"])
    assert sources(single) == {"hs-brexit": 2}
    with pytest.raises(InvalidInput, match="no such file"):
        get_importer("corpora").read([tmp_path / "nowhere"])


def test_cli_options_become_the_selection() -> None:
    assert format_with_selection("corpora", None, False) == "corpora"
    assert format_with_selection("corpora", None, True) == "corpora:english"
    assert format_with_selection("corpora", ["davidson,armis", "hatexplain"], False) == (
        "corpora:davidson,armis,hatexplain"
    )
    assert format_with_selection("davidson", None, False) == "davidson"
    with pytest.raises(InvalidInput, match="--format corpora"):
        format_with_selection("davidson", None, True)

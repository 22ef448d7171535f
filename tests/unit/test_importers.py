"""Dataset importers, fed with small files each test writes in the real formats."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import shutil
import tracemalloc
from pathlib import Path

import orjson
import pytest

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.comments import Comment, Vote
from mlcycle.importers import FORMATS, get_importer
from mlcycle.importers.lewidi import ObjectStream, dataset_and_split
from mlcycle.importers.synthetic import synthetic_records, write_wikidetox_files

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def read_all(fmt: str, paths: list[Path]) -> tuple[list[Comment | Vote], object]:
    importer = get_importer(fmt)
    records = list(importer.read(paths))
    return records, importer.stats


def gzip_copy(path: Path) -> Path:
    target = path.with_name(path.name + ".gz")
    with open(path, "rb") as src, gzip.open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


def write_tsv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter="\t", lineterminator="\n").writerows(rows)
    return path


# --------------------------------------------------------------------------- wikidetox


def wikidetox_pair(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    comments = write_tsv(
        folder / "toxicity_annotated_comments.tsv",
        [
            ["rev_id", "comment", "year", "logged_in", "ns", "sample", "split"],
            ["2232.0", "  First line.NEWLINE_TOKENSecond TAB_TOKENcell  ", "2002", "True",
             "article", "random", "train"],
            ["4216.0", 'She said "stop" and left', "2015", "False", "user", "blocked", "test"],
            ["oops", "a rev_id that is not a number", "2003", "True", "user", "random", "dev"],
            ["9999.0", "too", "few"],
        ],
    )  # fmt: skip
    votes = write_tsv(
        folder / "toxicity_annotations.tsv",
        [
            ["rev_id", "worker_id", "toxicity", "toxicity_score"],
            ["2232.0", "723", "0", "1.0"],
            ["2232.0", "4000", "1", "-2.0"],
            ["4216.0", "723", "0.0", "0.0"],
            ["4216.0", "88", "maybe", "0.0"],
        ],
    )
    return comments, votes


def test_wikidetox_reads_the_pair_in_any_order_comments_first(tmp_path: Path) -> None:
    comments, votes = wikidetox_pair(tmp_path)
    records, stats = read_all("wikidetox", [votes, comments])

    assert [type(r).__name__ for r in records] == ["Comment"] * 2 + ["Vote"] * 3
    first, second = records[0], records[1]
    assert first == Comment(
        id="2232",
        text="First line.\nSecond \tcell",
        source="wikidetox",
        metadata={"year": 2002, "logged_in": True, "ns": "article", "sample": "random",
                  "split": "train"},
    )  # fmt: skip
    assert second.text == 'She said "stop" and left'
    assert second.metadata["logged_in"] is False and second.metadata["split"] == "test"
    assert records[3] == Vote(
        item_id="2232", annotator_id="4000", label=1, score=-2.0, task="toxicity",
        source="wikidetox",
    )  # fmt: skip
    assert stats.comments == 2 and stats.votes == 3 and stats.skipped == 3
    assert stats.skipped_reasons == {
        "bad rev_id": 1,
        "wrong number of columns": 1,
        "bad label or score": 1,
    }
    assert any("toxicity_annotated_comments.tsv:5" in e for e in stats.examples)


def test_wikidetox_folder_and_gzip_give_the_same_records(tmp_path: Path) -> None:
    comments, votes = wikidetox_pair(tmp_path / "plain")
    expected, _ = read_all("wikidetox", [comments, votes])

    packed = tmp_path / "packed"
    packed.mkdir()
    for path in (comments, votes):
        gzip_copy(path).rename(packed / (path.name + ".gz"))
    # The release's third file sits in the same folder and must be ignored.
    write_tsv(packed / "toxicity_worker_demographics.tsv", [["worker_id", "gender"], ["1", "f"]])

    from_folder, stats = read_all("wikidetox", [packed])
    assert from_folder == expected
    assert len(stats.files) == 2


def test_wikidetox_attack_release_uses_its_own_task(tmp_path: Path) -> None:
    votes = write_tsv(
        tmp_path / "attack_annotations.tsv",
        [["rev_id", "worker_id", "quoting_attack", "attack"], ["37675.0", "1362", "0.0", "1.0"]],
    )
    records, _ = read_all("wikidetox", [votes])
    assert records == [
        Vote(item_id="37675", annotator_id="1362", label=1, task="attack", source="wikidetox")
    ]


def test_wikidetox_refuses_a_file_of_another_shape(tmp_path: Path) -> None:
    other = write_tsv(tmp_path / "x.tsv", [["a", "b"], ["1", "2"]])
    with pytest.raises(InvalidInput, match="neither a Wikipedia Talk Labels"):
        get_importer("wikidetox").read([other])
    with pytest.raises(InvalidInput, match="no such file"):
        get_importer("wikidetox").read([tmp_path / "missing.tsv"])


# --------------------------------------------------------------------------- davidson

DAVIDSON_HEADER = ["", "count", "hate_speech", "offensive_language", "neither", "class", "tweet"]


def davidson_file(path: Path) -> Path:
    with open(path, "w", encoding="ascii", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(DAVIDSON_HEADER)
        writer.writerow(["0", "3", "0", "0", "3", "2", "plain &amp; simple"])
        writer.writerow(["7", "4", "1", "2", "1", "1", 'two\nlines, "quoted"'])
        writer.writerow(["8", "3", "1", "1", "0", "0", "counts that\ndo not add up"])
        writer.writerow(["12", "3", "2", "1", "0", "0", "after the bad row"])
    return path


def test_davidson_keeps_embedded_newlines_and_expands_counts(tmp_path: Path) -> None:
    records, stats = read_all("davidson", [davidson_file(tmp_path / "labeled_data.csv")])
    comments = [r for r in records if isinstance(r, Comment)]
    votes = [r for r in records if isinstance(r, Vote)]

    assert [c.id for c in comments] == ["davidson-0", "davidson-7", "davidson-12"]
    assert comments[0].text == "plain &amp; simple"  # entities are the featurizer's job
    assert comments[1].text == 'two\nlines, "quoted"'
    assert comments[1].metadata == {"class": 1}
    assert stats.skipped == 1 and stats.skipped_reasons == {"inconsistent vote counts": 1}
    assert stats.examples[0].startswith("labeled_data.csv:5:")  # its first physical line

    row7 = [v for v in votes if v.item_id == "davidson-7"]
    assert len(row7) == 8  # 4 workers x 2 tasks
    assert all(v.synthetic_annotator and v.source == "davidson" for v in row7)
    binary = sorted((v.annotator_id, v.label) for v in row7 if v.task == "toxicity")
    classes = sorted((v.annotator_id, v.label) for v in row7 if v.task == "hate_offensive")
    assert [label for _, label in classes] == [0, 1, 1, 2]
    assert [label for _, label in binary] == [1, 1, 1, 0]
    assert (
        [a for a, _ in binary]
        == [a for a, _ in classes]
        == [f"davidson-synthetic-7-{n}" for n in range(4)]
    )
    assert stats.votes == 2 * (3 + 4 + 3)


def test_davidson_reimport_yields_identical_ids(tmp_path: Path) -> None:
    path = davidson_file(tmp_path / "labeled_data.csv")
    first, _ = read_all("davidson", [path])
    second, _ = read_all("davidson", [gzip_copy(path)])
    assert [r.id for r in first] == [r.id for r in second]
    assert len({r.id for r in first}) == len(first)  # and no two votes collide


def test_davidson_refuses_a_file_without_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "labeled_data.csv"
    path.write_text("id,tweet\n1,hello\n")
    with pytest.raises(InvalidInput, match="not a Davidson"):
        list(get_importer("davidson").read([path]))


# --------------------------------------------------------------------------- lewidi


def lewidi_file(path: Path, items: dict[str, dict]) -> Path:
    data = json.dumps(items, indent=4).encode()
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def md_item(text: str, annotators: str, annotations: str, **extra: object) -> dict:
    return {
        "text": text,
        "annotation task": "offensiveness detection",
        "number of annotations": len(annotators.split(",")),
        "annotations": annotations,
        "annotators": annotators,
        "lang": "en",
        "hard_label": "1",
        "soft_label": {"0": 0.4, "1": 0.6},
        "split": "train",
        "other_info": {"domain": "Covid-19"},
        **extra,
    }


def test_lewidi_items_votes_and_metadata(tmp_path: Path) -> None:
    path = lewidi_file(
        tmp_path / "MD-Agreement_train.json.gz",
        {
            "1": md_item("first <user>", "Ann3,Ann9,Ann3", "1,0,0"),
            "2": md_item("second", "Ann1,Ann2", "1,0,1"),  # lengths differ
            "3": md_item("third", "Ann1,Ann2", "1,x"),
        },
    )
    records, stats = read_all("lewidi", [path])
    comments = [r for r in records if isinstance(r, Comment)]
    votes = [r for r in records if isinstance(r, Vote)]

    assert [c.id for c in comments] == [
        "md-agreement-train-1",
        "md-agreement-train-2",
        "md-agreement-train-3",
    ]
    assert comments[0].metadata == {
        "dataset": "md-agreement",
        "split": "train",
        "annotation_task": "offensiveness detection",
        "lang": "en",
        "hard_label": 1,
        "soft_label": {"0": 0.4, "1": 0.6},
        "n_annotations": 3,
        "other_info": {"domain": "Covid-19"},
    }
    assert [(v.item_id, v.annotator_id, v.label) for v in votes] == [
        ("md-agreement-train-1", "md-agreement-Ann3", 1),
        ("md-agreement-train-1", "md-agreement-Ann9", 0),
        ("md-agreement-train-3", "md-agreement-Ann1", 1),
    ]
    assert all(v.task == "toxicity" and v.score is None for v in votes)
    assert stats.skipped_reasons == {
        "duplicate annotator": 1,
        "annotators and annotations differ in length": 1,
        "bad annotation": 1,
    }


def test_lewidi_convabuse_uses_the_user_turn_and_severities(tmp_path: Path) -> None:
    conversation = {"prev_agent": "Hi.", "prev_user": "hello", "agent": "How can I help?",
                    "user": "you are useless"}  # fmt: skip
    item = md_item(json.dumps(conversation), "Ann2,Ann5,Ann7", "-2,1,0")
    item.update(
        {
            "annotation task": "abusivness detection",
            "hard_label": 1,  # an int here, a string elsewhere
            "other_info": {"bot": "E.L.I.Z.A.", "conversation_id(s)": "42",
                           "other_annotations": {"target.system": "1,0,0"}},
            "split": "dev",
        }
    )  # fmt: skip
    records, stats = read_all("lewidi", [lewidi_file(tmp_path / "ConvAbuse_dev.json", {"7": item})])
    comment, *votes = records

    assert comment.id == "convabuse-dev-7"
    assert comment.text == "you are useless"
    assert comment.metadata["context"] == {k: v for k, v in conversation.items() if k != "user"}
    assert comment.metadata["hard_label"] == 1
    assert comment.metadata["other_info"] == {
        "bot": "E.L.I.Z.A.",
        "conversation_id_s": "42",
        "other_annotations": {"target_system": "1,0,0"},
    }
    assert [(v.annotator_id, v.label, v.score) for v in votes] == [
        ("convabuse-Ann2", 1, -2),
        ("convabuse-Ann5", 0, 1),
        ("convabuse-Ann7", 0, 0),
    ]
    assert stats.skipped == 0


def test_lewidi_split_comes_from_the_file_name_and_ids_are_stable(tmp_path: Path) -> None:
    assert dataset_and_split(Path("HS-Brexit_test.json.gz")) == ("hs-brexit", "test")
    assert dataset_and_split(Path("ArMIS_dev.json")) == ("armis", "dev")
    item = md_item("t", "Ann1", "0")
    del item["split"]
    path = lewidi_file(tmp_path / "HS-Brexit_test.json", {"1": item})
    first, _ = read_all("lewidi", [path])
    second, _ = read_all("lewidi", [tmp_path])
    assert first[0].id == "hs-brexit-test-1" and first[0].metadata["split"] == "test"
    assert [r.id for r in first] == [r.id for r in second]


def test_lewidi_broken_json_fails_with_the_file_named(tmp_path: Path) -> None:
    path = tmp_path / "ArMIS_train.json"
    path.write_text('{"1": ' + json.dumps(md_item("ok", "Ann1", "1")) + ', "2": {"text": ')
    importer = get_importer("lewidi")
    stream = importer.read([path])
    assert isinstance(next(stream), Comment)  # what came before the break is delivered
    with pytest.raises(InvalidInput, match="ArMIS_train.json: malformed JSON"):
        list(stream)


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_object_stream_matches_a_whole_document_parse(chunk: int) -> None:
    rng = random.Random(chunk)
    document = {
        str(i): {
            "n": rng.randint(-(10**12), 10**12),
            "f": rng.random() * 10 ** rng.randint(-5, 5),
            "s": "".join(rng.choice('ab "\\\n{}:,é😀') for _ in range(rng.randint(0, 30))),
            "l": [True, None, False, {"x": []}],
        }
        for i in range(50)
    }
    document["tail"] = 12345678901234567890  # a number ending exactly at a chunk edge, sometimes
    text = json.dumps(document, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 2]))
    pairs = list(ObjectStream(io.StringIO(text), chunk_chars=chunk).items())
    assert dict(pairs) == document and len(pairs) == len(document)


def test_lewidi_reads_a_large_file_in_bounded_memory(tmp_path: Path) -> None:
    items = {str(i): md_item("word " * 60, "Ann1,Ann2,Ann3", "0,1,0") for i in range(6000)}
    path = lewidi_file(tmp_path / "Big_train.json", items)
    assert path.stat().st_size > 4_000_000
    tracemalloc.start()
    try:
        count = sum(1 for _ in get_importer("lewidi").read([path]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 6000 * 4
    assert peak < 1_500_000, f"peak {peak:,} bytes: the file was not streamed"


# --------------------------------------------------------------------------- jsonl


def test_jsonl_mixes_comments_and_votes_and_skips_bad_lines(tmp_path: Path) -> None:
    lines = [
        orjson.dumps({"id": "c1", "text": "hello", "lang": "en", "metadata": {"lang": "fr"}}),
        b"",
        orjson.dumps({"item_id": "c1", "annotator_id": "w1", "label": 1, "split": "x", "id": "?"}),
        orjson.dumps({"type": "vote", "item_id": "c1", "annotator_id": "w2", "label": 0.25,
                      "task": "severity"}),
        orjson.dumps({"type": "comment", "id": "c2", "text": "typed", "created_at":
                      "2024-05-01T12:00:00Z"}),
        b"{not json",
        orjson.dumps({"type": "rating", "id": "c3", "text": "?"}),
        orjson.dumps({"id": 3, "text": "a numeric id is not coerced"}),
        orjson.dumps([1, 2]),
        orjson.dumps({"id": "c4", "text": "still read after the bad lines"}),
    ]  # fmt: skip
    path = tmp_path / "mixed.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    records, stats = read_all("jsonl", [path])

    assert [r.id for r in records] == ["c1", "toxicity:c1:w1", "severity:c1:w2", "c2", "c4"]
    assert records[0].metadata == {"lang": "fr"}  # explicit metadata wins over extras
    assert records[1] == Vote(item_id="c1", annotator_id="w1", label=1)
    assert records[3].created_at is not None and records[3].created_at.year == 2024
    assert stats.skipped_reasons == {
        "not JSON": 1,
        "neither a comment nor a vote": 1,
        "invalid comment": 1,
        "not a JSON object": 1,
    }
    assert any("mixed.jsonl.gz:6" in e for e in stats.examples)


def test_jsonl_extra_keys_become_metadata(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(orjson.dumps({"id": "a", "text": "t", "score": 0.5, "tags": ["x"]}) + b"\n")
    records, _ = read_all("jsonl", [path])
    assert records == [Comment(id="a", text="t", metadata={"score": 0.5, "tags": ["x"]})]


# --------------------------------------------------------------------------- csv


def test_csv_comments_table_converts_metadata_sensibly(tmp_path: Path) -> None:
    path = tmp_path / "comments.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "source", "year", "ratio", "logged_in", "zip", "note"])
        writer.writerow(
            ["a1", "multi\nline, with comma", "forum", "2019", "0.5", "true", "007", ""]
        )
        writer.writerow(["a2", "short row"])
        writer.writerow(["", "no id", "", "", "", "", "", ""])
        writer.writerow(["a3", "", "", "-4", "1e3", "False", "0", "n/a"])
    # fmt: skip
    records, stats = read_all("csv", [path])

    assert records == [
        Comment(
            id="a1",
            text="multi\nline, with comma",
            source="forum",
            metadata={"year": 2019, "ratio": 0.5, "logged_in": True, "zip": "007"},
        ),
        Comment(
            id="a3",
            text="",
            metadata={"year": -4, "ratio": 1000.0, "logged_in": False, "zip": 0, "note": "n/a"},
        ),
    ]
    assert stats.skipped_reasons == {"wrong number of columns": 1, "invalid comment": 1}


def test_csv_votes_table_and_tsv(tmp_path: Path) -> None:
    path = tmp_path / "votes.tsv.gz"
    rows = "item_id\tannotator_id\tlabel\tscore\tsplit\nx1\tw1\t1\t-1.5\ttrain\n"
    rows += "x1\tw2\tyes\t\ttrain\nx2\tw1\t0\t\tdev\n"
    path.write_bytes(gzip.compress(rows.encode()))
    records, stats = read_all("csv", [path])

    assert records == [
        Vote(item_id="x1", annotator_id="w1", label=1, score=-1.5),
        Vote(item_id="x2", annotator_id="w1", label=0),
    ]
    assert stats.skipped_reasons == {"invalid vote": 1}


def test_csv_items_table_with_item_id_is_read_as_comments(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("item_id,split,text\ntrain-1,train,hello\n")
    records, _ = read_all("csv", [path])
    assert records == [Comment(id="train-1", text="hello", metadata={"split": "train"})]


def test_csv_without_known_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InvalidInput, match="id,text"):
        list(get_importer("csv").read([path]))


# --------------------------------------------------------------------------- registry, synthetic


def test_registry_names_the_formats_and_gives_fresh_importers() -> None:
    assert set(FORMATS) == {
        "wikidetox", "davidson", "lewidi", "hatexplain", "jsonl", "csv", "corpora"
    }  # fmt: skip
    with pytest.raises(InvalidInput) as raised:
        get_importer("xml")
    assert "wikidetox, davidson, lewidi, hatexplain, jsonl, csv, corpora" in raised.value.message
    assert get_importer("CSV") is not get_importer("csv")


def test_synthetic_records_are_reproducible_and_shaped_like_wikidetox() -> None:
    first = list(synthetic_records(40, votes_per_comment=5, n_annotators=20, seed=7))
    again = list(synthetic_records(40, votes_per_comment=5, n_annotators=20, seed=7))
    other = list(synthetic_records(40, votes_per_comment=5, n_annotators=20, seed=8))
    assert first == again and first != other
    comments = [r for r in first if isinstance(r, Comment)]
    votes = [r for r in first if isinstance(r, Vote)]
    assert len(comments) == 40 and len(votes) == 200
    assert len({c.id for c in comments}) == 40
    assert {c.metadata["split"] for c in comments} <= {"train", "dev", "test"}
    assert all((v.label == 1) == (v.score < 0) for v in votes)
    # Workers mostly agree with the hidden truth, so aggregation has a signal to find.
    truth = {c.id: c.metadata["true_toxicity"] for c in comments}
    agreement = sum(v.label == truth[v.item_id] for v in votes) / len(votes)
    assert 0.65 < agreement < 0.99


def test_synthetic_files_round_trip_through_the_wikidetox_importer(tmp_path: Path) -> None:
    paths = write_wikidetox_files(tmp_path, 30, compress=True, seed=3, votes_per_comment=4)
    records, stats = read_all("wikidetox", paths)
    expected = list(synthetic_records(30, seed=3, votes_per_comment=4))
    assert stats.skipped == 0
    assert sorted(r.id for r in records) == sorted(r.id for r in expected)
    texts = {r.id: r.text for r in expected if isinstance(r, Comment)}
    assert {r.id: r.text for r in records if isinstance(r, Comment)} == texts


# --------------------------------------------------------------------------- the real files


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared real datasets are not present")
@pytest.mark.parametrize(
    ("fmt", "folder", "comments", "votes", "skipped"),
    [
        ("davidson", "davidson_hate_offensive", 24_783, 2 * 80_383, 0),
        # One test item lists the same annotator twice; the repeat is skipped.
        ("lewidi", "md_agreement", 10_753, 53_765 - 1, 1),
        ("lewidi", "convabuse", 4_050, 12_168, 0),
        ("lewidi", "hs_brexit", 1_120, 6_720, 0),
        ("lewidi", "armis", 943, 2_829, 0),
        # Every vote counts under toxicity and hate_offensive.
        ("hatexplain", "hatexplain_valtest", 3_846, 2 * 11_538, 0),
    ],
)
def test_real_files_match_their_published_counts(
    fmt: str, folder: str, comments: int, votes: int, skipped: int
) -> None:
    if not (SHARED / folder).is_dir():
        pytest.skip(f"{folder} is not present")
    _, stats = read_all(fmt, [SHARED / folder])
    assert (stats.comments, stats.votes, stats.skipped) == (comments, votes, skipped)

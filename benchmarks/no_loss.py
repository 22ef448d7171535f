"""No loss, no duplicates: ingest 100,000 comments over REST while the indexer is SIGKILLed.

The collector API keeps accepting (it only needs the broker); the indexer
process is killed with SIGKILL three times mid-stream and restarted each
time. Whatever it had written but not committed is redelivered to the new
process; the store's upsert by id absorbs the repeats. Afterwards the store
must hold exactly the comments that were acknowledged: every id, once, with
the text that was sent.
"""

from __future__ import annotations

import argparse
import math
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import orjson
from _harness import batches, post_all, running_stack, synthetic_comments

from mlcycle.clients import poll_until
from mlcycle.common.kafka.lag import topic_sizes
from mlcycle.local.pipeline import wait_until_indexed

BATCH = 500


def stored_count(db_path: Path) -> int:
    """Comments in the SQLite store right now (0 before the indexer created the table)."""
    try:
        with sqlite3.connect(db_path, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM comments").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def killer(stack, total: int, kills: int, done: threading.Event, log: list[str]) -> None:
    """SIGKILL the indexer ``kills`` times, mid-write, restarting it after each.

    Kill ``n`` waits until the store holds ``n/(kills+1)`` of the records, so
    every kill lands on an indexer that is busy consuming and writing.
    """
    db_path = stack.settings.store.sqlite_path
    for n in range(1, kills + 1):
        threshold = total * n // (kills + 1)
        poll_until(
            lambda threshold=threshold: stored_count(db_path) >= threshold,
            timeout=math.inf,
            interval=0.02,
            what=f"the store did not reach {threshold:,} comments",
        )
        stack.kill("collector-indexer", signal.SIGKILL)
        phase = "after ingest ended" if done.is_set() else "during ingest"
        log.append(
            f"kill {n}: indexer SIGKILLed {phase} at {stored_count(db_path):,} stored "
            f"(threshold {threshold:,})"
        )
        stack.start_service("collector-indexer")
        stack.wait_ready("collector-indexer")


def audit(db_path, sent: dict[str, str]) -> dict[str, int]:
    """Stored rows, distinct ids, missing ids, and rows whose text differs from what was sent."""
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT id, doc FROM comments").fetchall()
    ids = [row[0] for row in rows]
    stored = {row[0]: orjson.loads(row[1])["text"] for row in rows}
    return {
        "rows": len(rows),
        "distinct": len(set(ids)),
        "missing": sum(1 for i in sent if i not in stored),
        "unexpected": sum(1 for i in stored if i not in sent),
        "mismatched": sum(1 for i, text in sent.items() if stored.get(i, text) != text),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--rate", type=int, default=2_500, help="comments/s the sender keeps to")
    args = parser.parse_args()

    records = synthetic_comments(args.records, prefix="noloss")
    sent = {str(r["id"]): str(r["text"]) for r in records}
    bodies = batches(records, BATCH)
    events: list[str] = []
    with running_stack() as stack:
        settings = stack.settings
        done = threading.Event()
        chaos = threading.Thread(
            target=killer, args=(stack, len(sent), args.kills, done, events), daemon=True
        )
        started = time.perf_counter()
        chaos.start()
        post_all(
            settings,
            bodies,
            concurrency=2,
            retry_unavailable=True,
            # Paced so the ingest outlasts the kill-and-restart cycles: a restarted indexer
            # rejoins its group only after the dead member's session times out (~6 s).
            bodies_per_s=args.rate / BATCH,
        )
        done.set()
        chaos.join()
        wait_until_indexed(settings.kafka, settings.collector.indexer_group_id, timeout_s=300)
        elapsed = time.perf_counter() - started
        counts = audit(settings.store.sqlite_path, sent)
        # The idempotent producer must not have written any record twice either.
        raw_topic = settings.kafka.topics.comments_raw
        in_topic = topic_sizes(settings.kafka, [raw_topic])[raw_topic]

    for line in events:
        print(line, file=sys.stderr)
    kills = sum(1 for line in events if line.startswith("kill "))
    during = sum(1 for line in events if "during ingest" in line)
    duplicates = counts["rows"] - counts["distinct"]
    print(f"{'sent (acknowledged 202)':<28}{len(sent):>10,}")
    print(f"{'stored distinct ids':<28}{counts['distinct']:>10,}")
    print(f"{'records in comments.raw':<28}{in_topic:>10,}")
    print(f"{'stored rows':<28}{counts['rows']:>10,}")
    print(f"{'missing':<28}{counts['missing']:>10,}")
    print(f"{'text differs from sent':<28}{counts['mismatched']:>10,}")
    print(f"{'indexer SIGKILLs':<28}{kills:>10}")
    print(f"{'  of them during ingest':<28}{during:>10}")
    print(f"{'seconds':<28}{elapsed:>10.1f}")
    ok = (
        counts["distinct"] == len(sent)
        and not duplicates
        and not counts["missing"]
        and not counts["mismatched"]
        and kills == args.kills
    )
    print("PASS: none lost, none duplicated" if ok else "FAIL")
    print(
        orjson.dumps(
            {
                "benchmark": "no_loss",
                "sent": len(sent),
                "stored": counts["distinct"],
                "duplicates": duplicates,
                "missing": counts["missing"],
                "mismatched": counts["mismatched"],
                "topic_records": in_topic,
                "kills": kills,
                "kills_during_ingest": during,
                "seconds": round(elapsed, 1),
            }
        ).decode()
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

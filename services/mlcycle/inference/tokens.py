"""Versions that read tokens: their tokenizer, loaded from the version's own folder and checked.

A version whose ``metadata.json`` has ``"input": {"kind": "tokens", ...}`` (the
encoder variant) takes ``token_ids`` and ``padding_mask`` instead of sparse
n-gram rows. Its folder carries the tokenizer it was trained with; the file is
checked against the sha256 the metadata names before the version is served,
so a version never scores with another tokenizer than its own.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlcycle.common.errors import InvalidInput, Unavailable
from mlcycle.common.files import confined
from mlcycle.featurization.tokens import TokenBatch, TokenEncoder
from mlcycle.inference.metadata import METADATA
from mlcycle.inference.metrics import for_version

TOKENS = "tokens"


def version_tokens(folder: Path, block: Any, what: str) -> TokenEncoder | None:
    """The tokenizer of the version in ``folder`` when its input block says tokens, else None.

    Unavailable, saying what is wrong, when the block is malformed, the file is
    missing or outside the folder, or its sha256 is not the one recorded.
    """
    if block is None:
        return None
    if not isinstance(block, dict) or block.get("kind") != TOKENS:
        kind = block.get("kind") if isinstance(block, dict) else block
        raise Unavailable(f"{what}: {METADATA} names an input kind it cannot build: {kind!r}")
    name, digest = block.get("tokenizer"), block.get("tokenizer_sha256")
    max_length = block.get("max_length")
    if not isinstance(name, str) or not isinstance(digest, str) or not isinstance(max_length, int):
        raise Unavailable(
            f"{what}: {METADATA}'s input block needs tokenizer, tokenizer_sha256 and max_length"
        )
    try:
        path = confined(folder, name, what="tokenizer")
    except InvalidInput as exc:
        raise Unavailable(f"{what}: {exc.message}") from None
    try:
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise Unavailable(f"{what}: cannot read its tokenizer {name}: {exc}") from None
    if actual != digest:
        raise Unavailable(
            f"{what}: its tokenizer {name} does not have the sha256 {METADATA} records",
            details={"expected": digest, "actual": actual},
        )
    try:
        return TokenEncoder(path, max_length)
    except Exception as exc:  # tokenizers raises its own exception types on a bad file
        raise Unavailable(f"{what}: cannot load its tokenizer {name}: {exc}") from None


def tokenize(tokens: TokenEncoder, version: int, texts: Sequence[str]) -> TokenBatch:
    """``texts`` as token tensors (timed as the version's featurization)."""
    started = time.perf_counter()
    batch = tokens.encode(texts)
    for_version(version).featurize_seconds.observe(time.perf_counter() - started)
    return batch

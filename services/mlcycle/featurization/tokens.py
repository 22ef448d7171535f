"""Texts to token tensors with a ``tokenizer.json`` (Hugging Face ``tokenizers``).

The encoder model reads WordPiece token ids rather than sparse n-grams. The
tokenizer file shipped with the weights decides the vocabulary, lower-casing
and special tokens; here it is only told how long a text may be (longer ones
are cut, keeping ``[CLS]`` and ``[SEP]``) and to pad each batch to its own
longest text, not to a fixed length, so short comments cost short sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from mlcycle.common.errors import InvalidInput

TOKEN_INPUTS = ("token_ids", "padding_mask")
DEFAULT_MAX_LENGTH = 128


@dataclass(frozen=True)
class TokenBatch:
    """``token_ids`` and ``padding_mask`` (1 on real tokens), both int32 ``[n, longest]``."""

    token_ids: np.ndarray
    padding_mask: np.ndarray

    def rows(self, start: int, stop: int) -> TokenBatch:
        """Rows ``start:stop``, cut to their own longest text."""
        mask = self.padding_mask[start:stop]
        width = max(1, int(mask.sum(axis=1).max(initial=0)))
        return TokenBatch(self.token_ids[start:stop, :width], mask[:, :width])

    def inputs(self) -> dict[str, np.ndarray]:
        """The serving signature's inputs, by name."""
        return {"token_ids": self.token_ids, "padding_mask": self.padding_mask}


class TokenEncoder:
    """One ``tokenizer.json``, set to truncate at ``max_length`` and pad per batch; thread-safe."""

    def __init__(self, path: Path, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if max_length < 2:
            raise InvalidInput(f"max_length must be at least 2 (got {max_length})")
        self.path = Path(path)
        self.max_length = int(max_length)
        tokenizer = Tokenizer.from_file(str(self.path))
        padding = tokenizer.padding or {}
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_length)
        tokenizer.enable_padding(
            pad_id=int(padding.get("pad_id", 0)), pad_token=str(padding.get("pad_token", "[PAD]"))
        )
        self._tokenizer = tokenizer

    def encode(self, texts: Sequence[str]) -> TokenBatch:
        """Token ids and padding mask of ``texts``, padded to the longest of them."""
        if not texts:
            empty = np.zeros((0, 1), np.int32)
            return TokenBatch(empty, empty.copy())
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], np.int32)
        mask = np.array([e.attention_mask for e in encodings], np.int32)
        return TokenBatch(ids, mask)

"""A fitted, versioned featurization: texts (and metadata) in, sparse vectors out.

The same :class:`Transform` object runs in training (batch shards) and serving
(gRPC, inference), so both sides produce identical vectors by construction.
Its version is a content hash: ``tf-`` + the first 16 hex digits of the
SHA-256 of a canonical JSON of its config, vocabulary, metadata statistics and
fit counts (and, with static embeddings, their artifact's content id). The
creation time is recorded but is not part of the hash, so fitting the same
config on the same data gives the same version.

One index space, groups side by side::

    [ word vocabulary or hashed word n-grams | hashed char n-grams | metadata | embeddings ]

The n-gram and metadata groups are sparse; the static embeddings (when enabled)
are a dense block of their width at the end of every row. They are read from the
artifact store, so a transform with them is loaded from, and fitted against, a root.

>>> transform = fit(texts, metadata, FeatureConfig())          # doctest: +SKIP
>>> batch = transform.apply(["you are great"], [{"year": 2015}])  # doctest: +SKIP
>>> transform.save(artifacts)                                  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import ValidationError

from mlcycle.common.errors import InvalidInput, NotFound
from mlcycle.common.files import write_atomically
from mlcycle.contracts.features import TransformDescription
from mlcycle.featurization.compiled import vectorize_compiled
from mlcycle.featurization.config import FeatureConfig
from mlcycle.featurization.describe import groups
from mlcycle.featurization.embeddings import StaticEmbeddings, embedding_texts, require_current
from mlcycle.featurization.inputs import Metadata, check_inputs, chunks
from mlcycle.featurization.metadata import MetadataEncoder, fit_metadata
from mlcycle.featurization.preprocess import clean_batch
from mlcycle.featurization.sparse import CsrBuilder, SparseBatch, append_dense, empty_batch
from mlcycle.featurization.vectors import Layout
from mlcycle.featurization.words import Vocabulary, VocabularyCounter

FORMAT = 1
TRANSFORMS_DIR = "transforms"
SUFFIX = ".json.gz"
_VERSION_RE = re.compile(r"^tf-[0-9a-f]{16}$")


@dataclass(frozen=True, eq=False)
class Transform:
    """A fitted featurization; immutable. Build it with :func:`fit` or :meth:`from_dict`."""

    config: FeatureConfig
    vocabulary: Vocabulary | None
    metadata: MetadataEncoder
    fitted_on: Mapping[str, int]
    created_at: str
    embeddings: StaticEmbeddings | None = None
    version: str = field(init=False)
    _layout: Layout = field(init=False, repr=False)
    _slot_fields: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.config.embeddings.enabled != (self.embeddings is not None):
            raise InvalidInput("static embeddings are given exactly when the config enables them")
        object.__setattr__(self, "version", _version_of(self._content()))
        char = self.config.char
        layout = Layout(
            word_dim=self.word_dim,
            char_dim=self.char_dim,
            meta_dim=self.metadata.dim,
            char_range=(char.ngram_min, char.ngram_max) if char.enabled else None,
            weighting=self.config.weighting,
            normalize=self.config.normalize,
        )
        object.__setattr__(self, "_layout", layout)
        object.__setattr__(self, "_slot_fields", self.metadata.slot_fields())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Transform):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.version)

    # -- layout -------------------------------------------------------------------------------

    @property
    def word_dim(self) -> int:
        """Width of the word group (0 when disabled)."""
        word = self.config.word
        if not word.enabled:
            return 0
        return word.hash_buckets if word.mode == "hashed" else len(self.vocabulary or ())

    @property
    def char_dim(self) -> int:
        """Width of the char n-gram group (0 when disabled)."""
        return self.config.char.buckets if self.config.char.enabled else 0

    @property
    def embeddings_dim(self) -> int:
        """Width of the dense static-embedding block (0 when disabled)."""
        return self.embeddings.dim if self.embeddings is not None else 0

    @property
    def dim(self) -> int:
        """Width of the whole vector."""
        return self.word_dim + self.char_dim + self.metadata.dim + self.embeddings_dim

    # -- applying -----------------------------------------------------------------------------

    def apply(
        self,
        texts: Sequence[str],
        metadata: Metadata | None = None,
        *,
        unknown_fields: Literal["ignore", "error"] = "ignore",
    ) -> SparseBatch:
        """Featurize ``texts`` (and their ``metadata``, aligned), one CSR row each.

        Metadata values that are missing or of the wrong type set the field's
        ``missing`` slot, never an error. With ``unknown_fields="error"``, a
        metadata field this transform was not fitted on is an
        :class:`~mlcycle.common.errors.InvalidInput` naming the fields.
        """
        check_inputs(texts, metadata)
        if unknown_fields == "error" and metadata is not None:
            self._check_fields(metadata)
        if len(texts) == 0:
            return empty_batch(self.dim)
        runs, total_chars = chunks(texts, self.config.preprocess.max_chars)
        out = CsrBuilder(self.dim, self._capacity(len(texts), total_chars))
        static = self.embeddings
        dense = None if static is None else np.empty((len(texts), static.dim), np.float32)
        for start, end in runs:
            chunk_meta = None if metadata is None else metadata[start:end]
            self._apply_chunk(texts[start:end], chunk_meta, out)
            if static is not None and dense is not None:
                chunk = embedding_texts(texts[start:end], self.config.preprocess)
                dense[start:end] = static.encode(chunk)
        batch = out.build()
        if dense is None:
            return batch
        return append_dense(batch, self.dim - self.embeddings_dim, dense)

    def _apply_chunk(
        self, texts: Sequence[str], metadata: Metadata | None, out: CsrBuilder
    ) -> None:
        batch = clean_batch(texts, self.config.preprocess)
        meta_slots, meta_values = self.metadata.encode(metadata, len(texts))
        vectorize_compiled(
            batch,
            self._layout,
            self.config.word,
            self.vocabulary,
            meta_slots,
            meta_values,
            self._slot_fields,
            out,
        )

    def _capacity(self, n_texts: int, total_chars: int) -> int:
        """An entry count that ``n_texts`` texts of ``total_chars`` characters hardly exceed."""
        config = self.config
        per_char = config.word.ngram_max if config.word.enabled else 0
        if config.char.enabled:
            per_char += config.char.ngram_max - config.char.ngram_min + 1
        fields = len(self.metadata.numeric) + len(self.metadata.categorical)
        return total_chars * per_char + n_texts * fields

    def _check_fields(self, metadata: Metadata) -> None:
        known = self.metadata.fields
        unknown: set[str] = set()
        for record in metadata:
            if record:
                unknown.update(k for k in record if k not in known)
        if unknown:
            names = sorted(map(str, unknown))
            raise InvalidInput(
                f"metadata fields not known to transform {self.version}: {', '.join(names)}",
                details={"unknown_fields": names, "known_fields": sorted(known)},
            )

    # -- describing and persisting ------------------------------------------------------------

    def description(self) -> TransformDescription:
        """Version, group widths and offsets, vocabulary and field statistics, config."""
        return TransformDescription(
            version=self.version,
            dim=self.dim,
            created_at=self.created_at,
            fitted_on=dict(self.fitted_on),
            groups=groups(
                self.config,
                self.metadata,
                word_dim=self.word_dim,
                char_dim=self.char_dim,
                vocabulary_size=len(self.vocabulary) if self.vocabulary else 0,
                embeddings=None if self.embeddings is None else self.embeddings.ident,
                embeddings_dim=self.embeddings_dim,
            ),
            config=self.config.model_dump(mode="json", exclude=self._unversioned),
        )

    def describe(self) -> dict[str, Any]:
        """:meth:`description` as JSON types."""
        return self.description().to_json()

    @property
    def _unversioned(self) -> set[str]:
        """Config fields left out of its JSON: static embeddings, when off.

        So a transform without them dumps its config as before they existed, and keeps
        its version (every transform fitted before).
        """
        return set() if self.embeddings is not None else {"embeddings"}

    def _content(self) -> dict[str, Any]:
        """Everything the version hashes: what determines the output vectors, and the fit counts."""
        vocab = self.vocabulary
        content = {
            "format": FORMAT,
            "config": self.config.model_dump(mode="json", exclude=self._unversioned),
            "vocabulary": None
            if vocab is None
            else {"terms": list(vocab.terms), "doc_counts": list(vocab.doc_counts)},
            "metadata": self.metadata.to_dict(),
            "fitted_on": dict(self.fitted_on),
        }
        if self.embeddings is not None:
            # The artifact's content id: other vectors, another transform version.
            content["embeddings"] = {"artifact": self.embeddings.ident, "dim": self.embeddings.dim}
        return content

    def to_dict(self) -> dict[str, Any]:
        """The artifact's JSON-able form; :meth:`from_dict` rebuilds an equal transform."""
        return {"version": self.version, "created_at": self.created_at, **self._content()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], root: Path | None = None) -> Transform:
        """Rebuild a transform; :class:`InvalidInput` when malformed or its hash does not match.

        A transform with static embeddings reads them from the artifact store ``root``:
        :class:`~mlcycle.common.errors.Conflict` when they are not there, InvalidInput
        when they were altered.
        """
        try:
            if d.get("format") != FORMAT:
                raise ValueError(f"unsupported transform format {d.get('format')!r}")
            vocab = d["vocabulary"]
            config = FeatureConfig.model_validate(d["config"])
            static = None
            if config.embeddings.enabled:
                if root is None:
                    raise ValueError("it has static embeddings, which need the artifact store")
                static = StaticEmbeddings.load(root, str(d["embeddings"]["artifact"]))
            transform = cls(
                config=config,
                vocabulary=None
                if vocab is None
                else Vocabulary.from_terms(vocab["terms"], vocab["doc_counts"]),
                metadata=MetadataEncoder.from_dict(d["metadata"]),
                fitted_on={str(k): int(v) for k, v in d["fitted_on"].items()},
                created_at=str(d["created_at"]),
                embeddings=static,
            )
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            raise InvalidInput(f"malformed transform artifact: {exc}") from exc
        if transform.version != d.get("version"):
            raise InvalidInput(
                f"transform artifact claims version {d.get('version')!r} but its content hashes "
                f"to {transform.version}: it was modified",
                details={"claimed": d.get("version"), "actual": transform.version},
            )
        return transform

    def save(self, root: Path) -> Path:
        """Write ``<root>/transforms/<version>.json.gz`` atomically; a no-op if it exists."""
        path = Path(root) / TRANSFORMS_DIR / f"{self.version}{SUFFIX}"
        if path.exists():
            return path
        write_atomically(path, gzip.compress(orjson.dumps(self.to_dict()), mtime=0))
        return path

    @classmethod
    def load(cls, root: Path, version: str) -> Transform:
        """Read a saved transform; :class:`NotFound` when there is none with that version."""
        path = Path(root) / TRANSFORMS_DIR / f"{version}{SUFFIX}"
        if not _VERSION_RE.match(version) or not path.is_file():
            raise NotFound(
                f"transform {version!r} not found in {path.parent}",
                details={"version": version, "available": list_versions(root)},
            )
        try:
            data = orjson.loads(gzip.decompress(path.read_bytes()))
        except (OSError, EOFError, orjson.JSONDecodeError) as exc:
            raise InvalidInput(f"transform artifact {path.name} is unreadable: {exc}") from exc
        transform = cls.from_dict(data, root)
        if transform.version != version:
            raise InvalidInput(f"transform file {path.name} holds version {transform.version}")
        return transform


def fit(
    texts: Sequence[str],
    metadata: Metadata | None = None,
    config: FeatureConfig = FeatureConfig(),  # noqa: B008 - frozen, so sharing it is safe
    *,
    artifacts: Path | None = None,
) -> Transform:
    """Fit a transform: the word vocabulary (vocab mode) and metadata statistics.

    With static embeddings enabled, the transform takes the current embeddings
    artifact of the store ``artifacts``; without one, a
    :class:`~mlcycle.common.errors.Conflict` naming the command that makes it.
    """
    check_inputs(texts, metadata)
    static = None
    if config.embeddings.enabled:
        if artifacts is None:
            raise InvalidInput("static embeddings need the artifact store they are kept in")
        static = StaticEmbeddings.load(artifacts, require_current(artifacts))
    vocabulary = None
    truncated = 0
    if config.word.enabled and config.word.mode == "vocab":
        counter = VocabularyCounter(config.word.ngram_max)
        for start, end in chunks(texts, config.preprocess.max_chars)[0]:
            batch = clean_batch(texts[start:end], config.preprocess)
            truncated += int(batch.truncated.sum())
            counter.add(batch)
        vocabulary = counter.vocabulary(config.word)
    else:
        limit = config.preprocess.max_chars
        truncated = sum(len(t) > limit for t in texts)
    fitted_on = {
        "texts": len(texts),
        "truncated": truncated,
        "metadata_records": sum(1 for r in metadata or () if r),
    }
    return Transform(
        config=config,
        vocabulary=vocabulary,
        metadata=fit_metadata(metadata, config.metadata),
        fitted_on=fitted_on,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        embeddings=static,
    )


def list_versions(root: Path) -> list[str]:
    """Versions saved under ``root``, sorted by name."""
    folder = Path(root) / TRANSFORMS_DIR
    if not folder.is_dir():
        return []
    names = (p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}"))
    return sorted(n for n in names if _VERSION_RE.match(n))


def _version_of(content: Mapping[str, Any]) -> str:
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return "tf-" + hashlib.sha256(canonical).hexdigest()[:16]

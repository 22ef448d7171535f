"""Where a model version's files live on the models volume (no TensorFlow needed to know).

A job writes each version to a hidden staging folder and judges it there; a blessed
version is renamed to ``<models>/<name>/<version>/``, where the model server looks.
"""

from __future__ import annotations

from pathlib import Path

STAGING_PREFIX = ".candidate-"


def staging_dir(models: Path, name: str, version: int) -> Path:
    """Where version ``version`` of ``name`` is written and judged before it may be served."""
    return models / name / f"{STAGING_PREFIX}{version}"


def serving_dir(models: Path, name: str, version: int) -> Path:
    """Where a blessed version lives for the model server: ``<models>/<name>/<version>/``."""
    return models / name / str(version)

"""``python -m mlcycle.trainer.infra_validate <model dir> <sample.npz>``: load cold, answer.

Exit 0 and print what was checked when the SavedModel loads in this fresh
process and its ``serving_default`` answers the sample with the probabilities
the trainer computed in memory; exit 1 with the reason otherwise.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

TOLERANCE = 1e-4


def main(argv: list[str]) -> int:
    from mlcycle.trainer.export import ServingModel

    path, sample_file = Path(argv[0]), Path(argv[1])
    started = time.perf_counter()
    with np.load(sample_file) as sample:
        indices, values, expected = sample["indices"], sample["values"], sample["expected"]
    model = ServingModel(path)
    loaded = time.perf_counter()
    answer = model.probabilities(indices, values)
    if answer.shape != expected.shape or not np.all(np.isfinite(answer)):
        print(f"the SavedModel answered shape {answer.shape}, expected {expected.shape}")
        return 1
    worst = float(np.max(np.abs(answer - expected))) if answer.size else 0.0
    if worst > TOLERANCE:
        print(f"the SavedModel's answers differ from training's by up to {worst:.2e}")
        return 1
    print(
        f"loaded in {loaded - started:.1f} s, answered {len(answer)} rows "
        f"(max difference {worst:.1e})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

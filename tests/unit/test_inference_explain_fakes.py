"""The fake model server's explanations, which unit tests of the inference explain path use:
the fake's own score split among the entries, complete, and failing as its Predict fails."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mlcycle.common.errors import Unavailable
from mlcycle.contracts.explanations import NotExplainable
from mlcycle.inference.client import VersionGone
from tests.fixtures.inference import FakeModelClient, fake_probabilities

INDICES = np.array([[3, 8, 20, 0], [5, 0, 0, 0], [0, 0, 0, 0]], np.int64)
VALUES = np.array([[1.0, 0.5, 2.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0, 0, 0, 0]], np.float32)


@pytest.mark.parametrize("classes", [2, 3])
def test_the_fake_explains_its_own_served_score_completely(classes: int) -> None:
    fake = FakeModelClient(versions=(2,), classes=classes)
    explained = fake.explain("toxicity", 2, INDICES, VALUES)

    probabilities = fake_probabilities(2, INDICES, VALUES, classes)
    served = probabilities[:, 1] if classes == 2 else probabilities.max(axis=1)
    np.testing.assert_allclose(explained.scores, served, atol=1e-7)
    gap = explained.attributions.sum(axis=1) - (explained.scores - explained.baseline_scores)
    np.testing.assert_allclose(gap, 0.0, atol=1e-6)
    assert np.all(explained.attributions[VALUES == 0] == 0)
    assert fake.explain_calls == [(2, INDICES.shape)] and fake.calls == []
    if classes == 2:  # each entry adds 0.01 + 0.001 * value * (column % 7) to the score
        np.testing.assert_allclose(explained.attributions[0, :3], [0.013, 0.0105, 0.022])


def test_the_fake_fails_to_explain_as_a_model_server_does() -> None:
    fake = FakeModelClient(versions=(1, 2))
    fake.unexplainable.add(2)
    with pytest.raises(NotExplainable, match="toxicity version 2"):
        fake.explain("toxicity", 2, INDICES, VALUES)
    fake.gone.add(1)
    with pytest.raises(VersionGone):
        fake.explain("toxicity", 1, INDICES, VALUES)
    fake.down = True
    with pytest.raises(Unavailable):
        asyncio.run(fake.aio().explain("toxicity", 1, INDICES, VALUES))

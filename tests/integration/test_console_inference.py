"""The console's reader of the inference service against the real inference app (on the suite's
fake model server): the explained prediction and the monitor's state parse as it expects."""

from __future__ import annotations

import pytest

from mlcycle.contracts.monitoring import MonitoringState
from mlcycle.labeler.console.explain import Explainer
from tests.fixtures import apps

pytestmark = pytest.mark.integration


def test_the_console_reads_explanations_and_the_monitor_from_inference(
    request: pytest.FixtureRequest,
) -> None:
    with apps.inference(request, ()) as url:
        explainer = Explainer(url)
        try:
            text = "you idiot, stop reverting the page"
            explained = explainer.explain(text, "c1")
            state = explainer.monitoring()
        finally:
            explainer.close()
    assert explained.unavailable is None, explained.unavailable
    prediction = explained.prediction
    assert prediction is not None and 0.0 <= prediction.score <= 1.0
    assert prediction.spans, "the served model explained no word"
    assert all(text[span.begin : span.end] == span.text for span in prediction.spans)
    assert isinstance(state, MonitoringState)

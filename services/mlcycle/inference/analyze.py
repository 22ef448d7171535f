"""Perspective's analysis of one comment over mlcycle's own scoring and explain paths.

With ``store`` (the caller did not ask ``doNotStore``) a comment is scored as
``POST /v1/predict`` scores it: through the request batcher, routed during a
rollout, the cache read and written, and its words explained by the version that
answered (outside a rollout, by the one explain call that scores it too). Without
it nothing of the request is kept: the serving version scores it straight from the
model server, and the explain signature's own score answers when words are asked
for, so the cache is neither read nor written.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from mlcycle.common.errors import Conflict
from mlcycle.contracts.explanations import Span
from mlcycle.inference.batching import RequestBatcher
from mlcycle.inference.explain import Explainer
from mlcycle.inference.explain_async import ExplainBatcher, predict_and_explain
from mlcycle.inference.perspective import Analysis
from mlcycle.inference.predictor import Predictor
from mlcycle.inference.servable import ModelVersion


def check_binary(model: ModelVersion) -> None:
    """Conflict (409) for a multi-class version: it has no probability of toxicity."""
    if len(model.classes) != 2:
        raise Conflict(
            f"model {model.name} version {model.version} has {len(model.classes)} classes: "
            "TOXICITY's summary score is a binary model's probability of toxicity",
            details={"model": model.name, "version": model.version},
        )


class Analyzer:
    """The ``analyze`` of :mod:`mlcycle.inference.perspective` on this service."""

    def __init__(
        self,
        batcher: RequestBatcher,
        explain_batcher: ExplainBatcher,
        explainer: Explainer,
        predictor: Predictor,
    ) -> None:
        self.batcher = batcher
        self.explain_batcher = explain_batcher
        self.explainer = explainer  # the blocking one: doNotStore's, which skips the cache
        self.predictor = predictor

    async def __call__(self, text: str, *, spans: bool, store: bool) -> Analysis:
        if not store:
            return await run_in_threadpool(self._unstored, text, spans)
        tracker = self.predictor.tracker
        check_binary(tracker.current())
        if spans:  # one explain call answers both, as for POST /v1/predict
            _, predictions = await predict_and_explain(
                self.explain_batcher, self.batcher, tracker, [text], None, None
            )
        else:
            _, predictions = await self.batcher.predict([text], None, None)
        (prediction,) = predictions
        words = [Span(**row) for row in prediction["spans"]] if spans else None
        return Analysis(prediction["score"], words, prediction["model_version"])

    def _unstored(self, text: str, spans: bool) -> Analysis:
        model = self.predictor.tracker.current()
        check_binary(model)
        if spans:
            (explanation,) = self.explainer.compute(model, [text], None)
            return Analysis(explanation.score, explanation.spans, model.version)
        (probabilities,) = self.predictor.score_uncached(model, [text])
        return Analysis(float(probabilities[1]), None, model.version)

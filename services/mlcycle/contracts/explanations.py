"""Word-level explanations of a score: which words of the text as sent drove it.

A :class:`Span` names a word of the caller's original text by character
offsets (Python string indices, so code points), before any pre-processing:
``text == original[begin:end]`` always holds. Its ``score`` is the word's
share of the served score, in the score's own units (probability): the
attributions of the n-gram features the word takes part in, each split among
the words it spans (see decision record 0018).

:class:`Explained` is what a model version's ``explain`` signature answers,
per entry of the model's input rather than per word; :class:`NotExplainable`
is the error of a version that has no such signature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlcycle.common.errors import Conflict

# The SavedModel signature that answers an Explained (mlcycle.trainer.explain_export).
EXPLAIN_SIGNATURE = "explain"


class Span(BaseModel):
    """One word of the original text and how much it moved the score."""

    model_config = ConfigDict(frozen=True)

    begin: int = Field(ge=0, description="first character of the word in the text as sent")
    end: int = Field(ge=0, description="one past its last character")
    text: str = Field(description="the text as sent between begin and end")
    score: float = Field(
        description="the word's share of the score: positive pushes towards the positive "
        "class (or the predicted class of a multi-class model), negative away from it"
    )


@dataclass(frozen=True)
class Explained:
    """What a model version's ``explain`` signature answers for a batch of padded rows.

    ``attributions[i, j]`` is entry ``j`` of row ``i``'s share of ``scores[i]``
    (integrated gradients from the empty input, 0 on padding), so
    ``attributions[i].sum()`` is ``scores[i] - baseline_scores[i]`` up to the
    integration's error.
    """

    scores: np.ndarray  # float32 [batch]: the served score (as serving_default's `scores`)
    attributions: np.ndarray  # float32 [batch, width]: one per input entry
    baseline_scores: np.ndarray  # float32 [batch]: the score of the empty input

    def __post_init__(self) -> None:
        rows = self.scores.shape[0] if self.scores.ndim == 1 else -1
        if (
            rows < 0
            or self.attributions.ndim != 2
            or self.attributions.shape[0] != rows
            or self.baseline_scores.shape != (rows,)
        ):
            raise ValueError(
                "an explanation needs scores [batch], attributions [batch, width] and "
                f"baseline_scores [batch]; got {list(self.scores.shape)}, "
                f"{list(self.attributions.shape)} and {list(self.baseline_scores.shape)}"
            )


class NotExplainable(Conflict):
    """The model version cannot explain its scores: it has no ``explain`` signature.

    An encoder version never has one, nor a version exported before explanations
    existed. A 409 naming the model and version: the request is valid, the
    version cannot answer it.
    """

    code = "not_explainable"

    @classmethod
    def of(cls, name: str, version: int) -> NotExplainable:
        """The error of version ``version`` of model ``name``."""
        return cls(
            f"model {name} version {version} cannot explain its scores: it was exported "
            "without the 'explain' signature (an encoder version, or a version exported "
            "before explanations); ask without explanations, or deploy a newer version",
            details={"model": name, "version": version},
        )

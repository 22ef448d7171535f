"""Word-level explanations of a score: which words of the text as sent drove it.

A :class:`Span` names a word of the caller's original text by character
offsets (Python string indices, so code points), before any pre-processing:
``text == original[begin:end]`` always holds. Its ``score`` is the word's
share of the served score, in the score's own units (probability): the
attributions of the n-gram features the word takes part in, each split among
the words it spans (see decision record 0018).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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

"""A prediction's lineage: one comment's chain from its votes to its score.

``GET /v1/lineage/{id}`` and ``mlcycle explain`` answer, for one stored comment:

- ``comment``: the stored comment (text, source, created_at, metadata);
- ``votes``: its votes for the label task, counted per label;
- ``label``: its label and how it was derived (strategy, posterior, the voters and
  labeling functions that contributed, the label run), taken from the label run the
  model was trained on, else the latest finished run, else the live label;
- ``transform``: the featurizer transform version the model was trained with, and
  its configuration;
- ``model``: the model version that made the score: registry state, dev/test
  metrics, hyper-parameters, label run, git revision and blessing from its
  ``metadata.json``;
- ``score``: the score the stream stored on the comment (``source: "stream"``), or,
  when there is none, a score made now through the service's predictor (cache,
  pinned transform, model server: ``source: "scored_now"``).

A part that cannot be given (not labeled yet, not scorable now, a file gone) is
``null`` and ``missing`` says why; only an unknown id is an error (404).

The answer's shape is :mod:`~mlcycle.inference.lineage.schema`, each part is built
by :mod:`~mlcycle.inference.lineage.parts` from the records
:mod:`~mlcycle.inference.lineage.reader` reads, and
:mod:`~mlcycle.inference.lineage.render` draws it for ``mlcycle explain``.
"""

from mlcycle.inference.lineage.reader import LineageReader, check_comment_id
from mlcycle.inference.lineage.render import render_lineage
from mlcycle.inference.lineage.schema import Lineage, ScoreLineage

__all__ = ["Lineage", "LineageReader", "ScoreLineage", "check_comment_id", "render_lineage"]

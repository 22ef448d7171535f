"""The inference service: real-time predictions over REST (8000) and over the comments stream.

A request is featurized in-process with the exact transform version the
serving model was trained on, scored by the model server through TF Serving's
gRPC ``Predict`` (so the real ``tensorflow/serving`` works in its place), and
cached in Redis under the model version, the transform version and the
normalized text.

Public API:

- :class:`~mlcycle.inference.runtime.InferenceRuntime` wires the parts from
  settings (``InferenceRuntime.open(settings)``, then ``.predictor``, ``.close()``);
- :class:`~mlcycle.inference.predictor.Predictor` ``.predict(texts, metadata)``;
- :class:`~mlcycle.inference.batching.RequestBatcher`: the API's scoring on its event
  loop, cache reads and model calls shared by concurrent requests;
- :func:`~mlcycle.inference.api.create_app` / :func:`~mlcycle.inference.api.serve`:
  ``POST /v1/predict`` and TF Serving's ``POST /v1/models/{name}:predict``;
- :func:`~mlcycle.inference.stream.run_stream`: ``comments.raw`` to ``scored.comments``;
- :func:`~mlcycle.inference.feedback_stream.run_feedback`: the ``feedback`` topic's
  decisions joined to the scores given (``POST /v1/feedback`` is
  :mod:`~mlcycle.inference.feedback_routes`), and on to the labeler as votes;
- :class:`~mlcycle.inference.lineage.LineageReader`: ``GET /v1/lineage/{id}``, one
  comment's chain from its votes to its score.

``mlcycle predict`` and ``mlcycle explain`` ask this service over REST, through
:class:`mlcycle.clients.InferenceClient` (:mod:`mlcycle.cli.serving`).
"""

"""The trainer: hyper-parameter search over feature shards, evaluation, blessing, export, registry.

Labels and feature shards come from the labeler and the featurizer; models go
out as TF-Serving SavedModels under ``<models>/<name>/<version>/`` with a
``metadata.json`` that records their lineage, and as events on the ``models``
topic.
"""

"""Text to vectors: pre-processing, vocabularies, hashing, metadata, fitted transforms.

A pure library: the featurizer service fits and stores transforms with it, the
trainer reads feature shards made with it, and the inference service applies
the serving version's transform with it. It imports nothing from any service.
"""

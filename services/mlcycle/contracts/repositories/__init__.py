"""Concrete repositories: one module per stored record type, each over the ``Store``."""

"""Embedded infrastructure mlcycle starts by itself: the Tansu broker and redis-server.

Import the submodules directly (:mod:`.broker`, :mod:`.redis`); nothing is
started at import.
"""

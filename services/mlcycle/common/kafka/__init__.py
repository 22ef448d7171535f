"""Kafka plumbing shared by every service: one producer setup, one consumer loop, topic admin.

Import the submodules directly (:mod:`.producer`, :mod:`.consumer` with the
records it hands over in :mod:`.records`, :mod:`.admin`); nothing connects at import.
"""

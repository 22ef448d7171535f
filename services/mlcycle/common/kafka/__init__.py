"""Kafka plumbing shared by every service: one producer setup, one consumer loop, topic admin.

Import the submodules directly (:mod:`.producer`, :mod:`.consumer`,
:mod:`.admin`); nothing connects at import.
"""

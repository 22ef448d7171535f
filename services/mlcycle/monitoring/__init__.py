"""Watching the live model: reference profiles, drift statistics with a false-alarm budget,
and quality from moderators' late decisions. Pure library code: no TensorFlow, no service.
"""

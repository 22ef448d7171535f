"""Metrics more than one service computes (calibration, ...): pure functions over arrays."""

"""Rollouts as a library: routing, evidence, the comparison, the sequential test, the policy.

The inference service routes and gathers evidence with it; the registry compares
and decides with it. No TensorFlow, no service imports.
"""

"""Local tooling: the embedded stack, the demo and its report, the pipeline, the load test.

It drives the services from outside, as a user would, so it may start any of them.
"""

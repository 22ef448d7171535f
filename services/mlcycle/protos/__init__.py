"""Generated gRPC stubs, one subpackage per proto package: ``mlcycle.protos.mlcycle.v1``.

Never edited by hand: ``make protos`` (``scripts/gen_protos.py``) regenerates
them from ``proto/``, and a unit test fails when the committed stubs differ
from a fresh generation.
"""

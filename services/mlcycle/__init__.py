"""mlcycle: the life cycle of a production machine-learning project as cooperating services."""

# Load Python's SQLite module before anything can load TensorFlow: TensorFlow's
# libraries carry their own SQLite build (without FTS5), and whichever is loaded
# first serves every later connection, so the store would lose full-text search.
import os
import sqlite3  # noqa: F401

# gRPC's EventEngine endpoints (on by default in this release) read and write on threads
# of their own and hand every completion to the caller's: on loopback a unary call took
# 0.41-0.51 ms against 0.32-0.37 ms on the classic poller, where the polling thread does
# the I/O itself, and a cached-miss prediction makes one such call on its critical path.
# Read once, when gRPC starts, so it must be set before grpc is imported; a value the
# user set wins.
os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_client,-event_engine_listener")

__version__ = "0.1.0"

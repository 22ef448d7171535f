"""mlcycle: the life cycle of a production machine-learning project as cooperating services."""

# Load Python's SQLite module before anything can load TensorFlow: TensorFlow's
# libraries carry their own SQLite build (without FTS5), and whichever is loaded
# first serves every later connection, so the store would lose full-text search.
import sqlite3  # noqa: F401

__version__ = "0.1.0"

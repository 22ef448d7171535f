"""mlcycle: the life cycle of a production machine-learning project as cooperating services."""

__version__ = "0.1.0"

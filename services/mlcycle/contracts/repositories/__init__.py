"""One repository per stored record type (see :mod:`mlcycle.contracts.repository`)."""

"""The failures a run is expected to meet, each reported by `main.py` as one line.

Each module keeps its own error type next to the code that raises it (config, data,
prior, checkpoint, a busy workdir, a changed data set, processes that disagree,
divergence), derived from `ExpectedError`; this module imports nothing of exon_jax.
"""


class ExpectedError(Exception):
    """A failure the command line reports as one line without a traceback."""


# What `main.py` reports in one line: exon_jax's own, and running out of memory or disk.
EXPECTED_ERRORS = (ExpectedError, MemoryError, OSError)

"""The one exception type of the data path: bad or missing data, reported in one line."""

from __future__ import annotations


class DataError(ValueError):
    """Data that cannot be used; the message names the file (or source) and what is wrong.

    The CLIs print it as one line and exit non-zero, without a traceback.
    """

"""The error the data loaders raise, in a module of its own.

:class:`DataError` is raised by ``wsr_bench.data`` and by the data sources it loads from (``wsr_bench.fashion_mnist``).
It lives here, below all of them, so that a data source can raise it without importing ``wsr_bench.data`` (which
imports the sources); ``wsr_bench.data`` re-exports it, and ``from wsr_bench.data import DataError`` stays the way
to catch it.
"""

from __future__ import annotations


class DataError(ValueError):
    """A dataset that cannot be loaded (unknown name, missing local folder, bad parameters)."""

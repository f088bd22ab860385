"""The error the data loaders raise, in a module of its own.

:class:`DataError` is raised by :mod:`wsr_bench.data.datasets` and by the data sources it loads from
(:mod:`wsr_bench.data.fashion_mnist`). It lives here, below all of them, so that a data source can raise it without
importing the loader (which imports the sources); ``wsr_bench.data`` re-exports it, and
``from wsr_bench.data import DataError`` stays the way to catch it.
"""

from __future__ import annotations


class DataError(ValueError):
    """A dataset that cannot be loaded (unknown name, missing local folder, bad parameters)."""

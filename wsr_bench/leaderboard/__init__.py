"""The wide-spectrum leaderboard as data: entry schema, JSON I/O, tables, HTML page and curves (no torch here)."""

from wsr_bench.leaderboard.entry_files import check_writable, entry_path, load_entries, load_entry, save_entry
from wsr_bench.leaderboard.reference import ReferenceEntry, load_references
from wsr_bench.leaderboard.schema import SCHEMA_VERSION, WORST_CASE, Curve, LeaderboardEntry, Samples, SchemaError

__all__ = [
    "SCHEMA_VERSION", "WORST_CASE", "Curve", "LeaderboardEntry", "ReferenceEntry", "Samples", "SchemaError",
    "build_leaderboard", "check_writable", "entry_path", "load_entries", "load_entry", "load_references", "save_entry",
]


def build_leaderboard(*args, **kwargs):
    """Render README.md, index.html, curves.png and leaderboard.csv (see :mod:`wsr_bench.leaderboard.build`)."""
    from wsr_bench.leaderboard.build import build_leaderboard as _build

    return _build(*args, **kwargs)

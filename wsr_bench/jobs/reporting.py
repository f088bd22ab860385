"""The leaderboard stage: the pages of a leaderboard folder rebuilt from whatever entries it holds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wsr_bench.jobs.stage import JobContext, Stage


@dataclass(frozen=True, kw_only=True)
class LeaderboardStage(Stage):
    """Rebuild ``folder``'s pages (README.md, index.html, curves.png, leaderboard.csv) from its ``entries/``.

    Never done: the pages are a view of the entries, cheap to rebuild and identical when the entries are, so a job
    rebuilds them whenever it reaches this stage (rank 0 only).
    """

    folder: Path

    def outputs(self) -> tuple[Path, ...]:
        return (self.folder / "README.md", self.folder / "index.html")

    def is_done(self) -> bool:
        return False

    def run(self, ctx: JobContext) -> None:
        from wsr_bench.infra.distributed import is_main_process
        from wsr_bench.leaderboard.build import build_leaderboard

        if is_main_process():
            build_leaderboard(self.folder)

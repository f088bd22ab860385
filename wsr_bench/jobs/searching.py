"""The search stage: Wsr-NAS (or the config's search method) into ``genotype.json``, resuming from its own
checkpoint in the search run folder."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from wsr_bench.config import ExperimentConfig
from wsr_bench.jobs.stage import JobContext, Stage


@dataclass(frozen=True, kw_only=True)
class SearchStage(Stage):
    """Search with ``cfg.search`` in ``folder`` and hand off the found architecture as ``genotype``."""

    cfg: ExperimentConfig
    folder: Path
    genotype: Path

    def outputs(self) -> tuple[Path, ...]:
        return (self.genotype,)

    def is_done(self) -> bool:
        """The genotype file exists and reads as a genotype."""
        from wsr_bench.search_space.genotype import Genotype, GenotypeError

        if not self.genotype.is_file():
            return False
        try:
            Genotype.from_json(self.genotype.read_text())
        except (GenotypeError, ValueError, KeyError, TypeError):
            return False
        return True

    def run(self, ctx: JobContext) -> Path:
        from wsr_bench.infra.atomic import atomic_write_text
        from wsr_bench.search import SearchFolder, run_search

        cfg = self.cfg
        if not ctx.progress:  # the search reads its bars from the config (a change a resumed search accepts)
            cfg = replace(cfg, search=replace(cfg.search, progress=False))
        folder = SearchFolder(self.folder)
        found = run_search(cfg, folder.root, resume=folder.checkpoint.exists(), device=ctx.device)
        atomic_write_text(self.genotype, found.to_json() + "\n")
        return self.genotype

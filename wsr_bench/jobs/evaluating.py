"""The evaluation stage: one network over the eps spectrum into its leaderboard entry, resuming a killed evaluation
from its per-batch state, which is removed once the entry is written. ``wsr-bench run``, ``wsr-bench zoo`` and
``wsr-bench eval`` all evaluate through it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsr_bench.evaluate.options import EntryLabels, EvalRuntime, SpectrumOptions
from wsr_bench.jobs.model_source import ExportedModel, ModelSpec, PublishedModel
from wsr_bench.jobs.stage import JobContext, Stage

if TYPE_CHECKING:
    from wsr_bench.leaderboard.schema import LeaderboardEntry


@dataclass(frozen=True, kw_only=True)
class EvaluateStage(Stage):
    """Evaluate ``source`` on the first ``n_examples`` test images with ``options`` into the entry ``entry`` (None:
    return the entry without writing it), as ``runtime`` says (its device and progress bar are the job context's).

    Done when the entry exists and names the provenance of ``source`` (a published tag's weights sha256). The
    per-batch progress lives in ``runtime.state_dir`` (identified by ``runtime.state_info`` and the provenance) and is
    removed once the entry is written, unless ``keep_state``. ``evaluation`` adds fields to the entry's
    ``evaluation`` record. Under ``torchrun`` every rank evaluates its share of the batches and rank 0 writes.
    """

    source: ExportedModel | PublishedModel | ModelSpec
    options: SpectrumOptions
    labels: EntryLabels
    entry: Path | None
    n_examples: int | None = None
    runtime: EvalRuntime = EvalRuntime(sanity=True)
    keep_state: bool = False
    force: bool = True
    evaluation: dict[str, Any] = field(default_factory=dict)

    def outputs(self) -> tuple[Path, ...]:
        return () if self.entry is None else (self.entry,)

    def is_done(self) -> bool:
        """The entry exists and records the provenance its source has now."""
        from wsr_bench.leaderboard.entry_files import load_entry

        if self.entry is None or not self.entry.is_file():
            return False
        wanted = self.source.provenance()
        recorded = load_entry(self.entry).evaluation
        return all(recorded.get(k) == v for k, v in wanted.items())

    def run(self, ctx: JobContext) -> LeaderboardEntry:
        from wsr_bench.evaluate.entry import evaluate_to_entry
        from wsr_bench.evaluate.resume import remove_state
        from wsr_bench.infra.distributed import barrier, is_main_process
        from wsr_bench.leaderboard.entry_files import save_entry

        provenance = self.source.provenance()
        model, name, architecture = self.source.load(ctx)
        x, y = ctx.test_images(self.n_examples)
        state_info = {**(self.runtime.state_info or {}),
                      **({"sha256": provenance["weights_sha256"]} if provenance else {})}
        runtime = replace(self.runtime, device=ctx.device, progress=ctx.progress, state_info=state_info)
        labels = replace(self.labels, model_name=self.labels.model_name or name,
                         architecture=self.labels.architecture or architecture)
        entry = evaluate_to_entry(model, x, y, self.options, labels=labels, runtime=runtime)
        entry.evaluation.update({**provenance, **self.evaluation})
        if self.entry is not None and is_main_process():  # under torchrun every rank evaluated its share
            save_entry(entry, self.entry, force=self.force)
            if runtime.state_dir is not None and not self.keep_state:
                remove_state(runtime.state_dir)
        barrier()
        return entry

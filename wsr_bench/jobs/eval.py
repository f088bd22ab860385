"""``wsr-bench eval``: one model over the spectrum into one entry, through the jobs' evaluation stage.

The recipe checks every argument before the (long) evaluation starts (the entry refused if it exists without
``force``, a stale state refused without ``resume``, the model spec, the sizes), loads the dataset, and runs one
:class:`~wsr_bench.jobs.evaluating.EvaluateStage` inside ``torchrun``'s process group when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsr_bench.evaluate.options import (
    EntryLabels,
    EvalRuntime,
    SpectrumOptions,
    resolve_options,
    resolve_runtime,
    split_fields,
)
from wsr_bench.jobs.evaluating import EvaluateStage
from wsr_bench.jobs.model_source import ModelSpec
from wsr_bench.jobs.stage import JobContext, StageLog

if TYPE_CHECKING:
    from wsr_bench.leaderboard.schema import LeaderboardEntry


@dataclass(frozen=True, kw_only=True)
class EvalTarget:
    """What ``wsr-bench eval`` evaluates and where its entry goes (its flags beside the evaluation's settings)."""

    model: str                              # a timm name, ``robustbench:<Name>``, a published tag or an exported folder
    dataset: str = "digits"
    n_examples: int | None = 256            # the first N test images (None: all)
    image_size: int | None = None           # None: what an exported folder records, else the dataset's default
    data_root: str | Path = "data"
    checkpoint: str | Path | None = None    # a weights file to load into the model
    model_dir: str | Path = "models"        # where exported model folders are looked up
    name: str | None = None                 # the entry's model name (None: the model's own)
    recipe: str = ""                        # the entry's training recipe
    out: str | Path | None = None           # the entry file (None: not written)
    force: bool = False                     # overwrite an existing entry
    keep_state: bool = False                # keep ``out.state/`` once the entry is written


def run_eval(
    target: EvalTarget | str,
    options: SpectrumOptions | None = None,
    *,
    runtime: EvalRuntime | None = None,
    **fields: Any,
) -> LeaderboardEntry:
    """``wsr-bench eval``: load ``target.model`` (timm name, ``robustbench:<Name>`` or exported folder) and its
    dataset, evaluate the spectrum and write the entry to ``target.out`` (refused if it exists, unless ``force``).

    ``target`` is an :class:`EvalTarget` (or its model spec, a string); ``options`` says what to compute and
    ``runtime`` how (:class:`~wsr_bench.evaluate.options.EvalRuntime`; sanity checks and the progress bar on by
    default here), as for :func:`~wsr_bench.evaluate.spectrum.evaluate_spectrum`; the keyword ``fields`` replace
    fields of any of the three. The options' seed also picks the dataset's splits. The first ``n_examples`` test
    images are loaded at ``image_size``; None means the size an exported model folder records it was trained at,
    else the dataset's default size.

    With ``out``, progress is kept per batch in ``out.state/`` (:mod:`wsr_bench.evaluate.resume`): ``resume``
    continues from it (an existing state without ``resume`` is refused), and it is removed once the entry is
    written unless ``keep_state``. Under ``torchrun`` every rank evaluates its share of the batches and rank 0
    writes the entry. Every argument is validated before the (long) evaluation starts.
    """
    from wsr_bench.evaluate.entry import load_eval_data
    from wsr_bench.evaluate.model_loading import check_model_spec, exported_image_size
    from wsr_bench.evaluate.resume import check_no_stale_state, state_dir_for
    from wsr_bench.infra.distributed import joined_process_group
    from wsr_bench.leaderboard.entry_files import check_writable
    from wsr_bench.rules import MEMORY_FORMATS, check_choice

    option_fields, runtime_fields, target_fields = split_fields(fields, SpectrumOptions, EvalRuntime, EvalTarget)
    options = resolve_options(options, option_fields)
    runtime = resolve_runtime(runtime, runtime_fields, default=EvalRuntime(sanity=True, progress=True))
    if isinstance(target, str):
        target = EvalTarget(model=target, **target_fields)
    elif target_fields:
        target = replace(target, **target_fields)
    t, out = target, target.out
    state_dir = None
    if out is not None:
        check_writable(out, t.force)
        state_dir = state_dir_for(out)
        check_no_stale_state(state_dir, options.resume)
    elif options.resume or t.keep_state:
        raise ValueError("--resume and --keep-state need --out (the state folder lives beside the entry)")
    check_choice(runtime.memory_format, MEMORY_FORMATS, "--memory-format")
    if t.image_size is not None and int(t.image_size) < 1:
        raise ValueError(f"--image-size must be >= 1, got {t.image_size}")
    model, checkpoint, dataset = t.model, t.checkpoint, t.dataset
    check_model_spec(model, model_dir=t.model_dir, dataset=dataset, threat_model=options.threat_model)
    image_size = t.image_size or exported_image_size(model)
    if checkpoint is not None and Path(checkpoint).is_dir():
        raise ValueError(f"checkpoint {checkpoint} is a directory; expected a weights file (.safetensors or torch)")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} not found")
    _, _, splits = load_eval_data(dataset, t.n_examples, data_root=t.data_root, image_size=image_size,
                                  seed=options.seed)
    evaluation: dict[str, Any] = {"model_spec": str(model), "image_size": int(splits.image_size)}
    if checkpoint is not None:
        evaluation["checkpoint"] = str(checkpoint)
    stage = EvaluateStage(
        name="eval", source=ModelSpec(str(model), dataset, options.threat_model,
                                      checkpoint=checkpoint and str(checkpoint), model_dir=str(t.model_dir)),
        options=options, labels=EntryLabels(model_name=t.name, dataset=dataset, recipe=t.recipe),
        entry=None if out is None else Path(out), n_examples=t.n_examples,
        runtime=replace(runtime, state_dir=state_dir, state_info={"model": str(model)}), keep_state=t.keep_state,
        force=t.force, evaluation=evaluation)
    with joined_process_group(runtime.device) as info:  # one process unless launched by torchrun
        folder = Path(out).parent if out is not None else Path(".")
        ctx = JobContext(StageLog(folder, write=False), info.device, runtime.progress, splits=splits)
        return stage.run(ctx)

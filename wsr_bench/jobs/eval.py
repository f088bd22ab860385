"""``wsr-bench eval``: one model over the spectrum into one entry, through the jobs' evaluation stage.

The recipe checks every argument before the (long) evaluation starts (the entry refused if it exists without
``force``, a stale state refused without ``resume``, the model spec, the sizes), loads the dataset, and runs one
:class:`~wsr_bench.jobs.evaluating.EvaluateStage` inside ``torchrun``'s process group when there is one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsr_bench.evaluate.options import SpectrumOptions, resolve_options
from wsr_bench.jobs.evaluating import EntryLabels, EvaluateStage
from wsr_bench.jobs.model_source import ModelSpec
from wsr_bench.jobs.stage import JobContext, StageLog

if TYPE_CHECKING:
    from wsr_bench.leaderboard.schema import LeaderboardEntry


def run_eval(
    model: str,
    options: SpectrumOptions | None = None,
    *,
    dataset: str = "digits",
    n_examples: int | None = 256,
    image_size: int | None = None,
    data_root: str | Path = "data",
    checkpoint: str | Path | None = None,
    model_dir: str | Path = "models",
    name: str | None = None,
    recipe: str = "",
    out: str | Path | None = None,
    force: bool = False,
    keep_state: bool = False,
    device: str | None = None,
    memory_format: str = "channels_last",
    sanity: bool = True,
    progress: bool = True,
    **fields: Any,
) -> LeaderboardEntry:
    """``wsr-bench eval``: load ``model`` (timm name, ``robustbench:<Name>`` or exported folder) and ``dataset``,
    evaluate the spectrum and write the entry to ``out`` (refused if it exists, unless ``force``).

    ``options`` and the keyword ``fields`` say what to compute, as for
    :func:`~wsr_bench.evaluate.spectrum.evaluate_spectrum`; its seed also picks the dataset's splits. The first
    ``n_examples`` test images are loaded at ``image_size``; None means the size an exported model folder records
    it was trained at, else the dataset's default size. ``checkpoint``/``model_dir`` locate the weights, ``name``
    and ``recipe`` label the entry; ``device`` and ``memory_format`` say where and in which layout it runs.

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

    options = resolve_options(options, fields)
    state_dir = None
    if out is not None:
        check_writable(out, force)
        state_dir = state_dir_for(out)
        check_no_stale_state(state_dir, options.resume)
    elif options.resume or keep_state:
        raise ValueError("--resume and --keep-state need --out (the state folder lives beside the entry)")
    check_choice(memory_format, MEMORY_FORMATS, "--memory-format")
    if image_size is not None and int(image_size) < 1:
        raise ValueError(f"--image-size must be >= 1, got {image_size}")
    check_model_spec(model, model_dir=model_dir, dataset=dataset, threat_model=options.norm)
    image_size = image_size or exported_image_size(model)
    if checkpoint is not None and Path(checkpoint).is_dir():
        raise ValueError(f"checkpoint {checkpoint} is a directory; expected a weights file (.safetensors or torch)")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} not found")
    _, _, splits = load_eval_data(dataset, n_examples, data_root=data_root, image_size=image_size,
                                  seed=options.seed)
    evaluation: dict[str, Any] = {"model_spec": str(model), "image_size": int(splits.image_size)}
    if checkpoint is not None:
        evaluation["checkpoint"] = str(checkpoint)
    stage = EvaluateStage(
        name="eval", source=ModelSpec(str(model), dataset, options.norm, checkpoint=checkpoint and str(checkpoint),
                                      model_dir=str(model_dir)),
        options=options, labels=EntryLabels(model_name=name, dataset=dataset, recipe=recipe),
        entry=None if out is None else Path(out), n_examples=n_examples, memory_format=memory_format, sanity=sanity,
        state_dir=state_dir, state_info={"model": str(model)}, keep_state=keep_state, force=force,
        evaluation=evaluation)
    with joined_process_group(device) as info:  # one process unless launched by torchrun
        folder = Path(out).parent if out is not None else Path(".")
        ctx = JobContext(StageLog(folder, write=False), info.device, progress, splits=splits)
        return stage.run(ctx)

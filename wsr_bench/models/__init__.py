"""Networks from genotypes, registered as timm models (``import wsr_bench.models`` registers them)."""

from wsr_bench.models import wsrnet as _wsrnet  # noqa: F401  (timm registration side effect)
from wsr_bench.models.export import WeightsFileError, export_model, load_exported, load_state_dict_file
from wsr_bench.models.network import DartsNetwork
from wsr_bench.models.wsrnet import GENOTYPE_OF, IMAGENET_MODELS

#: every model name wsr-bench registers with timm (except the generic ``wsrnet``, which needs a genotype).
REGISTERED_MODELS: tuple[str, ...] = tuple(GENOTYPE_OF) + tuple(f"{n}_imagenet" for n in IMAGENET_MODELS)

__all__ = ["DartsNetwork", "REGISTERED_MODELS", "WeightsFileError", "export_model", "load_exported",
           "load_state_dict_file"]

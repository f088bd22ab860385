"""Networks from genotypes and the PreAct-ResNet-18 reference, registered as timm models (``import wsr_bench.models``
registers them, with the published pretrained tags of :mod:`wsr_bench.models.pretrained`)."""

from wsr_bench.models import preact_resnet as _preact_resnet  # noqa: F401  (timm registration side effect)
from wsr_bench.models import wsrnet as _wsrnet  # noqa: F401  (timm registration side effect)
from wsr_bench.models.export import WeightsFileError, export_model, load_exported, load_state_dict_file
from wsr_bench.models.network import DartsNetwork
from wsr_bench.models.preact_resnet import PreActResNet
from wsr_bench.models.wsrnet import GENOTYPE_OF, IMAGENET_MODELS
from wsr_bench.rules import NON_DARTS_MODELS

#: the registered models of the DARTS space (each has a genotype; sized by ``init_channels``/``layers``).
DARTS_MODELS: tuple[str, ...] = tuple(GENOTYPE_OF) + tuple(f"{n}_imagenet" for n in IMAGENET_MODELS)
#: every model name wsr-bench registers with timm (except the generic ``wsrnet``, which needs a genotype): the DARTS
#: ones and those outside the DARTS space (``NON_DARTS_MODELS``: preact_resnet18, sized by ``width``).
REGISTERED_MODELS: tuple[str, ...] = (tuple(GENOTYPE_OF) + NON_DARTS_MODELS
                                      + tuple(f"{n}_imagenet" for n in IMAGENET_MODELS))

__all__ = ["DARTS_MODELS", "DartsNetwork", "NON_DARTS_MODELS", "PreActResNet", "REGISTERED_MODELS", "WeightsFileError",
           "export_model", "load_exported", "load_state_dict_file"]

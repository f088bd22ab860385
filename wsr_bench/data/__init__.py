"""Datasets as tensors in [0,1]: :mod:`~wsr_bench.data.datasets` loads every dataset wsr-bench knows (digits,
synthetic, CIFAR-10/100, SVHN, Fashion-MNIST) into train/val/test splits, :mod:`~wsr_bench.data.fashion_mnist` reads
Fashion-MNIST's IDX files, and :mod:`~wsr_bench.data.errors` holds the one error they raise (below both, so that a
source can raise it without importing the loader). The public names are re-exported here.
"""

from wsr_bench.data.datasets import (
    DATASETS,
    DEFAULT_SIZE,
    NUM_CLASSES,
    STATS,
    DataSplits,
    as_tensors,
    load_dataset,
    load_splits,
    make_loader,
)
from wsr_bench.data.errors import DataError

__all__ = ["DATASETS", "DEFAULT_SIZE", "NUM_CLASSES", "STATS", "DataError", "DataSplits", "as_tensors",
           "load_dataset", "load_splits", "make_loader"]

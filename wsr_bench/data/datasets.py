"""Datasets as tensors in [0,1]: the embedded default (scikit-learn digits), synthetic data for tests,
CIFAR-10/100 and SVHN read from a local folder (torchvision formats; no download unless asked), and Fashion-MNIST
from a local folder or Debian's ``dataset-fashion-mnist`` (:mod:`wsr_bench.data.fashion_mnist`; never downloaded).

``load_dataset`` returns the paper's splits: ``train_t`` and ``train_v`` are the two halves of the training set
(seeded), ``test`` the test split. Normalisation is the model's job; the dataset only reports its mean/std.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from wsr_bench.data.errors import DataError  # also re-exported: callers catch wsr_bench.data.DataError
from wsr_bench.rules import DATASETS, check_dataset  # noqa: F401  (DATASETS re-exported: the names loaded here)

if TYPE_CHECKING:
    from wsr_bench.config import DataConfig

LOCAL_DATASETS = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "svhn": "SVHN"}
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    # mean/std of the 60,000 Fashion-MNIST training images (28x28, [0,1] scale), computed once from the IDX file
    "fashion_mnist": ((0.2860,), (0.3530,)),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10, "digits": 10, "fashion_mnist": 10}
#: the side used when ``image_size`` is None: digits/synthetic 16, Fashion-MNIST its native 28, the rest 32.
DEFAULT_SIZE = {"digits": 16, "synthetic": 16, "fashion_mnist": 28, "cifar10": 32, "cifar100": 32, "svhn": 32}


@dataclass
class DataSplits:
    """D_t, D_v (the two halves of the training set) and the test split, with what models need to know."""

    name: str
    train_t: Dataset
    train_v: Dataset
    test: Dataset
    num_classes: int
    in_chans: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def get_digits(image_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits (1797 images, shipped with the package, no download), resized to
    ``image_size`` (bilinear) and repeated to 3 channels; values in [0,1]."""
    from sklearn.datasets import load_digits

    if image_size < 8:
        raise DataError(f"digits image_size must be >= 8, got {image_size}")
    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x.clamp(0.0, 1.0).repeat(1, 3, 1, 1).contiguous()
    return x, torch.from_numpy(digits.target.astype(np.int64))


def get_synthetic(n: int = 256, image_size: int = 16, num_classes: int = 10,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable toy set for tests: each class is a fixed random pattern plus noise, values in [0,1]."""
    gen = torch.Generator().manual_seed(seed)
    protos = torch.rand(num_classes, 3, image_size, image_size, generator=gen)
    y = torch.randint(0, num_classes, (n,), generator=gen)
    x = (0.7 * protos[y] + 0.3 * torch.rand(n, 3, image_size, image_size, generator=gen)).clamp(0, 1)
    return x, y


def _split_half(ds: Dataset, seed: int) -> tuple[Subset, Subset]:
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed)).tolist()
    half = len(ds) // 2
    return Subset(ds, perm[:half]), Subset(ds, perm[half:])


def _tensor_splits(name: str, x: torch.Tensor, y: torch.Tensor, test_fraction: float, seed: int,
                   num_classes: int) -> DataSplits:
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = max(1, int(round(len(x) * test_fraction)))
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    train = TensorDataset(x[train_idx], y[train_idx])
    train_t, train_v = _split_half(train, seed + 1)
    mean, std = _channel_stats(x[train_idx])
    return DataSplits(name, train_t, train_v, TensorDataset(x[test_idx], y[test_idx]), num_classes,
                      x.shape[1], x.shape[-1], mean, std)


def _local_dataset(name: str, root: Path, download: bool) -> tuple[Dataset, Dataset]:
    import torchvision
    from torchvision import transforms

    cls = getattr(torchvision.datasets, LOCAL_DATASETS[name])
    to_tensor = transforms.ToTensor()
    try:
        if name == "svhn":
            return (cls(str(root), split="train", transform=to_tensor, download=download),
                    cls(str(root), split="test", transform=to_tensor, download=download))
        return (cls(str(root), train=True, transform=to_tensor, download=download),
                cls(str(root), train=False, transform=to_tensor, download=download))
    except RuntimeError as exc:
        raise DataError(f"{name} not found under {root} ({exc}); put the torchvision {LOCAL_DATASETS[name]} "
                        f"files there (e.g. cifar-10-batches-py/) or set data.download: true on a machine with "
                        f"internet") from None


def load_dataset(name: str = "digits", root: str | Path = "data", image_size: int | None = None, seed: int = 0,
                 download: bool = False, test_fraction: float = 0.2, synthetic_size: int = 256,
                 limit: int | None = None) -> DataSplits:
    """Load ``name`` and split it into D_t / D_v (halves of the training set, seeded) and the test split.

    Args:
        name: one of ``DATASETS``.
        root: folder holding local datasets (torchvision layouts; Fashion-MNIST's IDX files, else Debian's copy).
            Never downloaded unless ``download`` (which Fashion-MNIST ignores).
        image_size: side of digits/synthetic/fashion_mnist images (None: ``DEFAULT_SIZE``; Fashion-MNIST is
            resized, bilinear with antialiasing, when not 28); cifar10/cifar100/svhn keep their native 32.
        seed: seeds the train/test split of embedded data and the D_t/D_v halving.
        download: allow torchvision to download a local dataset (off by default; this project runs offline).
        test_fraction: held-out fraction for the embedded datasets, which have no test split of their own.
        synthetic_size: number of synthetic images.
        limit: keep at most this many images per split (quick runs).
    """
    check_dataset(name, error=DataError)
    if image_size is not None and image_size < 1:
        raise DataError(f"image_size must be >= 1 (or None for the dataset's default size), got {image_size}")
    image_size = DEFAULT_SIZE[name] if image_size is None else image_size
    if name == "digits":
        splits = _tensor_splits(name, *get_digits(image_size), test_fraction, seed, 10)
    elif name == "synthetic":
        splits = _tensor_splits(name, *get_synthetic(synthetic_size, image_size, 10, seed), test_fraction, seed, 10)
    elif name == "fashion_mnist":
        from wsr_bench.data.fashion_mnist import fashion_sets

        train, test, side = fashion_sets(root, image_size)
        mean, std = STATS[name]
        splits = DataSplits(name, *_split_half(train, seed), test, NUM_CLASSES[name], 1, side, mean, std)
    else:
        root = Path(root)
        if not root.is_dir() and not download:
            raise DataError(f"{name} data folder {root} does not exist; put the torchvision "
                            f"{LOCAL_DATASETS[name]} files there (or set data.root / data.download: true)")
        train, test = _local_dataset(name, root, download)
        train_t, train_v = _split_half(train, seed)
        mean, std = STATS[name]
        splits = DataSplits(name, train_t, train_v, test, NUM_CLASSES[name], 3, 32, mean, std)
    if limit is not None:
        splits.train_t, splits.train_v, splits.test = (
            Subset(ds, range(min(limit, len(ds)))) for ds in (splits.train_t, splits.train_v, splits.test))
    return splits


def load_splits(data: DataConfig, seed: int) -> DataSplits:
    """The splits a config's ``data`` section describes (``seed``: the experiment's master seed); what search,
    training and the pipeline all load, so they see the same images."""
    return load_dataset(data.name, root=data.root, image_size=data.image_size, seed=seed, download=data.download,
                        limit=data.limit)


def make_loader(ds: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0, drop_last: bool = False,
                sampler=None, num_workers: int = 0) -> DataLoader:
    """A DataLoader with a seeded shuffling generator (same order for the same seed)."""
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle and sampler is None, generator=gen,
                      drop_last=drop_last, sampler=sampler, num_workers=num_workers)


def as_tensors(ds: Dataset, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` examples of ``ds`` stacked as ``(x, y)`` tensors (for attacks and evaluation)."""
    n = len(ds) if n is None else min(n, len(ds))
    if n <= 0:
        raise DataError("dataset is empty")
    xs, ys = zip(*(ds[i] for i in range(n)), strict=True)
    return torch.stack(list(xs)), torch.as_tensor([int(v) for v in ys], dtype=torch.long)

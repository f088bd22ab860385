"""Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017) read from its four IDX files, never downloaded.

The files (``{train,t10k}-{images-idx3,labels-idx1}-ubyte``, gzipped or not) are looked up in ``data.root``, in
``<root>/fashion-mnist``, in torchvision's ``<root>/FashionMNIST/raw``, and last in
``/usr/share/datasets/fashion-mnist``, where Debian's ``dataset-fashion-mnist`` package installs them
(``make data``). Each file is decoded once per process into a uint8 tensor; images stay uint8 at their native 28x28
and become float in [0,1] per item, or are resized (bilinear, antialiased) once, as float, when another side is
asked for.
"""

from __future__ import annotations

import functools
import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from wsr_bench.data.errors import DataError

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
HINT = ("run `make data` (sudo apt-get install dataset-fashion-mnist) or put the four *-ubyte.gz files from "
        "github.com/zalandoresearch/fashion-mnist in data.root")


class ImageSet(Dataset):
    """Images (N, C, H, W) as uint8 (converted to float in [0,1] per item) or float, with int64 labels."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def _float(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._float(self.x[i]), self.y[i]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A whole batch in one indexing operation (DataLoader and Subset use it when present)."""
        return list(zip(self._float(self.x[indices]), self.y[indices], strict=True))


def _file(folder: Path, stem: str) -> Path | None:
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def find_folder(root: str | Path, system_dir: str | Path | None = None) -> Path:
    """The first folder holding Fashion-MNIST files: ``root``, ``root/fashion-mnist``, ``root/FashionMNIST/raw``,
    then ``system_dir`` (default :data:`SYSTEM_DIR`). A folder holding some but not all four files is an error."""
    root = Path(root)
    system_dir = SYSTEM_DIR if system_dir is None else Path(system_dir)
    candidates = [root, root / "fashion-mnist", root / "FashionMNIST" / "raw", system_dir]
    stems = [s for pair in FILES.values() for s in pair]
    for folder in candidates:
        missing = [s for s in stems if _file(folder, s) is None]
        if len(missing) < len(stems):
            if missing:
                raise DataError(f"fashion_mnist folder {folder} lacks {', '.join(missing)}(.gz); {HINT}")
            return folder
    raise DataError(f"fashion_mnist not found in {root} (nor its fashion-mnist/ or FashionMNIST/raw/) nor in "
                    f"{system_dir}; {HINT}")


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """An IDX file (gzipped when its name ends in .gz) of ``ndim``-dimensional uint8 data, checked against its
    header (magic number 0x0800 + ndim, then ``ndim`` big-endian sizes)."""
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            data = bytearray(f.read())
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} cannot be read ({exc}); the file is damaged: {HINT}") from None
    expected = 0x0800 + ndim
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != expected:
        raise DataError(f"{path} is not an IDX file of {ndim}-d uint8 data: magic number {magic}, expected "
                        f"{expected}")
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + math.prod(dims):
        raise DataError(f"{path} is truncated or damaged: its header promises {'x'.join(map(str, dims))} = "
                        f"{math.prod(dims)} bytes of data, the file holds {max(0, len(data) - header)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=4)
def _decode(images: str, labels: str, stamp: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = read_idx(images, 3), read_idx(labels, 1)
    if len(x) != len(y):
        raise DataError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels; the files do not belong "
                        f"together")
    if len(y) and int(y.max()) >= 10:
        raise DataError(f"{labels} holds label {int(y.max())}; Fashion-MNIST has classes 0-9")
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def load_split(folder: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images uint8 (N,1,28,28), labels int64 (N,))`` of ``split`` (train | test) in ``folder``, decoded once."""
    paths = [_file(Path(folder), stem) for stem in FILES[split]]
    if None in paths:
        raise DataError(f"fashion_mnist folder {folder} lacks the {split} files {' and '.join(FILES[split])}; {HINT}")
    stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    return _decode(str(paths[0]), str(paths[1]), stamp)


def resize(x: torch.Tensor, size: int, chunk: int = 8192) -> torch.Tensor:
    """uint8 images resized to ``size`` x ``size`` (bilinear, antialiased) as float32 in [0,1], in chunks."""
    out = [F.interpolate(part.float().div_(255.0), size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True).clamp_(0.0, 1.0) for part in x.split(chunk)]
    return torch.cat(out) if out else x.float()


def fashion_sets(root: str | Path, image_size: int | None = None,
                 system_dir: str | Path | None = None) -> tuple[ImageSet, ImageSet, int]:
    """``(train, test, side)``: the 60,000 training and 10,000 test images, at ``image_size`` (None or 28: native,
    kept as uint8) or resized to it."""
    if image_size is not None and image_size < 1:
        raise DataError(f"fashion_mnist image_size must be >= 1 (or null for the native 28), got {image_size}")
    folder = find_folder(root, system_dir)
    sets = []
    for split in ("train", "test"):
        x, y = load_split(folder, split)
        side = x.shape[-1]
        if image_size is not None and image_size != side:
            x, side = resize(x, image_size), image_size
        sets.append(ImageSet(x, y))
    return sets[0], sets[1], side

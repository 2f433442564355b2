"""Datasets, samplers and loaders over the prepared layout."""

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import tv_tensors

from contextrast_cli.data.prepared import list_pairs
from contextrast_cli.errors import DataError


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; DataError naming the path and why it cannot be read."""
    path = Path(path)
    why = "no such file" if not path.exists() else "a directory, not an image" if path.is_dir() else None
    image = None if why else cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: cannot read image ({why or 'not an image OpenCV can decode'})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: Path) -> np.ndarray:
    """(H, W) uint8 train ids; DataError when unreadable or not a single-channel 8-bit map."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if Path(path).is_file() else None
    if label is None or label.ndim != 2 or label.dtype != np.uint8:
        raise DataError(f"{path}: cannot read label (expected a single-channel 8-bit PNG of train ids)")
    return label


class SegmentationFolder(Dataset):
    """One split of a prepared dataset.

    Items are ``(image, label)``: image float32 (3, H, W) after ``transform``,
    label int64 (H, W) with 255 = ignore.
    """

    def __init__(self, root: Path, split: str, transform: Callable) -> None:
        self.pairs = list_pairs(root, split)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, label_path = self.pairs[index]
        image = tv_tensors.Image(torch.from_numpy(read_rgb(image_path)).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(read_label(label_path)))
        if image.shape[-2:] != mask.shape[-2:]:
            raise DataError(f"{label_path}: label size differs from its image {image_path.name}")
        image, mask = self.transform(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()


class InfiniteSampler(Sampler[int]):
    """Endless, resumable index stream, sharded across ``world_size`` processes.

    Epoch ``e`` is a permutation drawn from ``seed + e``; the stream can start at
    any position, so a resumed run sees exactly the data order it would have seen.
    """

    def __init__(self, size: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.start = size, seed, start
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[int]:
        position = self.start * self.world_size + self.rank  # global sample position
        epoch, order = -1, []
        while True:
            current, index = divmod(position, self.size)
            if current != epoch:
                epoch = current
                generator = torch.Generator().manual_seed(self.seed + epoch)
                order = torch.randperm(self.size, generator=generator).tolist()
            yield order[index]
            position += self.world_size


def _worker_init(_: int) -> None:
    cv2.setNumThreads(0)


def train_loader(dataset: Dataset, batch_size: int, workers: int, sampler: Sampler,
                 pin_memory: bool, seed: int) -> DataLoader:
    """Endless training batches (fixed batch size, no last partial batch).

    ``seed`` seeds the workers' augmentation RNGs (with no workers, augmentation
    draws from the global torch RNG, which checkpoints save and restore).
    """
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, drop_last=True, worker_init_fn=_worker_init,
                      persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed))


def eval_loader(dataset: Dataset, batch_size: int, workers: int, pin_memory: bool = False) -> DataLoader:
    """Sequential batches over a whole split (``pin_memory`` for a GPU: asynchronous copies)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                      pin_memory=pin_memory, worker_init_fn=_worker_init)

"""Datasets, samplers and loaders over the prepared layout."""

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import tv_tensors

from contextrast_cli.config.datasets import IGNORE_INDEX
from contextrast_cli.data.labels import read_index_label
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
    """(H, W) uint8 train ids (255 = ignore) of a palette, 8- or 16-bit grey label image.

    Raises:
        DataError: unreadable, a colour image, or a value that is no train id (file named).
    """
    label = read_index_label(path)
    if label.dtype != np.uint8:
        low, high = (int(label.min()), int(label.max())) if label.size else (0, 0)
        if low < 0 or high > IGNORE_INDEX:
            raise DataError(f"{path}: label values {f'up to {high}' if high > IGNORE_INDEX else f'down to {low}'} "
                            f"are not train ids (0-{IGNORE_INDEX - 1}, {IGNORE_INDEX} = ignore)")
        label = label.astype(np.uint8)
    return label


class SegmentationFolder(Dataset):
    """One split of a prepared dataset.

    Items are ``(image, label)``: image float32 (3, H, W) after ``transform``, label int64
    (H, W) with 255 = ignore. The key is an index, or ``(index, seed)``: the transform's random
    draws then come from a generator seeded with ``seed`` alone (``InfiniteSampler`` derives it
    from the run's seed and the sample's position in the global order), so an augmented
    sample does not depend on which process or worker loads it, or when.
    """

    def __init__(self, root: Path, split: str, transform: Callable) -> None:
        self.pairs = list_pairs(root, split)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        image_path, label_path = self.pairs[index]
        image = tv_tensors.Image(torch.from_numpy(read_rgb(image_path)).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(read_label(label_path)))
        if image.shape[-2:] != mask.shape[-2:]:
            raise DataError(f"{label_path}: label size differs from its image {image_path.name}")
        if seed is None:
            image, mask = self.transform(image, mask)
        else:  # torchvision's transforms draw from the global CPU generator: fork it, seed it
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                image, mask = self.transform(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()


class InfiniteSampler(Sampler[tuple[int, int]]):
    """Endless, resumable stream of ``(index, sample seed)`` keys, sharded across ``world_size`` processes.

    Epoch ``e`` is a permutation drawn from ``seed + e``; global position ``p`` is sample
    ``order[p % size]`` with augmentation seed ``sample_seed(seed, p)``. Process ``rank`` takes
    positions ``start + rank``, ``start + rank + world_size``, ...: with a per-process batch of
    B / W, iteration ``i`` of every process together covers positions ``i*B .. (i+1)*B - 1``,
    the batch one process with batch B takes. The samples, and their augmentations, are the
    same whatever the number of processes or workers, and a resumed run continues the stream.

    Args:
        start: the global position of the first key (iterations done x global batch).
    """

    def __init__(self, size: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.start = size, seed, start
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start + self.rank  # global sample position
        epoch, order = -1, []
        while True:
            current, index = divmod(position, self.size)
            if current != epoch:
                epoch = current
                generator = torch.Generator().manual_seed(self.seed + epoch)
                order = torch.randperm(self.size, generator=generator).tolist()
            yield order[index], sample_seed(self.seed, position)
            position += self.world_size


def sample_seed(seed: int, position: int) -> int:
    """A 64-bit augmentation seed for the sample at global ``position`` of a run seeded ``seed``
    (NumPy's SeedSequence: well-mixed, so neighbouring positions get unrelated streams)."""
    return int(np.random.SeedSequence([seed % 2**64, position]).generate_state(1, np.uint64)[0])


def _worker_init(_: int) -> None:
    cv2.setNumThreads(0)
    # SIGINT / SIGTERM sent to the whole process group (a terminal's Ctrl-C, a scheduler's
    # SIGTERM) must not kill a worker mid-batch: the training process decides when to stop
    # (between steps) and shuts its workers down
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def train_loader(dataset: Dataset, batch_size: int, workers: int, sampler: Sampler,
                 pin_memory: bool) -> DataLoader:
    """Endless training batches (fixed batch size, no last partial batch).

    Augmentation is seeded per sample by the sampler's keys; the loader's own generator
    is fixed so that creating it draws nothing from the global RNG that checkpoints restore.
    """
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, drop_last=True, worker_init_fn=_worker_init,
                      persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))


def eval_loader(dataset: Dataset, batch_size: int, workers: int, pin_memory: bool = False) -> DataLoader:
    """Sequential batches over a whole split (``pin_memory`` for a GPU: asynchronous copies).

    Its fixed generator keeps a validation from drawing on the global RNG: a run validated at
    other iterations trains on the same random numbers.
    """
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                      pin_memory=pin_memory, worker_init_fn=_worker_init,
                      generator=torch.Generator().manual_seed(0))

"""``contextrast train`` in a subprocess, with test hooks that hold it at a chosen point.

    python -m tests.train.driver MARKERS [HOOK=N ...] -- TRAIN ARGUMENTS

Hooks (N counts calls in this process, from 1); at its point the process writes
``MARKERS/<hook>`` and waits until ``MARKERS/go`` exists (or forever), so a test can deliver a
signal exactly there:

- ``stall_forward=N``: inside the N-th training forward, after the backbone ran (its BatchNorm
  statistics are updated, the head's are not): a signal here lands mid-forward;
- ``stall_eval=N``: inside the N-th evaluation forward (during a validation);
- ``block_save=N``: the N-th write of ``last.pt`` stops after half of the file's bytes;
- ``record=1``: every training sample loaded is appended to ``MARKERS/samples.<rank>`` as
  ``index seed`` (the seed names the sample's global position).

Under torchrun each process is rank R: its markers are ``<hook>.R`` (holding its pid) and it
waits for ``go.R``. Nothing here changes what training computes; the hooks only wait or write.
"""

import io
import os
import sys
import time
from pathlib import Path

import torch


RANK = os.environ.get("RANK")


def marker(name: str) -> str:
    return name if RANK is None else f"{name}.{RANK}"


def wait(markers: Path, name: str) -> None:
    (markers / marker(name)).write_text(str(os.getpid()))
    go = markers / marker("go")
    while not go.exists():
        time.sleep(0.02)
    go.unlink()


def install(markers: Path, hooks: dict[str, int]) -> None:
    from contextrast_cli.models import deeplab
    from contextrast_cli.models.segmentor import Segmentor

    counts = {"stall_forward": 0, "stall_eval": 0, "block_save": 0}
    if hooks.get("record"):
        record_samples(markers / f"samples.{RANK or 0}")

    def counted(name: str) -> bool:
        counts[name] += 1
        return hooks.get(name) == counts[name]

    head_forward = deeplab.DeepLabV3PlusHead.forward

    def head(self, features):
        if self.training and counted("stall_forward"):
            wait(markers, "stall_forward")
        return head_forward(self, features)

    segmentor_forward = Segmentor.forward

    def segmentor(self, x):
        if not self.training and counted("stall_eval"):
            wait(markers, "stall_eval")
        return segmentor_forward(self, x)

    save = torch.save

    def blocking_save(obj, path, *args, **kwargs):
        named = isinstance(path, (str, os.PathLike))  # torch.distributed pickles objects through torch.save too
        if not (named and Path(path).name.startswith(".last.pt.") and counted("block_save")):
            return save(obj, path, *args, **kwargs)
        buffer = io.BytesIO()
        save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        with open(path, "wb") as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
        (markers / marker("block_save")).write_text(str(os.getpid()))
        while True:
            time.sleep(1)

    deeplab.DeepLabV3PlusHead.forward = head
    Segmentor.forward = segmentor
    torch.save = blocking_save


def record_samples(path: Path) -> None:
    from contextrast_cli.data.loading import SegmentationFolder

    getitem = SegmentationFolder.__getitem__

    def recorded(self, key):
        if isinstance(key, tuple):  # a training sample: (index, seed)
            with path.open("a") as handle:
                handle.write(f"{key[0]} {key[1]}\n")
        return getitem(self, key)

    SegmentationFolder.__getitem__ = recorded


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--")
    markers, hooks = Path(argv[0]), dict(item.split("=") for item in argv[1:split])
    install(markers, {name: int(value) for name, value in hooks.items()})
    from contextrast_cli.cli import app

    app(argv[split + 1:], prog_name="contextrast")


if __name__ == "__main__":
    main()

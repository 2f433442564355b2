"""``contextrast train`` in a subprocess, with test hooks that hold it at a chosen point.

    python -m tests.engine.driver MARKERS [HOOK=N ...] -- TRAIN ARGUMENTS

Hooks (N counts calls in this process, from 1); at its point the process writes
``MARKERS/<hook>`` and waits until ``MARKERS/go`` exists (or forever), so a test can deliver a
signal exactly there:

- ``stall_forward=N``: inside the N-th training forward, after the backbone ran (its BatchNorm
  statistics are updated, the head's are not): a signal here lands mid-forward;
- ``stall_eval=N``: inside the N-th evaluation forward (during a validation);
- ``block_save=N``: the N-th write of ``last.pt`` stops after half of the file's bytes.

Nothing here changes what training computes; the hooks only wait.
"""

import io
import sys
import time
from pathlib import Path

import torch


def wait(markers: Path, name: str) -> None:
    (markers / name).write_text("here")
    while not (markers / "go").exists():
        time.sleep(0.02)
    (markers / "go").unlink()


def install(markers: Path, hooks: dict[str, int]) -> None:
    from contextrast_cli.models import deeplab
    from contextrast_cli.models.segmentor import Segmentor

    counts = {"stall_forward": 0, "stall_eval": 0, "block_save": 0}

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
        if not (Path(path).name.startswith(".last.pt.") and counted("block_save")):
            return save(obj, path, *args, **kwargs)
        buffer = io.BytesIO()
        save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        with open(path, "wb") as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
        (markers / "block_save").write_text("here")
        while True:
            time.sleep(1)

    deeplab.DeepLabV3PlusHead.forward = head
    Segmentor.forward = segmentor
    torch.save = blocking_save


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--")
    markers, hooks = Path(argv[0]), dict(item.split("=") for item in argv[1:split])
    install(markers, {name: int(value) for name, value in hooks.items()})
    from contextrast_cli.cli import app

    app(argv[split + 1:], prog_name="contextrast")


if __name__ == "__main__":
    main()

"""``contextrast visualize-boundaries`` (alias ``visualize``)."""

import zipfile
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from contextrast_cli.cli.app import (CheckpointOpt, DataRootOpt, DebugOpt, DeviceOpt, RunsDirOpt, app, guarded, out,
                                     pick_checkpoint)


def is_checkpoint(path: Path) -> bool:
    """Whether a positional argument after ``--checkpoints A`` is a checkpoint, by what the file is:
    a run folder, or a torch checkpoint (``torch.save`` writes a zip archive), whatever its suffix.
    A path that does not exist counts as a checkpoint only when named ``.pt``/``.pth``, so its
    error says the checkpoint is missing; anything else is an image."""
    path = Path(path)
    if not path.exists():
        return path.suffix.lower() in (".pt", ".pth")
    return path.is_dir() or zipfile.is_zipfile(path)


@app.command("visualize", hidden=True)
@app.command("visualize-boundaries")
def visualize_boundaries(
    ctx: typer.Context,
    images: Annotated[Optional[list[Path]], typer.Argument(
        help="Images (an image inside a prepared dataset finds its label).", show_default=False)] = None,
    checkpoint: CheckpointOpt = None,
    checkpoints: Annotated[Optional[list[Path]], typer.Option(
        help="Compare checkpoints (or run folders), one row each: --checkpoints A.pt B.pt C.pt "
        "(or repeat the option).")] = None,
    label: Annotated[Optional[Path], typer.Option(help="Label PNG (train ids, 255 ignore) of a single IMAGE.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Take images and labels from this prepared split.")] = None,
    num: Annotated[int, typer.Option(min=1, help="Images taken from --split.")] = 4,
    data_root: DataRootOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: visualize/ "
                                                    "beside the checkpoint).")] = None,
    layers: Annotated[Optional[str], typer.Option(help="Tapped layers to draw, e.g. 1,2,3,4 "
                                                  "(default: the checkpoint's contrast.layers).")] = None,
    ratio: Annotated[Optional[float], typer.Option(min=0.0, max=1.0,
                                                   help="BANE ratio: the share of each error region taken (default: contrast.bane.ratio).")] = None,
    style: Annotated[str, typer.Option(metavar="grid|overlay", help="grid (figure 3 panels) or overlay (one compact "
                                       "image).")] = "grid",
    device: DeviceOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    debug: DebugOpt = False,
) -> None:
    """Draw what BANE selects: prediction, error masks, distance heat-maps and the chosen negatives.

    BANE runs through the loss's own code on a batch of one image: its ratio applies per image here, per batch in training.

    Dots: BANE picks, coloured by the anchor class they push away from. Grey crosses: random top-up.
    """
    from contextrast_cli.errors import ConfigError
    from contextrast_cli.viz.boundaries import visualize_images

    with guarded(ctx, debug):
        images, checkpoints = list(images or []), list(checkpoints or [])
        if checkpoints:  # `--checkpoints A.pt B.pth`: Click hands B.pth to IMAGE
            checkpoints += [path for path in images if is_checkpoint(path)]
            images = [path for path in images if not is_checkpoint(path)]
            if checkpoint is not None:
                raise ConfigError("give either --checkpoint or --checkpoints, not both")
        checkpoints = [pick_checkpoint(path, runs_dir) for path in checkpoints] or [pick_checkpoint(checkpoint, runs_dir)]
        written = visualize_images(images, checkpoints, label=label, split=split, num=num,
                                   data_root=data_root, out_dir=out_dir, layers=layers, ratio=ratio,
                                   style=style, device=device or "auto")
    for path, note in written:
        if note:
            out.print(escape(note), soft_wrap=True)
        out.print(f"wrote {escape(str(path))}")

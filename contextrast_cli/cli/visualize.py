"""``contextrast visualize-boundaries`` (alias ``visualize``)."""

import zipfile
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from contextrast_cli.cli.app import (CheckpointOpt, DataRootOpt, DebugOpt, DeviceOpt, RunsDirOpt, SetOpt, app,
                                     checked_sets, existing, guarded, note_replaced, out, out_option, pick_checkpoint)
from contextrast_cli.cli.options import BANE_KEYS


def is_checkpoint(path: Path) -> bool:
    """Whether a positional argument after ``--checkpoints A`` is a checkpoint, by what the file is:
    a run folder, or a torch checkpoint (``torch.save`` writes a zip archive), whatever its suffix.
    A path that does not exist counts as a checkpoint only when named ``.pt``/``.pth``, so its
    error says the checkpoint is missing; anything else is an image."""
    path = Path(path)
    if not path.exists():
        return path.suffix.lower() in (".pt", ".pth")
    return path.is_dir() or zipfile.is_zipfile(path)


ImagesArg = Annotated[Optional[list[Path]], typer.Argument(
    metavar="[IMAGES]...", help="Images (an image inside a prepared dataset finds its label).", show_default=False)]
CheckpointsOpt = Annotated[Optional[list[Path]], typer.Option(
    metavar="PATH", help="Compare checkpoints (or run folders), one row each: --checkpoints A.pt B.pt C.pt (or repeat "
    "the option).")]
LabelOpt = Annotated[Optional[Path], typer.Option(metavar="FILE", help="Label PNG (train ids, 255 ignore) of a "
                                                  "single image.")]
VisSplitOpt = Annotated[Optional[str], typer.Option(metavar="SPLIT", help="Take images and labels from this "
                                                    "prepared split.")]
NumOpt = Annotated[int, typer.Option(min=1, metavar="N", help="Images taken from --split.")]
LayersOpt = Annotated[Optional[str], typer.Option(metavar="L1,L2,...", help="Tapped layers to draw, e.g. 1,2,3,4.",
                                                  show_default="contrast.layers")]
RatioOpt = Annotated[Optional[float], typer.Option(min=0.0, max=1.0, metavar="R", help="BANE ratio: the share of "
                                                   "each error region taken.", show_default="contrast.bane.ratio")]
StyleOpt = Annotated[str, typer.Option(metavar="grid|overlay", help="Grid (figure 3 panels) or overlay (one compact "
                                       "image).")]
OutOpt = out_option("Output folder.", default="visualize/ beside the checkpoint")
USAGE = ("nothing to draw: give images or a split, e.g. contextrast visualize-boundaries IMAGE.png [--checkpoint "
         "PATH], or contextrast visualize-boundaries --split val --num 4")


@app.command("visualize", short_help="The same as visualize-boundaries.")
@app.command("visualize-boundaries")
def visualize_boundaries(ctx: typer.Context, images: ImagesArg = None, checkpoint: CheckpointOpt = None,
                         checkpoints: CheckpointsOpt = None, label: LabelOpt = None, split: VisSplitOpt = None,
                         num: NumOpt = 4, data_root: DataRootOpt = None, out_dir: OutOpt = None,
                         layers: LayersOpt = None, ratio: RatioOpt = None, style: StyleOpt = "grid",
                         overrides: SetOpt = None, device: DeviceOpt = None, runs_dir: RunsDirOpt = Path("runs"),
                         debug: DebugOpt = False) -> None:
    """Draw what BANE selects: prediction, error masks, distance heat-maps and the chosen negatives.

    BANE runs through the loss's own code on a batch of one image: its ratio applies per image here, per batch
    in training. --set applies to the BANE settings drawn (contrast.bane.*, contrast.layers,
    contrast.max_negatives). Also `contextrast visualize`. Existing figures are replaced, with a note.

    Grid: dots are BANE picks, coloured by the anchor class they push away from; grey crosses the random top-up;
    white lines the error outlines. Overlay: one marker shape per layer, error boundaries in class colour.
    """
    from contextrast_cli.errors import ConfigError
    from contextrast_cli.viz.boundaries import visualize_dir, visualize_images

    with guarded(ctx, debug):
        images, checkpoints = list(images or []), list(checkpoints or [])
        if checkpoints:  # `--checkpoints A.pt B.pth`: Click hands B.pth to IMAGE
            checkpoints += [path for path in images if is_checkpoint(path)]
            images = [path for path in images if not is_checkpoint(path)]
            if checkpoint is not None:
                raise ConfigError("give either --checkpoint or --checkpoints, not both")
        if not images and split is None:
            raise ConfigError(USAGE)
        settings = checked_sets(overrides, BANE_KEYS, "visualize-boundaries")
        checkpoints = [pick_checkpoint(path, runs_dir) for path in checkpoints] or [pick_checkpoint(checkpoint, runs_dir)]
        before = existing(out_dir or visualize_dir(checkpoints), recursive=False)
        written = visualize_images(images, checkpoints, label=label, split=split, num=num,
                                   data_root=data_root, out_dir=out_dir, layers=layers, ratio=ratio,
                                   style=style, device=device or "auto", settings=settings)
    for path, note in written:
        if note:
            out.print(escape(note), soft_wrap=True)
        out.print(f"wrote {escape(str(path))}", soft_wrap=True)
    note_replaced(before)

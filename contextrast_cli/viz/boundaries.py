"""``contextrast visualize-boundaries``'s library call: checkpoints and images in, one figure per
image out (the paper's figure 3). ``viz.bane_view`` computes what BANE selects; ``viz.figures``
draws it."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from contextrast_cli.config.datasets import IGNORE_INDEX
from contextrast_cli.data.loading import read_label, read_rgb
from contextrast_cli.errors import ConfigError, DataError
from contextrast_cli.evaluation.writers import write_png
from contextrast_cli.viz.bane_view import bane_view, predict_with_sizes
from contextrast_cli.viz.figures import NO_LABEL_NOTE, Meta, draw_grid, draw_overlay, draw_rows
from contextrast_cli.viz.panels import colour_table


def read_checked_label(path: Path, image_path: Path, image_size: tuple[int, int], num_classes: int) -> np.ndarray:
    """(H, W) uint8 train ids of ``image_path``; DataError on a size or class mismatch."""
    label = read_label(path)
    if label.shape != tuple(image_size):
        raise DataError(f"{path}: label is {label.shape[0]}x{label.shape[1]} but image {image_path} "
                        f"is {image_size[0]}x{image_size[1]}")
    values = np.unique(label)
    bad = values[(values >= num_classes) & (values != IGNORE_INDEX)]
    if bad.size:
        raise DataError(f"{path}: label values {bad.tolist()} are not classes of the checkpoint "
                        f"(0..{num_classes - 1}, {IGNORE_INDEX} = ignore)")
    return label


def label_beside(image: Path) -> Path | None:
    """The label of an image inside a prepared dataset (``<split>/images/x.*`` -> ``<split>/labels/x.png``)."""
    from contextrast_cli.data.prepared import DATASET_JSON

    image = Path(image)
    label = image.parent.parent / "labels" / f"{image.stem}.png"
    inside = image.parent.name == "images" and (image.parent.parent.parent / DATASET_JSON).is_file()
    return label if inside and label.is_file() else None


def parse_layers(text: str | None, taps: int, default) -> tuple[int, ...]:
    """``"1,2,4"`` -> (1, 2, 4), checked against the network's ``taps`` layers."""
    if text is None:
        layers = tuple(default)
    else:
        try:
            layers = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
        except ValueError:
            raise ConfigError(f"--layers: expected comma-separated layer numbers such as 1,2,3,4, "
                              f"got {text!r}") from None
    bad = [layer for layer in layers if not 1 <= layer <= taps]
    if bad or not layers:
        raise ConfigError(f"--layers: {bad or 'none'} not tapped; the network taps layers 1..{taps}")
    return layers


@dataclass(frozen=True)
class Loaded:
    """A checkpoint ready to predict: its network, figure metadata and chosen layers."""

    path: Path
    model: torch.nn.Module
    meta: Meta
    layers: tuple[int, ...]
    data: object  # the checkpoint config's data section, for --split


def load_for_visualize(path: Path, device: torch.device, layers: str | None = None,
                       ratio: float | None = None, settings: Sequence[str] = ()) -> Loaded:
    """Rebuild a checkpoint's network; BANE settings from its config with ``settings`` (``--set
    contrast.bane.ratio=...``) laid over, unless ``layers`` or ``ratio`` say otherwise.

    Raises:
        CheckpointError: missing or unreadable checkpoint. ConfigError: a layer it does not tap.
    """
    from contextrast_cli.config import with_overrides
    from contextrast_cli.models.checkpoint import config_from_checkpoint, load_checkpoint, model_from_checkpoint

    payload = load_checkpoint(path)
    cfg, data = with_overrides(config_from_checkpoint(payload), settings), payload["dataset"]
    model = model_from_checkpoint(payload).to(device)
    meta = Meta(f"iteration {payload.get('iteration', '?')}", tuple(data["classes"]),
                colour_table(data["palette"]),
                ratio or cfg.contrast.bane.ratio, cfg.contrast.max_negatives, cfg.contrast.method,
                run_label(Path(path)))
    return Loaded(Path(path), model, meta, parse_layers(layers, len(model.feature_strides), cfg.contrast.layers),
                  cfg.data)


def visualize_dir(checkpoints: list[Path]) -> Path:
    """Where the figures go without ``--out``: ``visualize/`` beside the last checkpoint."""
    return Path(checkpoints[-1]).parent / "visualize"


def run_label(path: Path) -> str:
    """``<preset>/<run folder>/<file>`` of a checkpoint inside a run folder (``camvid/20261202-1830/best.pt``,
    an ablation's ``camvid-lite/none-seed0/last.pt``), else the file's own name: rows of two files of one
    run (``iter_000020.pt`` and ``best.pt``, both of iteration 20) are told apart."""
    path = Path(path).resolve()
    return f"{path.parent.parent.name}/{path.parent.name}/{path.name}" if path.parent.parent.name else path.name


def gather_inputs(images: list[Path], label: Path | None, split: str | None, num: int,
                  data_root: Path | None, loaded: Loaded) -> list[tuple[Path, Path | None]]:
    """(image, label or None) pairs from paths (a prepared dataset's image finds its label) or a split."""
    from contextrast_cli.data.locate import locate_dataset
    from contextrast_cli.data.prepared import list_pairs
    from contextrast_cli.evaluation.evaluator import check_classes

    if split is not None:
        if images or label:
            raise ConfigError("--split takes images and labels from the prepared dataset; drop IMAGE and --label")
        dataset = locate_dataset(loaded.data, data_root)
        check_classes(dataset, list(loaded.meta.classes), loaded.path)
        return list_pairs(dataset.root, split)[:num]
    if not images:
        raise ConfigError("nothing to draw: give IMAGE paths or --split SPLIT")
    if label is not None:
        if len(images) != 1:
            raise ConfigError(f"--label applies to a single IMAGE but {len(images)} images were given")
        return [(Path(images[0]), Path(label))]
    return [(Path(image), label_beside(image)) for image in images]


def figure(image: np.ndarray, label: np.ndarray | None, loaded: list[Loaded], device: torch.device,
           style: str, name: str) -> np.ndarray:
    """Predict with every checkpoint, compute the BANE views, draw the figure (RGB)."""
    results = []
    for item in loaded:
        pred, sizes = predict_with_sizes(item.model, image, device)
        views = [] if label is None else bane_view(
            pred, torch.from_numpy(label.astype(np.int64)), {layer: sizes[layer - 1] for layer in item.layers},
            len(item.meta.classes), item.meta.max_negatives, item.meta.ratio)
        results.append((item.meta, pred.numpy(), views))
    if len(results) > 1:
        return draw_rows(image, label, results, name, style)
    meta, pred, views = results[0]
    return (draw_grid if style == "grid" else draw_overlay)(image, pred, label, views, meta, name)


def visualize_images(images: list[Path], checkpoints: list[Path], *, label: Path | None = None,
                     split: str | None = None, num: int = 4, data_root: Path | None = None,
                     out_dir: Path | None = None, layers: str | None = None, ratio: float | None = None,
                     style: str = "grid", device: str = "auto",
                     settings: Sequence[str] = ()) -> list[tuple[Path, str | None]]:
    """One PNG per image in ``out_dir`` (default: ``visualize_dir``), each replacing an older one.

    Returns:
        (written PNG, note or None) per image; the note says when BANE had no ground truth.

    Raises:
        CheckpointError, DataError, ConfigError: one line naming the bad input.
    """
    from contextrast_cli.runtime.device import setup_runtime

    if style not in ("grid", "overlay"):
        raise ConfigError(f"--style: expected grid or overlay, got {style!r}")
    if ratio is not None and not 0 < ratio <= 1:
        raise ConfigError(f"--ratio: BANE's ratio must be in (0, 1], got {ratio}")
    runtime = setup_runtime(device, "fp32")
    loaded = [load_for_visualize(path, runtime.device, layers, ratio, settings) for path in checkpoints]
    for item in loaded[1:]:
        if item.meta.classes != loaded[0].meta.classes:
            raise ConfigError(f"{item.path} and {loaded[0].path} were trained on different classes")
    pairs = gather_inputs(images, label, split, num, data_root, loaded[0])
    out_dir = Path(out_dir) if out_dir else visualize_dir(checkpoints)
    suffix = ("_checkpoints" if len(loaded) > 1 else "") + ("_overlay" if style == "overlay" else "")
    written = []
    for image_path, label_path in pairs:
        image = read_rgb(image_path)
        truth = None if label_path is None else read_checked_label(
            label_path, image_path, image.shape[:2], len(loaded[0].meta.classes))
        rgb = figure(image, truth, loaded, runtime.device, style, Path(image_path).name)
        note = None if truth is not None else f"{image_path}: no label found; {NO_LABEL_NOTE}"
        written.append((write_png(out_dir / f"{Path(image_path).stem}{suffix}.png", rgb), note))
    return written

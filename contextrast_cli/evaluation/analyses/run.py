"""``analyze``'s engine for one checkpoint: the evaluation of ``evaluation.evaluator`` and every
analysis of this package on the same pass over the split, then Grad-CAM and t-SNE on seeded
samples.

One pass: the network is wrapped so that each forward also returns its taps; when the prediction's
protocol ran the network on the images as they are (one scale at the images' size, whole image),
those taps feed the analyses, otherwise one more forward per batch computes them.
"""

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from contextrast_cli.data.prepared import train_pixel_counts
from contextrast_cli.evaluation.analyses.bands import DEFAULT_PIXELS, BandMeter
from contextrast_cli.evaluation.analyses.groups import class_groups, group_ious
from contextrast_cli.evaluation.analyses.similarity import SimilarityMeter
from contextrast_cli.evaluation.analyses.sizes import DEFAULT_SIDES, SizeMeter
from contextrast_cli.evaluation.feature_space import FeatureProbe, FeatureSpaceMeter


@dataclass(frozen=True)
class AnalysisSettings:
    """What ``analyze`` computes and on how much.

    Attributes:
        sides: object-size thresholds (sides of squares, pixels).
        bands: boundary band half-widths (pixels).
        tsne_pixels: pixels per layer in the t-SNE sample (about equal per class, seeded).
        gradcam_images: images (seeded choice) that get Grad-CAM maps.
        gradcam_classes: classes per image (the largest predicted regions first), each mapped at
            the deepest layer the loss taps.
        max_distance: the first distance (layer cells) of the similarity curve's last, open bin.
        seed: seeds every sample.
    """

    sides: tuple[int, ...] = DEFAULT_SIDES
    bands: tuple[int, ...] = DEFAULT_PIXELS
    tsne_pixels: int = 600
    gradcam_images: int = 2
    gradcam_classes: int = 4
    max_distance: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        from contextrast_cli.errors import ConfigError

        if not self.sides or any(s < 1 for s in self.sides) or list(self.sides) != sorted(set(self.sides)):
            raise ConfigError(f"--size-thresholds: expected increasing whole pixels >= 1 such as 16,32,96, got "
                              f"{','.join(map(str, self.sides))}")
        if not self.bands or any(b < 1 for b in self.bands) or len(set(self.bands)) != len(self.bands):
            raise ConfigError(f"--boundary-thresholds: expected different whole pixels >= 1 such as 3,10,20, got "
                              f"{','.join(map(str, self.bands))}")

    def record(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


@dataclass
class Analysis:
    """One checkpoint's analysis: ``numbers`` (JSON: the evaluation's metrics and every analysis),
    ``tsne`` (layer -> (N, 2) coordinates and (N,) class ids) and ``cams`` (per image: its name,
    (H, W, 3) uint8 RGB, class ids and layer -> (C, H, W) maps)."""

    numbers: dict
    tsne: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    cams: list[tuple[str, np.ndarray, list[int], dict[int, np.ndarray]]] = field(default_factory=list)


class TapRecorder(nn.Module):
    """The segmentor, each forward also keeping its taps with the input they came from."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, images: torch.Tensor) -> dict:
        out = self.model(images, with_features=True)
        self.calls.append((images, out["features"]))
        return {"out": out["out"]}

    @torch.no_grad()
    def taps_of(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The taps of ``images`` from a forward on that very tensor, else from one more forward."""
        found = next((taps for x, taps in self.calls if x is images), None)
        self.calls = []
        return found if found is not None else self.model(images, with_features=True)["features"]


class AnalysisObserver:
    """Feeds each evaluated batch to the meters (``evaluation.evaluator.Observer``)."""

    def __init__(self, recorder: TapRecorder, probe: FeatureProbe, meters: dict, tsne: FeatureSpaceMeter) -> None:
        self.recorder, self.probe, self.meters, self.tsne = recorder, probe, meters, tsne

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, labels: torch.Tensor, pred: torch.Tensor) -> None:
        spaces = self.probe.update_taps(self.recorder.taps_of(images), labels)
        for layer, emb in spaces["layers"].items():
            self.tsne.update(("layers", layer), emb, labels)
        self.meters["similarity"].update(spaces, labels, pred)
        self.meters["sizes"].update(pred, labels)
        self.meters["bands"].update(pred, labels)


def analyze_checkpoint(checkpoint: Path, *, split: str | None = None, data_root: Path | None = None,
                       device: str = "auto", overrides: list[str] = (), settings: AnalysisSettings = AnalysisSettings(),
                       on_batch: Callable[[int, int], None] | None = None) -> Analysis:
    """Evaluate a checkpoint on a split and analyse it (``evaluation.analyses``), in float32.

    Args:
        overrides: ``--set key=value`` laid over the checkpoint's config, as on ``train``.

    Raises:
        CheckpointError, DataError, ConfigError: as ``evaluate`` raises them.
    """
    from contextrast_cli.config import resolve_config
    from contextrast_cli.data.locate import locate_dataset
    from contextrast_cli.evaluation.evaluator import check_classes, evaluate_split, feature_probe
    from contextrast_cli.models.checkpoint import load_checkpoint, model_from_checkpoint
    from contextrast_cli.runtime.device import setup_runtime

    payload = load_checkpoint(checkpoint)
    cfg = resolve_config(overrides=list(overrides), base=payload["config"])
    runtime = setup_runtime(device, "fp32")
    dataset = locate_dataset(cfg.data, data_root)
    check_classes(dataset, payload["dataset"]["classes"], checkpoint)
    model = model_from_checkpoint(payload).to(runtime.device)
    probe, k = feature_probe(payload, model, dataset), dataset.num_classes
    update = getattr(probe.criterion, "cross_layer_anchors", None)  # Contextrast(++)'s own anchors
    meters = {"sizes": SizeMeter(k, settings.sides), "bands": BandMeter(k, settings.bands, runtime.device),
              "similarity": SimilarityMeter(k, update, cfg.contrast.bane.ratio, settings.max_distance)}
    tsne = FeatureSpaceMeter(k, per_class=max(1, math.ceil(settings.tsne_pixels / k)), seed=settings.seed)
    recorder = TapRecorder(model).eval()  # eval_mode restores the mode it finds
    split = split or cfg.eval.split
    metrics = evaluate_split(recorder, dataset, split, cfg.eval, runtime, on_batch=on_batch,
                             observer=AnalysisObserver(recorder, probe, meters, tsne))
    numbers = {"checkpoint": str(checkpoint), "iteration": payload.get("iteration"), "method": cfg.contrast.method,
               "dataset": str(dataset.root), "eval": cfg.eval.model_dump(mode="json"), **metrics,
               "features": probe.meter.compute(dataset.classes), "settings": settings.record(),
               "overrides": list(overrides)}
    numbers.update(_analyses(dataset, metrics, meters))
    return Analysis(numbers, _tsne(tsne, settings.seed) if settings.tsne_pixels else {},
                    _cams(model, dataset, split, settings, runtime.device, (max(cfg.contrast.layers),)))


def _analyses(dataset, metrics: dict, meters: dict) -> dict:
    pixels, note = train_pixel_counts(dataset)
    groups = class_groups(dataset.classes, pixels)
    return {"groups": {"classes": groups, "IoU": group_ious(metrics["IoU"], groups), "note": note,
                       "train_pixels": dict(zip(dataset.classes, pixels.tolist()))},
            "sizes": meters["sizes"].compute(dataset.classes),
            "bands": meters["bands"].compute(dataset.classes),
            "similarity": meters["similarity"].compute()}


def _tsne(meter: FeatureSpaceMeter, seed: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    from contextrast_cli.evaluation.analyses.tsne import tsne_2d

    out = {}
    for (_, layer), state in sorted(meter.state.items()):
        coords = tsne_2d(state["vec"].float().cpu().numpy(), seed)
        if coords is not None:
            out[layer] = (coords, state["lab"].cpu().numpy())
    return out


def _cams(model: nn.Module, dataset, split: str, settings: AnalysisSettings, device: torch.device,
          layers) -> list[tuple[str, np.ndarray, list[int], dict[int, np.ndarray]]]:
    """Grad-CAM maps of a seeded choice of images, for their largest predicted classes."""
    from contextrast_cli.data.loading import read_rgb
    from contextrast_cli.data.prepared import list_pairs
    from contextrast_cli.evaluation.analyses.gradcam import class_cams

    pairs = list_pairs(dataset.root, split)
    count = min(settings.gradcam_images, len(pairs))
    picks = sorted(np.random.default_rng(settings.seed).choice(len(pairs), count, replace=False).tolist())
    out = []
    for index in picks:
        rgb = read_rgb(pairs[index][0])
        image = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255).to(device)
        with torch.no_grad():
            pred = model(image[None])["out"].argmax(1)[0]
        areas = torch.bincount(pred.flatten(), minlength=dataset.num_classes)
        classes = [c for c in areas.argsort(descending=True).tolist() if areas[c] > 0][:settings.gradcam_classes]
        out.append((pairs[index][0].stem, rgb, classes, class_cams(model, image, classes, layers, pred)))
    return out

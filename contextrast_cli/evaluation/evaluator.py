"""Evaluation over a split: confusion-matrix metrics, boundary metrics, feature-space measures.

``evaluate_split`` is the one evaluation of validation during training, ``evaluate``,
``evaluate --onnx`` and the accuracy gates of ``export --quantize int8`` and ``--half`` (which
score two graphs in one pass, with their pixel agreement); its predictions come from
``evaluation.inference.predict_probs``.
"""

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from contextrast_cli.config import EvalConfig
from contextrast_cli.config.datasets import IGNORE_INDEX
from contextrast_cli.data.loading import SegmentationFolder, eval_loader
from contextrast_cli.data.prepared import PreparedDataset
from contextrast_cli.data.transforms import eval_transform
from contextrast_cli.evaluation.boundary import BoundaryMeter
from contextrast_cli.runtime.device import Runtime
from contextrast_cli.evaluation.feature_space import FeatureProbe
from contextrast_cli.evaluation.inference import Segmenter, predict_probs
from contextrast_cli.evaluation.metrics import confusion_matrix, confusion_scores
from contextrast_cli.evaluation.writers import PredictionWriter
from contextrast_cli.errors import DataError

Observer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]
"""Sees every evaluated batch: (images (B, 3, H, W), labels (B, H, W), prediction (B, H, W))."""


class SplitMeters:
    """Everything a split's predictions are counted into: the confusion matrix, the boundary
    counts (``cfg.boundary``), the feature-space probe and the prediction writer (when given).

    Args:
        probe: measures the feature space of the images (single process).
        writer: writes each prediction under its image's name.
    """

    def __init__(self, dataset: PreparedDataset, cfg: EvalConfig, device: torch.device,
                 probe: FeatureProbe | None = None, writer: PredictionWriter | None = None) -> None:
        k = dataset.num_classes
        self.classes, self.probe, self.writer = dataset.classes, probe, writer
        self.conf = torch.zeros(k, k, dtype=torch.int64, device=device)
        self.edges = BoundaryMeter(k, cfg.boundary_width, cfg.boundary_tolerance, device) if cfg.boundary else None

    def update(self, pred: torch.Tensor, labels: torch.Tensor, names: list[str]) -> None:
        """Count a batch: ``pred`` and ``labels`` (B, H, W) train ids of the images ``names``."""
        self.conf += confusion_matrix(pred, labels, len(self.classes))
        if self.edges is not None:
            self.edges.update(pred, labels)
        if self.writer is not None:
            for name, p in zip(names, pred.to(torch.uint8).cpu().numpy()):
                self.writer.write(name, p)

    def all_reduce(self) -> None:
        """Sum the counts of every process (each evaluated a share of the images)."""
        torch.distributed.all_reduce(self.conf)
        if self.edges is not None:
            self.edges.all_reduce()

    def compute(self, split: str) -> dict:
        """``confusion_scores`` plus ``boundary`` and ``features`` where measured.

        Raises:
            DataError: no labelled pixel in the whole split (every score would be undefined).
        """
        conf = self.conf.cpu()
        if int(conf.sum()) == 0:
            raise DataError(f"split {split!r} has no labelled pixels (every label is {IGNORE_INDEX}, ignore): "
                            f"nothing to score; check its labels, or evaluate another split (eval.split, --split)")
        metrics = confusion_scores(conf, self.classes)
        metrics["confusion"] = {"rows": "ground truth", "columns": "prediction", "counts": "pixels",
                                "classes": list(self.classes), "matrix": conf.tolist()}
        if self.edges is not None:
            metrics["boundary"] = self.edges.compute(self.classes)
        if self.probe is not None:
            metrics["features"] = self.probe.meter.compute(self.classes)
        return metrics


@contextlib.contextmanager
def eval_mode(model: Segmenter):
    """A network in eval mode for the block, its own mode restored after (a callable as it is)."""
    network = model if isinstance(model, torch.nn.Module) else None  # None: nothing to switch
    was_training = network is not None and network.training
    if network is not None:
        network.eval()
    try:
        yield
    finally:
        if network is not None:
            network.train(was_training)


def spread(count: int, images: int | None) -> list[int]:
    """``images`` indices evenly spread over ``range(count)`` (all of them when None or more)."""
    if images is None or images >= count:
        return list(range(count))
    return [int(i) for i in np.linspace(0, count - 1, images).round().astype(int)]


def evaluate_split(model: Segmenter, dataset: PreparedDataset, split: str, cfg: EvalConfig,
                   runtime: Runtime, workers: int = 0, on_batch: Callable[[int, int], None] | None = None,
                   probe: FeatureProbe | None = None, save_dir: Path | None = None, images: int | None = None,
                   reference: Segmenter | None = None, observer: Observer | None = None) -> dict:
    """Metrics of ``model`` (a network, or a callable as in ``predict_probs``) on one split,
    under ``runtime``'s precision (float32 unless it has an autocast dtype). With several
    processes each takes every ``world_size``-th image and the counts are summed: every
    process gets the single-process result.

    Args:
        probe: measure the feature space too (single process).
        save_dir: write each prediction as ``labels/<stem>.png`` and ``colour/<stem>.png`` there.
        images: evaluate this many images evenly spread over the split (default: all of them).
        reference: a second model scored on the same images in the same pass (an accuracy gate:
            float graph against int8 or float16).
        observer: called with each batch's images, labels and prediction (B, H, W) after they are
            counted (the analyses of ``evaluation.analyses`` ride on this pass).

    Returns:
        ``confusion_scores`` output (scores as fractions: ``units`` says so) plus ``split``, ``num_images``,
        ``confusion`` (the counts,
        rows = ground truth, columns = prediction), ``boundary`` (with ``cfg.boundary``:
        ``BoundaryMeter.compute``) and ``features`` (with ``probe``: ``FeatureSpaceMeter.compute``);
        with ``reference``, also ``reference`` (its own metrics, the same keys) and
        ``pixel_agreement`` (the share of all pixels, labelled or not, where both predict the same class).
    """
    folder = SegmentationFolder(dataset.root, split, eval_transform())
    picked = spread(len(folder), images)
    indices = picked[runtime.rank::runtime.world_size]
    loader = eval_loader(Subset(folder, indices), cfg.batch_size, workers, pin_memory=runtime.device.type == "cuda")
    writer = PredictionWriter(save_dir, dataset.palette) if save_dir is not None else None
    meters = SplitMeters(dataset, cfg, runtime.device, probe, writer)
    second = SplitMeters(dataset, cfg, runtime.device) if reference is not None else None
    agreement = torch.zeros(2, dtype=torch.int64, device=runtime.device)  # pixels agreeing, pixels
    seen = 0
    with eval_mode(model), eval_mode(reference):
        for index, (batch, labels) in enumerate(loader):
            batch = batch.to(runtime.device, non_blocking=True)
            labels = labels.to(runtime.device, non_blocking=True)
            names = [folder.pairs[indices[seen + i]][0].stem for i in range(len(batch))]
            pred = _count(model, batch, labels, names, cfg, runtime, meters, probe)
            if observer is not None:
                observer(batch, labels, pred)
            if second is not None:
                other = _count(reference, batch, labels, names, cfg, runtime, second)
                agreement += torch.stack([(pred == other).sum(), torch.tensor(pred.numel(), device=pred.device)])
            seen += len(batch)
            if on_batch:
                on_batch(index + 1, len(loader))
    return _results(split, len(picked), runtime, meters, second, agreement)


def _count(model: Segmenter, images: torch.Tensor, labels: torch.Tensor, names: list[str], cfg: EvalConfig,
           runtime: Runtime, meters: SplitMeters, probe: FeatureProbe | None = None) -> torch.Tensor:
    """Predict a batch, count it into ``meters`` (and ``probe``); the (B, H, W) prediction."""
    with runtime.autocast():
        pred = predict_probs(model, images, cfg).argmax(1)
        if probe is not None:
            probe.update(images, labels)
    meters.update(pred, labels, names)
    return pred


def _results(split: str, num_images: int, runtime: Runtime, meters: SplitMeters, second: SplitMeters | None,
             agreement: torch.Tensor) -> dict:
    """The split's metrics, with each process's counts summed first (each evaluated a share)."""
    if runtime.distributed:
        meters.all_reduce()
        if second is not None:
            second.all_reduce()
            torch.distributed.all_reduce(agreement)
    metrics = {"split": split, "num_images": num_images, "units": "fraction", **meters.compute(split)}
    if second is not None:
        agreed, total = agreement.tolist()
        metrics.update(reference={"split": split, "num_images": num_images, **second.compute(split)},
                       pixel_agreement=agreed / total)
    return metrics


def evaluate_checkpoint(checkpoint: Path, *, split: str | None = None, data_root: Path | None = None,
                        device: str = "auto", amp: bool = False, eval_overrides: dict | None = None,
                        features: bool = False, save_dir: Path | None = None,
                        on_batch: Callable[[int, int], None] | None = None, settings: Sequence[str] = ()) -> dict:
    """Rebuild the network from a checkpoint and evaluate it on a prepared split.

    Args:
        data_root: an explicit prepared dataset folder, which must exist (nothing is generated).
        amp: mixed precision as ``train.precision: auto`` picks it (bfloat16 where the GPU has it
            natively, else float16); off: float32 metrics.
        eval_overrides: ``eval.*`` settings laid over the checkpoint's (scales, flip, mode, ...).
        settings: ``--set eval.key=value`` overrides, laid over the checkpoint's config before
            ``eval_overrides``.
        features: measure A and U of the encoder taps (and of the projection heads' embeddings
            when the checkpoint has them).

    Raises:
        CheckpointError: unreadable checkpoint. DataError: missing data or other classes.
        ConfigError: an invalid ``eval_overrides`` value.
    """
    from contextrast_cli.config import with_eval
    from contextrast_cli.data.locate import locate_dataset
    from contextrast_cli.models.checkpoint import (config_from_checkpoint, load_checkpoint,
                                                   model_from_checkpoint)
    from contextrast_cli.runtime.device import setup_runtime

    payload = load_checkpoint(checkpoint)
    cfg = with_eval(config_from_checkpoint(payload), eval_overrides or {}, settings)
    runtime = setup_runtime(device, "auto" if amp else "fp32")
    dataset = locate_dataset(cfg.data, data_root)
    check_classes(dataset, payload["dataset"]["classes"], checkpoint)
    model = model_from_checkpoint(payload).to(runtime.device)
    probe = feature_probe(payload, model, dataset) if features else None
    metrics = evaluate_split(model, dataset, split or cfg.eval.split, cfg.eval, runtime, on_batch=on_batch,
                             probe=probe, save_dir=save_dir)
    selection = {} if "optimizer" in payload else {"selected_on": config_from_checkpoint(payload).eval.split}
    return {"checkpoint": str(checkpoint), "iteration": payload.get("iteration"), **selection,
            "method": cfg.contrast.method, "dataset": str(dataset.root),
            "precision": str(runtime.amp_dtype or torch.float32).removeprefix("torch."),
            "eval": cfg.eval.model_dump(mode="json"), **metrics}


def feature_probe(payload: dict, model: torch.nn.Module, dataset: PreparedDataset) -> FeatureProbe:
    """The probe of a checkpoint's network, with its projection heads when it was trained with them."""
    from contextrast_cli.contrast.criterion import build_criterion, load_contrast_state
    from contextrast_cli.models.checkpoint import config_from_checkpoint
    from contextrast_cli.evaluation.feature_space import FeatureSpaceMeter

    cfg = config_from_checkpoint(payload)
    heads = None
    criterion = (build_criterion(cfg.contrast, model.feature_channels, model.num_classes)
                 if payload.get("contrast") else None)
    if criterion is not None:
        load_contrast_state(criterion, payload["contrast"])
        criterion.to(next(model.parameters()).device).eval()
        heads = dict(zip(criterion.layers, criterion.heads))
    return FeatureProbe(model, FeatureSpaceMeter(dataset.num_classes), heads, criterion)


def check_classes(dataset: PreparedDataset, classes: list[str], source: Path) -> None:
    """DataError unless the prepared dataset has exactly the model's classes."""

    if list(dataset.classes) != list(classes):
        raise DataError(f"{dataset.root} has classes {list(dataset.classes)[:4]}... "
                        f"({dataset.num_classes}) but {source} was trained on "
                        f"{list(classes)[:4]}... ({len(classes)}); pass the matching --data-root")

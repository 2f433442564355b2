"""Evaluation over a split: confusion-matrix metrics, boundary metrics, feature-space measures.

``evaluate_split`` is the one evaluation of validation during training, ``evaluate`` and the
ONNX checks; its predictions come from ``engine.inference.predict_probs``.
"""

from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Subset

from contextrast_cli.config import EvalConfig
from contextrast_cli.data.loading import SegmentationFolder, eval_loader
from contextrast_cli.data.prepared import PreparedDataset
from contextrast_cli.data.transforms import eval_transform
from contextrast_cli.engine.boundary import BoundaryMeter
from contextrast_cli.engine.device import Runtime
from contextrast_cli.engine.feature_space import FeatureProbe
from contextrast_cli.engine.inference import Predictor, predict_probs
from contextrast_cli.engine.metrics import confusion_matrix, summarize


def evaluate_split(model: Predictor, dataset: PreparedDataset, split: str, cfg: EvalConfig,
                   runtime: Runtime, workers: int = 0, on_batch: Callable[[int, int], None] | None = None,
                   probe: FeatureProbe | None = None, save_dir: Path | None = None) -> dict:
    """Metrics of ``model`` (a network, or a callable as in ``predict_probs``) on one split,
    under ``runtime``'s precision (float32 unless it has an autocast dtype). With several
    processes each takes every ``world_size``-th image and the counts are summed: every
    process gets the single-process result.

    Args:
        probe: measure the feature space too (single process).
        save_dir: write each prediction as ``labels/<stem>.png`` and ``colour/<stem>.png`` there.

    Returns:
        ``summarize`` output plus ``split``, ``num_images``, ``boundary`` (with ``cfg.boundary``:
        ``BoundaryMeter.compute``) and ``features`` (with ``probe``: ``FeatureSpaceMeter.compute``).
    """
    from contextrast_cli.engine.predictions import PredictionWriter

    folder = SegmentationFolder(dataset.root, split, eval_transform())
    indices = range(runtime.rank, len(folder), runtime.world_size) if runtime.distributed else range(len(folder))
    loader = eval_loader(Subset(folder, indices), cfg.batch_size, workers, pin_memory=runtime.device.type == "cuda")
    k = dataset.num_classes
    conf = torch.zeros(k, k, dtype=torch.int64, device=runtime.device)
    edges = BoundaryMeter(k, dataset.ignore_index, cfg.boundary_width, cfg.boundary_tolerance,
                          runtime.device) if cfg.boundary else None
    writer = PredictionWriter(save_dir, dataset.palette) if save_dir is not None else None
    network = model if isinstance(model, torch.nn.Module) else None
    was_training = network is not None and network.training
    if network is not None:
        network.eval()
    seen = 0
    for index, (images, labels) in enumerate(loader):
        images = images.to(runtime.device, non_blocking=True)
        labels = labels.to(runtime.device, non_blocking=True)
        with runtime.autocast():
            pred = predict_probs(model, images, cfg).argmax(1)
            if probe is not None:
                probe.update(images, labels)
        conf += confusion_matrix(pred, labels, k, dataset.ignore_index)
        if edges is not None:
            edges.update(pred, labels)
        if writer is not None:
            for i, p in enumerate(pred.to(torch.uint8).cpu().numpy()):
                writer.write(folder.pairs[indices[seen + i]][0].stem, p)
        seen += len(images)
        if on_batch:
            on_batch(index + 1, len(loader))
    if network is not None:
        network.train(was_training)
    if runtime.distributed:  # each process evaluated every world_size-th image: sum the counts
        torch.distributed.all_reduce(conf)
        if edges is not None:
            edges.all_reduce()
    metrics = {"split": split, "num_images": len(folder), **summarize(conf.cpu(), dataset.classes)}
    if edges is not None:
        metrics["boundary"] = edges.compute(dataset.classes)
    if probe is not None:
        metrics["features"] = probe.meter.compute(dataset.classes)
    return metrics


def evaluate_checkpoint(checkpoint: Path, *, split: str | None = None, data_root: Path | None = None,
                        device: str = "auto", amp: bool = False, eval_overrides: dict | None = None,
                        features: bool = False, save_dir: Path | None = None,
                        on_batch: Callable[[int, int], None] | None = None) -> dict:
    """Rebuild the network from a checkpoint and evaluate it on a prepared split.

    Args:
        data_root: an explicit prepared dataset folder, which must exist (nothing is generated).
        amp: mixed precision as ``train.precision: auto`` picks it (bfloat16 where the GPU has it
            natively, else float16); off: float32 metrics.
        eval_overrides: ``eval.*`` settings laid over the checkpoint's (scales, flip, mode, ...).
        features: measure A and U of the encoder taps (and of the projection heads' embeddings
            when the checkpoint has them).

    Raises:
        CheckpointError: unreadable checkpoint. DataError: missing data or other classes.
        ConfigError: an invalid ``eval_overrides`` value.
    """
    from contextrast_cli.config import with_eval
    from contextrast_cli.data.build import locate_dataset
    from contextrast_cli.engine.checkpoint import (config_from_checkpoint, load_checkpoint,
                                                   model_from_checkpoint)
    from contextrast_cli.engine.device import setup_runtime

    payload = load_checkpoint(checkpoint)
    cfg = with_eval(config_from_checkpoint(payload), eval_overrides or {})
    runtime = setup_runtime(device, "auto" if amp else "fp32")
    dataset = locate_dataset(cfg.data, data_root)
    check_classes(dataset, payload["dataset"]["classes"], checkpoint)
    model = model_from_checkpoint(payload).to(runtime.device)
    probe = feature_probe(payload, model, dataset) if features else None
    metrics = evaluate_split(model, dataset, split or cfg.eval.split, cfg.eval, runtime, on_batch=on_batch,
                             probe=probe, save_dir=save_dir)
    return {"checkpoint": str(checkpoint), "iteration": payload.get("iteration"),
            "method": cfg.contrast.method, "dataset": str(dataset.root),
            "precision": str(runtime.amp_dtype or torch.float32).removeprefix("torch."),
            "eval": cfg.eval.model_dump(mode="json"), **metrics}


def feature_probe(payload: dict, model: torch.nn.Module, dataset: PreparedDataset) -> FeatureProbe:
    """The probe of a checkpoint's network, with its projection heads when it was trained with them."""
    from contextrast_cli.contrast.build import build_criterion
    from contextrast_cli.engine.checkpoint import config_from_checkpoint
    from contextrast_cli.engine.feature_space import FeatureSpaceMeter

    cfg = config_from_checkpoint(payload)
    heads = None
    criterion = (build_criterion(cfg.contrast, model.feature_channels, model.num_classes)
                 if payload.get("contrast") else None)
    if criterion is not None:
        criterion.heads.load_state_dict(payload["contrast"])
        criterion.to(next(model.parameters()).device).eval()
        heads = dict(zip(criterion.layers, criterion.heads))
    return FeatureProbe(model, FeatureSpaceMeter(dataset.num_classes, dataset.ignore_index), heads)


def check_classes(dataset: PreparedDataset, classes: list[str], source: Path) -> None:
    """DataError unless the prepared dataset has exactly the model's classes."""
    from contextrast_cli.errors import DataError

    if list(dataset.classes) != list(classes):
        raise DataError(f"{dataset.root} has classes {list(dataset.classes)[:4]}... "
                        f"({dataset.num_classes}) but {source} was trained on "
                        f"{list(classes)[:4]}... ({len(classes)}); pass the matching --data-root")

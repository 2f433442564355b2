"""Inference (multi-scale, flip) and confusion-matrix evaluation over a split."""

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Subset

from contextrast_cli.config import EvalConfig
from contextrast_cli.data.loading import SegmentationFolder, eval_loader
from contextrast_cli.data.prepared import PreparedDataset
from contextrast_cli.data.transforms import eval_transform
from contextrast_cli.engine.device import Runtime
from contextrast_cli.engine.metrics import confusion_matrix, summarize

Predictor = torch.nn.Module | Callable[[torch.Tensor], dict]


@torch.no_grad()
def predict_probs(model: Predictor, images: torch.Tensor, scales=(1.0,), flip=False) -> torch.Tensor:
    """Class probabilities (B, K, H, W) averaged over scales and optional flips.

    Args:
        model: the network in eval mode, or any callable images -> ``{"out": logits}``
            (an onnxruntime session adapter, ``engine.onnx_eval.OnnxSegmentor``).
        images: (B, 3, H, W) RGB float images in [0, 1] on the model's device.
    """
    size = images.shape[-2:]
    total, count = None, 0
    for scale in scales:
        x = images if scale == 1.0 else F.interpolate(
            images, scale_factor=scale, mode="bilinear", align_corners=False)
        for flipped in ((False, True) if flip else (False,)):
            inp = x.flip(-1) if flipped else x
            logits = model(inp)["out"].float()
            logits = logits.flip(-1) if flipped else logits
            probs = F.interpolate(logits, size=size, mode="bilinear", align_corners=False).softmax(1)
            total, count = (probs if total is None else total + probs), count + 1
    return total / count


def evaluate_split(model: Predictor, dataset: PreparedDataset, split: str, cfg: EvalConfig,
                   runtime: Runtime, workers: int = 0,
                   on_batch: Callable[[int, int], None] | None = None) -> dict:
    """Metrics of ``model`` (a network, or a callable as in ``predict_probs``) on one split,
    under ``runtime``'s precision (float32 unless it has an autocast dtype). With several
    processes each takes every ``world_size``-th image and the confusion matrices are summed:
    every process gets the single-process result.

    Returns:
        ``summarize`` output plus ``num_images`` and ``split``.
    """
    folder = SegmentationFolder(dataset.root, split, eval_transform())
    share = folder if not runtime.distributed else Subset(folder, range(runtime.rank, len(folder), runtime.world_size))
    loader = eval_loader(share, cfg.batch_size, workers, pin_memory=runtime.device.type == "cuda")
    conf = torch.zeros(dataset.num_classes, dataset.num_classes, dtype=torch.int64,
                       device=runtime.device)
    network = model if isinstance(model, torch.nn.Module) else None
    was_training = network is not None and network.training
    if network is not None:
        network.eval()
    for index, (images, labels) in enumerate(loader):
        images = images.to(runtime.device, non_blocking=True)
        labels = labels.to(runtime.device, non_blocking=True)
        with runtime.autocast():
            pred = predict_probs(model, images, cfg.scales, cfg.flip).argmax(1)
        conf += confusion_matrix(pred, labels, dataset.num_classes, dataset.ignore_index)
        if on_batch:
            on_batch(index + 1, len(loader))
    if network is not None:
        network.train(was_training)
    if runtime.distributed:  # each process evaluated every world_size-th image: sum the counts
        torch.distributed.all_reduce(conf)
    return {"split": split, "num_images": len(folder), **summarize(conf.cpu(), dataset.classes)}


def evaluate_checkpoint(checkpoint: Path, *, split: str | None = None, data_root: Path | None = None,
                        device: str = "auto", amp: bool = False,
                        on_batch: Callable[[int, int], None] | None = None) -> dict:
    """Rebuild the network from a checkpoint and evaluate it on a prepared split.

    Args:
        data_root: an explicit prepared dataset folder, which must exist (nothing is generated).
        amp: mixed precision as ``train.precision: auto`` picks it (bfloat16 where the GPU has it
            natively, else float16); off: float32 metrics.

    Raises:
        CheckpointError: unreadable checkpoint. DataError: missing data or other classes.
    """
    from contextrast_cli.data.build import locate_dataset
    from contextrast_cli.engine.checkpoint import (config_from_checkpoint, load_checkpoint,
                                                   model_from_checkpoint)
    from contextrast_cli.engine.device import setup_runtime

    payload = load_checkpoint(checkpoint)
    cfg = config_from_checkpoint(payload)
    runtime = setup_runtime(device, "auto" if amp else "fp32")
    dataset = locate_dataset(cfg.data, data_root)
    check_classes(dataset, payload["dataset"]["classes"], checkpoint)
    model = model_from_checkpoint(payload).to(runtime.device)
    metrics = evaluate_split(model, dataset, split or cfg.eval.split, cfg.eval, runtime, on_batch=on_batch)
    return {"checkpoint": str(checkpoint), "iteration": payload.get("iteration"),
            "dataset": str(dataset.root), "precision": str(runtime.amp_dtype or torch.float32).removeprefix("torch."), **metrics}


def check_classes(dataset: PreparedDataset, classes: list[str], source: Path) -> None:
    """DataError unless the prepared dataset has exactly the model's classes."""
    from contextrast_cli.errors import DataError

    if list(dataset.classes) != list(classes):
        raise DataError(f"{dataset.root} has classes {list(dataset.classes)[:4]}... "
                        f"({dataset.num_classes}) but {source} was trained on "
                        f"{list(classes)[:4]}... ({len(classes)}); pass the matching --data-root")

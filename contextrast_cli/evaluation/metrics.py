"""Confusion-matrix segmentation metrics."""

import torch

from contextrast_cli.config.datasets import IGNORE_INDEX


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 counts, rows = ground truth, columns = prediction.

    Args:
        pred: (...) predicted train ids.
        target: (...) ground-truth train ids; ``IGNORE_INDEX`` pixels are skipped.
    """
    valid = target != IGNORE_INDEX
    index = target[valid].long() * num_classes + pred[valid].long()
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def confusion_scores(conf: torch.Tensor, classes: tuple[str, ...]) -> dict:
    """Per-class IoU and accuracy, mIoU, pixel accuracy (aAcc) and mean accuracy (mAcc).

    Classes absent from both ground truth and prediction have IoU NaN (reported
    as None) and are left out of the means.
    """
    conf = conf.double()
    true_pos = conf.diag()
    gt = conf.sum(1)
    union = gt + conf.sum(0) - true_pos
    iou = true_pos / union.where(union > 0, torch.nan)
    acc = true_pos / gt.where(gt > 0, torch.nan)
    total = conf.sum()
    return {
        "mIoU": rounded(iou.nanmean()),
        "aAcc": rounded(true_pos.sum() / total) if total > 0 else None,
        "mAcc": rounded(acc.nanmean()),
        "IoU": {name: rounded(v) for name, v in zip(classes, iou)},
        "Acc": {name: rounded(v) for name, v in zip(classes, acc)},
    }


def rounded(x: torch.Tensor) -> float | None:
    value = float(x)
    return None if value != value else round(value, 6)

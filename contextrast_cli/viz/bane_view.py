"""What BANE selects for one image, computed (drawing is ``viz.figures``'s).

``bane_view`` calls ``select_negatives`` exactly as the loss does (the prediction and the
labels resized by nearest neighbour to each tapped layer's size) for a batch of one image
and returns plain arrays; ``viz.figures`` only paints those arrays (``viz``'s docstring gives
the marker semantics). In training BANE's ``ratio`` is taken per anchor class over the
whole batch; here the batch is the one image, so it is per image.
"""

from dataclasses import dataclass

import numpy as np
import torch

from contextrast_cli.config.datasets import IGNORE_INDEX
from contextrast_cli.contrast.grids import resize_labels
from contextrast_cli.contrast.sampling import NegativeSelection, select_negatives
from contextrast_cli.evaluation.inference import predict_probs
from contextrast_cli.viz.panels import LayerPicks


SEED = 0


@dataclass
class LayerView(LayerPicks):
    """``LayerPicks`` plus the ``select_negatives`` output they were read from.

    Attributes:
        selection: the ``select_negatives`` output for B = 1 (its maps are (1, h, w)).
    """

    selection: NegativeSelection


def bane_view(pred: torch.Tensor, label: torch.Tensor, layer_sizes: dict[int, tuple[int, int]],
              num_classes: int, max_negatives: int, ratio: float, seed: int = SEED) -> list[LayerView]:
    """BANE maps and negatives of one image at each layer, as the loss computes them.

    Args:
        pred: (H, W) predicted class ids at image size.
        label: (H, W) ground truth (train ids, ``IGNORE_INDEX`` ignored).
        layer_sizes: 1-based layer -> (h, w) of its tapped feature map.
        seed: seed of the top-up generator (a fresh one per layer).
    """
    views = []
    for layer, size in layer_sizes.items():
        labels = resize_labels(label[None], size)  # (1, h, w)
        small = resize_labels(pred[None], labels.shape[-2:])
        selection = select_negatives(small, labels, num_classes, max_negatives, ratio, IGNORE_INDEX,
                                     torch.Generator().manual_seed(seed))
        views.append(_layer_view(layer, selection, tuple(pred.shape), tuple(size)))
    return views


def _layer_view(layer, selection: NegativeSelection, image_size, size) -> LayerView:
    cell = (image_size[0] / size[0], image_size[1] / size[1])
    bane, topup = selection.bane, selection.topup
    return LayerView(layer, cell, selection.maps.error[0].numpy(), selection.maps.distance[0].numpy(),
                     cell_centres(bane.index[bane.valid], size[1], cell), bane.anchor[bane.valid].numpy(),
                     cell_centres(selection.pool[topup.any(0)], size[1], cell),
                     bane.counts.numpy(), topup.sum(1).numpy(), selection)


def cell_centres(index: torch.Tensor, width: int, cell: tuple[float, float]) -> np.ndarray:
    """(N, 2) int (x, y): the image pixel at the centre of each flat layer-cell index."""
    y, x = (index // width).numpy(), (index % width).numpy()
    return np.stack([np.floor((x + 0.5) * cell[1]), np.floor((y + 0.5) * cell[0])], 1).astype(np.int64)


@torch.no_grad()
def predict_with_sizes(model: torch.nn.Module, image: np.ndarray,
            device: torch.device) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Eval-mode prediction (H, W) on the CPU and the (h, w) of every tapped layer.

    Args:
        image: (H, W, 3) uint8 RGB, scaled to [0, 1] here as the evaluator's transform does
            (the network normalises).
    """
    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255)[None].to(device)
    height, width = image.shape[:2]  # the segmentor's contract: tap i is ceil(H / s_i) x ceil(W / s_i)
    sizes = [(-(-height // s), -(-width // s)) for s in model.feature_strides]
    return predict_probs(model, x).argmax(1)[0].cpu(), sizes

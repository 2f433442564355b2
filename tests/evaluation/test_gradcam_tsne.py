"""Grad-CAM through the tap hook against Grad-CAM written out by hand; t-SNE keeps clusters apart."""

import cv2
import numpy as np
import torch

from contextrast_cli.evaluation.analyses.gradcam import class_cams
from contextrast_cli.evaluation.analyses.tsne import tsne_2d


def by_hand(model, image, pred, c, layer):
    """ReLU(sum_k w_k A_k) at tap ``layer``, w_k the spatial mean of d(sum of class-c logits over
    pred == c)/dA_k (Selvaraju et al.), min-max scaled, resized to the image and scaled again."""
    kept = {}

    def keep(_module, _inputs, output):
        output[layer - 1].retain_grad()
        kept["a"] = output[layer - 1]

    handle = model.backbone.register_forward_hook(keep)
    try:
        logits = model(image[None])["out"][0]
    finally:
        handle.remove()
    (logits[c] * (pred == c)).sum().backward()
    activation, grad = kept["a"][0].detach(), kept["a"].grad[0]
    cam = torch.relu((grad.mean((1, 2))[:, None, None] * activation).sum(0)).numpy()
    cam = cam - cam.min()
    cam = cv2.resize((cam / (1e-7 + cam.max())).astype(np.float32), (image.shape[-1], image.shape[-2]))
    cam = cam - cam.min()  # the package scales once more after resizing (its mean over target layers)
    return cam / (1e-7 + cam.max())


def test_class_cams_match_grad_cam_by_hand():
    from contextrast_cli.config import ModelConfig
    from contextrast_cli.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(name="deeplabv3plus", backbone="resnet18", output_stride=16), 3,
                        (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).eval()
    image = torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(1))
    pred = torch.zeros(64, 96, dtype=torch.long)
    pred[10:40, 20:70], pred[45:, :30] = 1, 2
    cams = class_cams(model, image, [1, 2], [2, 4], pred)
    assert set(cams) == {2, 4} and cams[2].shape == (2, 64, 96)
    for layer in (2, 4):
        for row, c in enumerate((1, 2)):
            model.zero_grad()
            np.testing.assert_allclose(cams[layer][row], by_hand(model, image, pred, c, layer), atol=1e-4)
    assert not model.backbone._forward_hooks  # the tap is unhooked after each call


def test_tsne_keeps_two_far_clusters_apart_and_is_seeded():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 0.1, (30, 8)), rng.normal(3, 0.1, (30, 8))])
    first, second = tsne_2d(points, seed=0), tsne_2d(points, seed=0)
    np.testing.assert_array_equal(first, second)
    a, b = first[:30], first[30:]
    gap = np.linalg.norm(a.mean(0) - b.mean(0))
    assert gap > 3 * max(np.linalg.norm(a - a.mean(0), axis=1).max(), np.linalg.norm(b - b.mean(0), axis=1).max())
    assert tsne_2d(points[:4]) is None

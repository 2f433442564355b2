"""Multi-scale and flip inference on a hand-built model whose every output is known; a split
evaluated at its base size."""

import math

import numpy as np
import pytest
import torch

from contextrast_cli.config import EvalConfig
from contextrast_cli.evaluation.inference import predict_probs


class Probe(torch.nn.Module):
    """Two classes with constant logit maps: class 0 at 0, class 1 at ``a * H / 4 + b * x[0, 0, 0]``
    (the input's height relative to 4, and its top-left value of channel 0), so scale and flip
    each change the logit in a way that can be worked out by hand."""

    def __init__(self, a: float, b: float) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        batch, _, height, width = x.shape
        logit = self.a * height / 4 + self.b * x[:, 0, 0, 0]
        return {"out": torch.stack([torch.zeros(batch), logit], 1)[:, :, None, None].expand(batch, 2, height, width)}


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


@pytest.mark.parametrize("scales,flip", [((1.0,), False), ((1.0,), True), ((1.0, 0.5), False), ((1.0, 0.5), True)])
def test_two_scales_and_flip_by_hand(scales, flip):
    a, b = 0.8, -1.5
    image = torch.zeros(1, 3, 4, 4)
    image[..., 0] = 1.0  # the left column is 1, the rest 0
    # top-left value seen by the model: scale 1: 1 (flipped: the right column, 0); scale 0.5: bilinear
    # at input (0.5, 0.5), the mean of the top-left 2x2 block = 0.5 (flipped: 0); height 4 -> 2 at 0.5
    seen = {(1.0, False): a + b * 1.0, (1.0, True): a, (0.5, False): a * 0.5 + b * 0.5, (0.5, True): a * 0.5}
    passes = [(s, f) for s in scales for f in ((False, True) if flip else (False,))]
    expected = sum(sigmoid(seen[p]) for p in passes) / len(passes)
    probs = predict_probs(Probe(a, b), image, EvalConfig(scales=scales, flip=flip))
    assert probs.shape == (1, 2, 4, 4)
    assert torch.allclose(probs[:, 1], torch.full((1, 4, 4), expected), atol=1e-6)
    assert torch.allclose(probs.sum(1), torch.ones(1, 4, 4), atol=1e-6)  # an average of distributions


def test_a_2000x1500_image_is_evaluated_at_the_base_size(tmp_path):
    """``evaluate_split`` on a prepared split holding one 2000x1500 image: the network sees the base
    size times each test scale, and the prediction is scored against the label at 2000x1500."""
    from contextrast_cli.config import BaseSize
    from contextrast_cli.data.prepared import Sample, write_prepared
    from contextrast_cli.evaluation.evaluator import evaluate_split
    from contextrast_cli.runtime.device import Runtime
    from tests.evaluation.test_inference import SizeSpy

    label = np.ones((1500, 2000), np.uint8)
    label[:, :1000] = 0  # the left half is class 0, which the spy never predicts
    dataset = write_prepared(tmp_path / "big", name="folder", classes=("a", "b"), palette=((0, 0, 0), (9, 9, 9)),
                             splits={"val": [Sample("photo", np.zeros((1500, 2000, 3), np.uint8), label)]},
                             source={"kind": "test"})
    spy = SizeSpy()
    cfg = EvalConfig(scales=(1.0, 0.5), base_size=BaseSize(long=2048, short=512), boundary=False)
    metrics = evaluate_split(spy, dataset, "val", cfg, Runtime(torch.device("cpu")))
    assert spy.sizes == [(512, 683), (256, 341)]  # 2000 * 512/1500 * 0.5 = 341.33
    assert metrics["num_images"] == 1 and metrics["IoU"]["b"] == pytest.approx(0.5)  # 1500x1000 of 1500x2000

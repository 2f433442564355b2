"""Sliding-window inference: the windows, the count map, and slide == whole for a pointwise network;
the sizes the network sees with a base size."""

import math

import pytest
import torch

from contextrast_cli.config import BaseSize, EvalConfig
from contextrast_cli.evaluation.inference import default_stride, predict_probs, slide_logits, slide_windows


class Pointwise(torch.nn.Module):
    """A 1x1 convolution: exactly translation-equivariant, so every window sees what the whole image does."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 5, 1)

    def forward(self, x):
        return {"out": self.conv(x)}


class WindowMean(torch.nn.Module):
    """Logits constant over a window: the mean of its input, so averaging can be checked by hand."""

    def forward(self, x):
        return {"out": x.mean((1, 2, 3), keepdim=True).expand(x.shape[0], 2, *x.shape[-2:])}


def test_windows_by_hand():
    # 10 rows, crop 4, stride 3: starts 0, 3, then the last window moved back to end at row 10
    rows = sorted({(t, b) for t, b, _, _ in slide_windows(10, 4, (4, 4), (3, 3))})
    assert rows == [(0, 4), (3, 7), (6, 10)]
    assert slide_windows(3, 5, (8, 8), (4, 4)) == [(0, 3, 0, 5)]  # smaller than the crop: one window
    assert default_stride((769, 769)) == (513, 513) and default_stride((512, 1024)) == (342, 683)


@pytest.mark.parametrize("size,crop,stride", [((37, 53), (16, 20), (11, 13)), ((31, 31), (8, 8), (7, 5)),
                                              ((9, 101), (9, 10), (9, 9)), ((5, 7), (16, 16), (4, 4))])
def test_count_map_covers_every_pixel(size, crop, stride):
    count = torch.zeros(size, dtype=torch.int64)
    for top, bottom, left, right in slide_windows(*size, crop, stride):
        assert 0 <= top < bottom <= size[0] and 0 <= left < right <= size[1]
        assert (bottom - top, right - left) == (min(crop[0], size[0]), min(crop[1], size[1]))
        count[top:bottom, left:right] += 1
    assert count.min() >= 1


@pytest.mark.parametrize("size", [(37, 53), (24, 31)])
def test_slide_equals_whole_for_a_pointwise_network(size):
    model = Pointwise().eval()
    images = torch.rand(2, 3, *size)
    whole = model(images)["out"]
    with torch.no_grad():
        assert torch.allclose(slide_logits(model, images, (16, 20), (11, 13)), whole, atol=1e-6)
        for scales, flip in (((1.0,), False), ((1.0, 0.75), True)):
            a = predict_probs(model, images, EvalConfig(scales=scales, flip=flip))
            b = predict_probs(model, images, EvalConfig(scales=scales, flip=flip, mode="slide", crop=(16, 20),
                                                        stride=(11, 13)))
            assert torch.allclose(a, b, atol=1e-6)


def test_overlapping_logits_are_averaged():
    images = torch.rand(1, 3, 13, 11)
    crop, stride = (6, 5), (4, 3)
    expected = torch.zeros(13, 11)
    count = torch.zeros(13, 11)
    for top, bottom, left, right in slide_windows(13, 11, crop, stride):
        expected[top:bottom, left:right] += images[..., top:bottom, left:right].mean()
        count[top:bottom, left:right] += 1
    out = slide_logits(WindowMean(), images, crop, stride)
    assert torch.allclose(out[0, 0], expected / count, atol=1e-6)
    assert not torch.allclose(out[0, 0], torch.full((13, 11), float(images.mean())), atol=1e-3)


class SizeSpy:
    """Records the (H, W) of every input; logits: class 1 everywhere (two classes)."""

    def __init__(self) -> None:
        self.sizes = []

    def __call__(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        logits = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        logits[:, 1] = 1.0
        return {"out": logits}


def test_test_scales_are_relative_to_the_base_size():
    """A 2000x1500 image with base size (2048, 512): the network sees 683x512 times each scale
    (hand-computed: factor = s * 512/1500, sides int(x + 0.5)), twice with flip; the probabilities
    come back at 2000x1500."""
    spy, images = SizeSpy(), torch.rand(1, 3, 1500, 2000)
    cfg = EvalConfig(scales=(0.75, 1.0, 1.5, 2.0), flip=True, base_size=BaseSize(long=2048, short=512))
    probs = predict_probs(spy, images, cfg)
    assert spy.sizes == [(384, 512)] * 2 + [(512, 683)] * 2 + [(768, 1024)] * 2 + [(1024, 1365)] * 2
    assert probs.shape == (1, 2, 1500, 2000)
    assert torch.allclose(probs[:, 1], torch.full((1, 1500, 2000), 1 / (1 + math.exp(-1))))


def test_long_side_base_and_the_sizes_without_one():
    spy = SizeSpy()
    predict_probs(spy, torch.rand(2, 3, 427, 640), EvalConfig(scales=(1.0, 1.25), base_size=BaseSize(long=520)))
    assert spy.sizes == [(347, 520), (434, 650)]  # 427 * 0.8125 = 346.94; 427 * 1.015625 = 433.67
    spy = SizeSpy()
    predict_probs(spy, torch.rand(1, 3, 30, 40), EvalConfig(scales=(1.0, 0.75)))
    assert spy.sizes == [(30, 40), (22, 30)]  # no base size: each image's own size, as before


def test_slide_windows_cover_the_base_sized_image():
    spy = SizeSpy()
    cfg = EvalConfig(mode="slide", crop=(256, 256), stride=(200, 200), base_size=BaseSize(long=2048, short=512))
    probs = predict_probs(spy, torch.rand(1, 3, 1500, 2000), cfg)
    assert probs.shape == (1, 2, 1500, 2000)
    assert spy.sizes == [(256, 256)] * len(slide_windows(512, 683, (256, 256), (200, 200))) == [(256, 256)] * 12

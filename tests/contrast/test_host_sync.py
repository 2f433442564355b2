"""A Contextrast training step calls no operator that waits for the GPU.

On CUDA, operators whose output size or value depends on the data (``bincount``,
``nonzero``, boolean-mask indexing, ``.item()``) copy back to the host and stall the CPU
until the GPU has caught up, so the step's many small loss kernels can no longer be queued
while the network's kernels run. This machine has no GPU, so the check records every
operator a CPU step dispatches and looks for the ones that synchronise on CUDA.
"""

from contextlib import nullcontext

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from contextrast_cli.config import resolve_config
from contextrast_cli.contrast.criterion import build_criterion
from contextrast_cli.train.step import training_step
from contextrast_cli.models.registry import build_model
from tests.models.small import SMALL_MODELS

aten = torch.ops.aten
SYNCING = {aten.bincount, aten.nonzero, aten._local_scalar_dense, aten.masked_select, aten.is_nonzero,
           aten.equal, aten._unique2, aten.unique_consecutive, aten.unique_dim, aten.histc}
INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}


class SyncRecorder(TorchDispatchMode):
    """Records the operators dispatched inside it that synchronise with the host on CUDA."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set = set()
        self.syncing: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        packet = func.overloadpacket
        self.seen.add(packet)
        if packet in SYNCING:
            self.syncing.append(str(func))
        elif packet in INDEXING and any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
                                        for i in args[1]):
            self.syncing.append(f"{func} with a boolean mask")
        return func(*args, **(kwargs or {}))


def test_the_recorder_catches_synchronising_calls():
    x = torch.arange(6)
    with SyncRecorder() as recorder:
        torch.bincount(x, minlength=8)
        _ = x[x > 2]
        int(x.sum())
        torch.where(x > 2, x, 0)  # three-argument where: fine
    assert recorder.syncing == ["aten.bincount.default", "aten.index.Tensor with a boolean mask",
                                "aten._local_scalar_dense.default"]


@pytest.mark.parametrize(("name", "bane", "method"), [
    *((name, bane, "contextrast") for name in sorted(SMALL_MODELS) for bane in (True, False)),
    ("deeplabv3", True, "contextrast++")])  # ++ adds nothing network-specific
def test_contextrast_training_step_never_waits_for_the_device(name, bane, method):
    """Contextrast++ too: the fusion modules, the bank's read and its push are sync-free."""
    torch.manual_seed(0)
    cfg = resolve_config("toy", overrides=[f"contrast.method={method}", f"contrast.bane.enabled={bane}"]).contrast
    model = build_model(SMALL_MODELS[name], 5).train()
    criterion = build_criterion(cfg, model.feature_channels, model.num_classes).train()
    assert criterion.static_slots is None  # the default: static slots on any device but the CPU
    criterion.static_slots = True  # what a GPU runs (on the CPU the slots are sized by reading counts)
    optimizer = torch.optim.SGD([*model.parameters(), *criterion.parameters()], lr=0.01, momentum=0.9)
    images, labels = torch.rand(2, 3, 64, 96), torch.randint(0, 5, (2, 64, 96))
    labels[:, :8] = 255
    with SyncRecorder() as first:  # the first call checks the label ids once (issue 34)
        training_step(model, optimizer, images, labels, nullcontext, criterion)
    assert first.syncing == ["aten._local_scalar_dense.default"]
    with SyncRecorder() as recorder:
        terms = training_step(model, optimizer, images, labels, nullcontext, criterion)
    assert recorder.syncing == []
    assert aten.scatter_add_ in recorder.seen and aten.sort in recorder.seen  # the loss did run
    if method == "contextrast++":
        assert float(terms["loss_aa"]) > 0  # the second step read the bank the first one filled
    assert all(torch.isfinite(v) for v in terms.values())


@pytest.mark.parametrize("name", ["deeplabv3", "hrnet"])
def test_pixel_contrast_waits_once_for_its_sample_count(name):
    """The baseline's number of qualifying (image, class) pairs sets its shapes: one read; on the
    CPU, where a read is free, the label ids are checked on every call: one more."""
    torch.manual_seed(0)
    cfg = resolve_config("toy", overrides=["contrast.method=pixel-contrast", "contrast.layers=[1]",
                                           "contrast.lambdas=[1.0]", "contrast.pixel_contrast.max_views=4"]).contrast
    model = build_model(SMALL_MODELS[name], 5).train()
    criterion = build_criterion(cfg, model.feature_channels, model.num_classes).train()
    optimizer = torch.optim.SGD([*model.parameters(), *criterion.parameters()], lr=0.01)
    images, labels = torch.rand(2, 3, 64, 96), torch.randint(0, 5, (2, 64, 96))
    with SyncRecorder() as recorder:
        terms = training_step(model, optimizer, images, labels, nullcontext, criterion)
    assert recorder.syncing == ["aten._local_scalar_dense.default"] * 2
    assert float(terms["pc_pairs"]) > 0  # pairs qualified: the sampling and SupCon ran


@pytest.mark.parametrize("max_anchors", [4, None])
def test_many_classes_never_wait_for_the_device(max_anchors):
    """41 classes of which 40 are present (ADE20K-like): an anchor for each, or 4 drawn at random
    with a cap; choosing them, the flat samples and the shared pool are all sync-free."""
    torch.manual_seed(0)
    overrides = ["contrast.method=contextrast"] + ([f"contrast.max_anchors={max_anchors}"] if max_anchors else [])
    cfg = resolve_config("toy", overrides=overrides).contrast
    model = build_model(SMALL_MODELS["deeplabv3"], 41).train()
    criterion = build_criterion(cfg, model.feature_channels, model.num_classes).train()
    criterion.static_slots = True  # what a GPU runs
    optimizer = torch.optim.SGD([*model.parameters(), *criterion.parameters()], lr=0.01)
    images, labels = torch.rand(2, 3, 64, 96), torch.randint(0, 40, (2, 64, 96))  # 40 of 41 classes present
    training_step(model, optimizer, images, labels, nullcontext, criterion)  # the first call checks the labels
    with SyncRecorder() as recorder:
        terms = training_step(model, optimizer, images, labels, nullcontext, criterion)
    assert recorder.syncing == [] and aten.sort in recorder.seen
    assert float(terms["ccl_present"]) == 40 and float(terms["ccl_anchored"]) == (max_anchors or 40)
    assert float(terms["ccl_l1_classes"]) == (max_anchors or 40)

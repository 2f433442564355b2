"""ONNX export: parity with PyTorch for every registered network, the graph holds the network's
parameters and nothing of the projection heads, the CLI files and errors, onnxruntime evaluation."""

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
from onnx.reference import ReferenceEvaluator
import pytest
import torch
from torch import nn
from torchvision import tv_tensors

from contextrast_cli.config import resolve_config
from contextrast_cli.contrast.criterion import build_criterion
from contextrast_cli.data.locate import locate_dataset
from contextrast_cli.data.transforms import eval_transform
from contextrast_cli.models.checkpoint import (describe, load_checkpoint, model_from_checkpoint,
                                               save_checkpoint)
from contextrast_cli.export import ExportOptions, export_checkpoint
from contextrast_cli.export.checks import shape_chains
from contextrast_cli.models.registry import build_model
from tests.conftest import invoke, one_line_error, tiny_overrides
from tests.models.small import SMALL_MODELS

def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, size=(64, 96)) -> None:
    """Random affine BatchNorm parameters and running statistics of real activations (as after
    training): folding is then not an identity, and logits stay O(1) through deep networks."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
            module.bias.copy_(torch.rand(module.bias.shape, generator=generator) * 0.4 - 0.2)
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
    model.train()
    for _ in range(2):
        model(torch.rand(2, 3, *size, generator=generator))
    model.eval()


def random_checkpoint(path: Path, cfg, dataset) -> tuple[nn.Module, nn.Module]:
    """A checkpoint written by the real ``describe``/``save_checkpoint``: network + projection heads."""
    torch.manual_seed(0)
    model = build_model(cfg.model, len(dataset.classes), cfg.data.mean, cfg.data.std)
    calibrate_batchnorm(model)
    projectors = build_criterion(cfg.contrast, model.feature_channels, model.num_classes).heads
    save_checkpoint(path, {**describe(cfg, dataset), "model": model.state_dict(),
                           "contrast": projectors.state_dict(), "iteration": 0})
    return model, projectors


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A random-init toy checkpoint (DeepLabV3+, contrastive heads) and its tiny synthetic dataset."""
    root = tmp_path_factory.mktemp("toy")
    cfg = resolve_config(preset="toy", overrides=tiny_overrides(root))
    dataset = locate_dataset(cfg.data)
    checkpoint = root / "runs" / "toy" / "run" / "best.pt"
    model, _ = random_checkpoint(checkpoint, cfg, dataset)
    return SimpleNamespace(root=root, checkpoint=checkpoint, data=dataset.root, model=model, exports={})


def exported(toy, **flags) -> Path:
    """The toy checkpoint exported once per flag set (at the crop size 32x48, dynamic)."""
    key = tuple(sorted(flags.items()))
    if key not in toy.exports:
        name = "-".join(k for k, v in key if v) or "plain"
        toy.exports[key] = export_checkpoint(toy.checkpoint, toy.root / name / "model.onnx",
                                             ExportOptions(**flags)).path
    return toy.exports[key]


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_export_matches_pytorch_and_holds_only_the_network(name, tmp_path):
    cfg = resolve_config(preset="toy").model_copy(update={"model": SMALL_MODELS[name]})
    dataset = SimpleNamespace(name="synthetic", classes=("a", "b", "c", "d", "e"),
                              palette=[(i, i, i) for i in range(5)], ignore_index=255)
    model, projectors = random_checkpoint(tmp_path / "best.pt", cfg, dataset)
    static = model.backbone.fixed_size_export is not None  # timm's Swin: one input size only
    # an export size HRNet must pad (traced at 64 x 96, the next multiples of 32)
    result = export_checkpoint(tmp_path / "best.pt", options=ExportOptions(height=45, width=77, dynamic=not static))
    assert result.path == tmp_path / "best.onnx"
    assert json.loads(Path(f"{result.path}.json").read_text())["traced_size"] == ([45, 77] if static else [64, 96])
    # the library's own check: the export size, then an odd size with batch 2
    assert [r["shape"] for r in result.verification] == [[1, 45, 77]] + ([[1, 45, 77]] if static else [[2, 33, 65]])
    # an independent check against the network built here, at two sizes
    ort_session = session(result.path)
    generator = torch.Generator().manual_seed(2)
    for shape in [(1, 3, 45, 77)] if static else [(1, 3, 64, 96), (2, 3, 45, 77)]:
        images = torch.rand(shape, generator=generator)
        with torch.no_grad():
            ref = model(images)["out"]
        got = torch.from_numpy(ort_session.run(["logits"], {"image": images.numpy()})[0])
        assert got.shape == ref.shape
        assert float((got - ref).abs().max()) <= 1e-3
        assert float((got.argmax(1) == ref.argmax(1)).double().mean()) >= 0.999
    # a second, independent runtime: the onnx package's reference implementation, at a small size
    # (the slow pure-Python runtime once here; the export's own check below runs it for every network)
    if name == "deeplabv3plus":
        small = torch.rand(1, 3, 32, 40, generator=generator).numpy()
        by_reference = ReferenceEvaluator(str(result.path)).run(None, {"image": small})[0]
        by_ort = ort_session.run(None, {"image": small})[0]
        assert by_reference.shape == by_ort.shape == (1, 5, 32, 40)
        assert float(np.abs(by_reference - by_ort).max()) <= 1e-3
    assert result.reference["runtime"] == "onnx.reference.ReferenceEvaluator"  # the export's own check ran
    assert result.reference["max_abs_diff"] <= 1e-3
    # the dynamic graph computes its Resize sizes at run time; a --static one must not (checked on
    # the network that pads and on one that does not: a second export of each network costs ~10 s)
    assert bool(shape_chains(onnx.load(str(result.path)))) != static
    if name in ("hrnet", "deeplabv3plus"):
        fixed = export_checkpoint(tmp_path / "best.pt", tmp_path / "static.onnx",
                                  ExportOptions(height=45, width=77, dynamic=False, verify=False))
        assert shape_chains(onnx.load(str(fixed.path))) == []
    # before optimisation the graph's tensors are exactly the network's: parameters + BN statistics
    state = model.state_dict()
    assert result.graph_tensors == {k: tuple(v.shape) for k, v in state.items()
                                    if not k.endswith("num_batches_tracked")}
    params = sum(p.numel() for p in model.parameters())
    assert result.counts["network"] == params
    assert result.counts["projection"] == sum(p.numel() for p in projectors.parameters()) > 0
    assert result.counts["training_total"] == params + result.counts["projection"]
    # after optimisation each BatchNorm (2C parameters, 2C statistics) is folded into the convolution
    # before it as a C-element bias (named after that convolution's weight): the network's float
    # initializers hold params - sum(C) elements; the others are small constants (Resize scales)
    floats = [t for t in onnx.load(str(result.path)).graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    network = [t for t in floats if t.name.startswith("network.")]
    bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    normalization = model.pixel_mean.numel() + model.pixel_std.numel()  # the graph normalises its input
    if not any(isinstance(m, (nn.Linear, nn.LayerNorm)) for m in model.modules()):
        assert sum(int(np.prod(t.dims)) for t in network) == params - bn_channels + normalization
        assert result.counts["initializer_elements"] == params - bn_channels + normalization
        assert all(int(np.prod(t.dims)) <= 4 for t in floats if not t.name.startswith("network."))
    else:  # transformers: the optimiser folds transposed Linear weights (and LayerNorm / attention constants)
        # into tensors of its own names, so only the total is bounded: the network's tensors and no more
        # (Swin: each window attention's relative position bias gathered to heads x 49 x 49, and the
        # shifted windows' masks, at most as large again)
        window_constants = sum(2 * m.num_heads * 49 * 49 for m in model.modules() if hasattr(m, "relative_position_index"))
        assert sum(int(np.prod(t.dims)) for t in floats) <= params + normalization + window_constants
    head_only = {tuple(v.shape) for v in projectors.state_dict().values()} - {tuple(v.shape) for v in state.values()}
    assert head_only and not head_only & {tuple(t.dims) for t in floats}


def test_shape_chains_finds_a_size_computed_from_shape():
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Slice", ["s", "start", "end"], ["hw"]),
             helper.make_node("Mul", ["hw", "two"], ["hw2"]), helper.make_node("Concat", ["nc", "hw2"], ["size"], axis=0),
             helper.make_node("Resize", ["x", "", "", "size"], ["y"], name="up"),
             helper.make_node("Resize", ["y", "", "", "fixed"], ["z"], name="fixed_up")]
    ints = lambda name, values: helper.make_tensor(name, TensorProto.INT64, [len(values)], values)  # noqa: E731
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
                              [ints("start", [2]), ints("end", [4]), ints("two", [2, 2]), ints("nc", [1, 3]),
                               ints("fixed", [1, 3, 16, 16])])
    assert shape_chains(helper.make_model(graph)) == ["Resize up"]


def test_training_only_modules_are_dropped_and_counted(toy, tmp_path, monkeypatch):
    from contextrast_cli.models import checkpoint as checkpoint_module
    from contextrast_cli.models.segmentor import Segmentor

    build = checkpoint_module.model_from_checkpoint

    def with_aux(payload):  # a network with a submodule that only training uses
        network = build(payload)
        network.head.aux_head = nn.Conv2d(128, 8, 1)
        return network

    monkeypatch.setattr(checkpoint_module, "model_from_checkpoint", with_aux)
    monkeypatch.setattr(Segmentor, "training_only_modules", lambda self: ["head.aux_head"], raising=False)
    result = export_checkpoint(toy.checkpoint, tmp_path / "m.onnx", ExportOptions(verify=False))
    assert result.counts["training_only"] == 128 * 8 + 8
    assert result.counts["training_total"] == result.counts["network"] + 128 * 8 + 8 + result.counts["projection"]
    assert not any(name.startswith("head.aux_head") for name in result.graph_tensors)
    assert result.graph_tensors == {k: tuple(v.shape) for k, v in toy.model.state_dict().items()
                                    if not k.endswith("num_batches_tracked")}


def test_argmax_graph_gives_int64_labels_of_torch(toy):
    path = exported(toy, argmax=True)
    images = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = toy.model(images)["out"]
    labels = session(path).run(None, {"image": images.numpy()})[0]
    assert labels.dtype == np.int64 and labels.shape == (2, 37, 53)
    differ = torch.from_numpy(labels) != logits.argmax(1)
    top2 = logits.topk(2, dim=1).values
    assert bool(((top2[:, 0] - top2[:, 1])[differ] < 1e-4).all())  # only near-ties may differ
    assert len(logits.argmax(1).unique()) > 1
    meta = json.loads(Path(f"{path}.json").read_text())
    assert meta["output"] == {"name": "labels", "dtype": "int64", "layout": "NHW",
                              "shape": ["batch", "height", "width"],
                              "dynamic_axes": {"batch": 0, "height": 1, "width": 2}}


def test_preprocessing_graph_takes_uint8_nhwc(toy):
    path = exported(toy, preprocessing=True)
    payload = load_checkpoint(toy.checkpoint)
    norm = payload["normalization"]
    pixels = torch.randint(0, 256, (2, 37, 53, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    scaled = torch.stack([eval_transform()(tv_tensors.Image(p.permute(2, 0, 1)))
                          for p in pixels]).as_subclass(torch.Tensor)
    with torch.no_grad():
        ref = model_from_checkpoint(payload)(scaled)["out"]
    got = torch.from_numpy(session(path).run(None, {"image": pixels.numpy()})[0])
    assert got.shape == ref.shape and float((got - ref).abs().max()) <= 1e-3
    assert float((got.argmax(1) == ref.argmax(1)).double().mean()) >= 0.999
    meta = json.loads(Path(f"{path}.json").read_text())
    assert meta["input"]["dtype"] == "uint8" and meta["input"]["layout"] == "NHWC"
    assert meta["input"]["shape"] == ["batch", "height", "width", 3]
    assert meta["normalization"]["mean"] == norm["mean"] and max(norm["mean"]) < 1  # [0, 1] units


def test_cli_export_writes_graph_and_sidecar_atomically(toy, tmp_path):
    run = tmp_path / "runs" / "toy" / "run"
    run.mkdir(parents=True)
    (run / "best.pt").write_bytes(toy.checkpoint.read_bytes())
    result = invoke("export", "--runs-dir", tmp_path / "runs", "--size", "40x56")  # ONNX is the default
    assert result.exit_code == 0, result.output
    assert f"using {tmp_path / 'runs'}" in result.output and "max |logit diff|" in result.output
    assert sorted(p.name for p in run.iterdir()) == ["best.onnx", "best.onnx.json", "best.pt"]  # no temp files
    meta = json.loads((run / "best.onnx.json").read_text())
    assert meta["checkpoint"]["sha256"] == hashlib.sha256((run / "best.pt").read_bytes()).hexdigest()
    assert meta["checkpoint"]["path"] == str((run / "best.pt").resolve())
    assert meta["dataset"]["classes"][0] == "sky" and len(meta["dataset"]["palette"]) == 8
    assert meta["opset"] == 18 and meta["export_size"] == [40, 56]
    assert meta["input"] == {"name": "image", "dtype": "float32", "layout": "NCHW",
                             "shape": ["batch", 3, "height", "width"],
                             "dynamic_axes": {"batch": 0, "height": 2, "width": 3},
                             "meaning": "RGB / 255 (the graph normalises)"}
    assert set(meta["versions"]) == {"contextrast", "torch", "onnx", "onnxruntime"}
    counts = meta["parameters"]
    assert f"{counts['network']:,}" in result.output and f"{counts['training_total']:,}" in result.output
    model = onnx.load(str(run / "best.onnx"))
    assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == ["logits"]


def test_cli_export_bad_inputs_are_one_line(toy, tmp_path):
    one_line_error(invoke("export", "--onnx", "--checkpoint", tmp_path / "missing.pt"), 2, "does not exist")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    one_line_error(invoke("export", "--onnx", "--checkpoint", tmp_path / "foreign.pt"), 2,
                   "not a contextrast checkpoint")
    for opset in (5, 99):
        one_line_error(invoke("export", "--onnx", "--checkpoint", toy.checkpoint, "--opset", opset), 2,
                       f"--opset {opset}: the ONNX exporter (torch.onnx, dynamo) writes opsets 18 to")
    (tmp_path / "file").write_text("x")
    one_line_error(invoke("export", "--onnx", "--checkpoint", toy.checkpoint, "--out",
                          tmp_path / "file" / "m.onnx"), 2, "cannot write")
    one_line_error(invoke("evaluate", "--onnx", tmp_path / "none.onnx"), 2, "does not exist")
    (tmp_path / "bare.onnx").write_bytes(b"")
    one_line_error(invoke("evaluate", "--onnx", tmp_path / "bare.onnx"), 2, "has no sidecar bare.onnx.json")


def test_cli_export_refuses_unwritable_folder(toy, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that chmod does not stop (root)")
        one_line_error(invoke("export", "--onnx", "--checkpoint", toy.checkpoint, "--out", locked / "m.onnx"),
                       2, "cannot write")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("flags", [{}, {"argmax": True}, {"preprocessing": True}], ids=["logits", "argmax", "uint8"])
def test_evaluate_onnx_equals_evaluate_checkpoint(toy, flags, tmp_path):
    path = exported(toy, **flags)
    onnx_run = invoke("evaluate", "--onnx", path, "--data-root", toy.data, "--json", tmp_path / "onnx.json")
    assert onnx_run.exit_code == 0, onnx_run.output
    torch_run = invoke("evaluate", "--checkpoint", toy.checkpoint, "--data-root", toy.data, "--device", "cpu",
                       "--json", tmp_path / "torch.json")
    assert torch_run.exit_code == 0, torch_run.output
    got, want = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("onnx", "torch"))
    assert got["num_images"] == want["num_images"] == 4 and got["split"] == want["split"] == "val"
    assert got["mIoU"] == pytest.approx(want["mIoU"], abs=1e-4)
    assert sum(v is not None and v > 0 for v in want["IoU"].values()) >= 2  # not a one-class prediction
    for name, iou in want["IoU"].items():
        assert (got["IoU"][name] is None) == (iou is None)
        assert iou is None or got["IoU"][name] == pytest.approx(iou, abs=1e-4)


def test_a_contextrast_plus_plus_checkpoint_exports_the_network_alone(toy, tmp_path):
    """Issue 34: the fusion modules and the memory bank stay out of the graph; parity holds, and
    the training-only count includes the fusion modules."""
    payload = load_checkpoint(toy.checkpoint)
    cfg = resolve_config(base=payload["config"], overrides=["contrast.method=contextrast++"])
    criterion = build_criterion(cfg.contrast, toy.model.feature_channels, toy.model.num_classes)
    k = toy.model.num_classes
    criterion.bank.push(torch.randn(k, cfg.contrast.embed_dim), torch.ones(k, dtype=torch.bool))
    path = tmp_path / "plus.pt"
    save_checkpoint(path, {**payload, "config": cfg.to_dict(), "contrast": criterion.state_dict()})
    result = export_checkpoint(path, tmp_path / "plus.onnx", ExportOptions())
    state = toy.model.state_dict()
    assert result.graph_tensors == {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    fusion = sum(p.numel() for p in criterion.fusions.parameters())
    assert result.counts["projection"] == sum(p.numel() for p in criterion.parameters()) > fusion > 0
    images = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = toy.model(images)["out"]
    got = torch.from_numpy(session(result.path).run(["logits"], {"image": images.numpy()})[0])
    assert float((got - ref).abs().max()) <= 1e-3


def test_a_fixed_size_network_refuses_a_dynamic_export_in_one_line(tmp_path):
    """timm's Swin specialises the traced graph to the traced size: a dynamic export would be static
    without saying so, so it is refused before tracing, naming --static."""
    cfg = resolve_config(preset="toy").model_copy(update={"model": SMALL_MODELS["upernet"]})
    dataset = SimpleNamespace(name="synthetic", classes=("a", "b"), palette=[(0, 0, 0), (1, 1, 1)], ignore_index=255)
    random_checkpoint(tmp_path / "best.pt", cfg, dataset)
    result = invoke("export", "--checkpoint", tmp_path / "best.pt", "--size", "45x77")
    one_line_error(result, 2, "upernet (swin_tiny_patch4_window7_224) exports at one fixed size only")
    assert "pass --static" in result.output and not (tmp_path / "best.onnx").exists()

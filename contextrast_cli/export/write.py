"""ONNX export of the contrastive-free inference network: adapt -> export -> verify.

Adapt: the plain segmentation network is rebuilt from the checkpoint alone
(``model_from_checkpoint``); the projection heads in ``payload["contrast"]`` are
never built, and submodules the network names as training-only
(``training_only_modules()``, empty for every registered network: OCRNet's
auxiliary head feeds its OCR block) are dropped. ``InferenceGraph`` wraps it:
optional uint8 NHWC preprocessing in front, optional argmax behind.

Exporter, chosen explicitly: ``torch.onnx.export(..., dynamo=True)``
(torch.export + onnxscript), the default and maintained exporter since torch
2.9; the TorchScript one (``dynamo=False``) is deprecated. It exports every
registered network with symbolic batch, height and width (DeepLabV3/V3+ with
bilinear resizes to symbolic sizes, HRNet/OCRNet with their padding to a
multiple of 32 and the crop back) and matches PyTorch to ~1e-5. Its costs and
quirks, handled here:

- slower to export: seconds for ResNet-18 networks, ~20 s for a small HRNet on
  one CPU thread (TorchScript: under 1 s);
- it writes opset 18 or newer only, and silently writes 18 when asked for less,
  so ``--opset`` is checked against 18..onnx's newest and the written one read back;
- a size-1 batch or a sample that HRNet must pad makes torch.export specialise
  or fail, so dynamic graphs are traced at batch 2 and at the export size
  rounded up to a multiple of 32 (``traced_size``), then verified at odd sizes.

The graph is traced with ``optimize=False`` first, so its initializers can be
checked name-for-name against the network's state dict (parameters, BatchNorm
running statistics and the input normalisation; nothing else), then optimised (constant folding; each
BatchNorm folded into the convolution before it; onnxruntime does not fold the
unoptimised graph's BatchNorms, ~10% slower on HRNet).
"""

import hashlib
import json
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from contextrast_cli.atomic import atomic_write, atomic_write_text
from contextrast_cli.errors import ExportError, VerificationError, first_line
from contextrast_cli.export.checks import reference_parity, shape_chains
from contextrast_cli.export.graph import (ExportOptions, ExportResult, InferenceGraph, check_opset,
                                          expected_tensors, inference_network, traced_size)
from contextrast_cli.export.sidecar import build_sidecar

NETWORK = "network."  # prefix of the network's tensors inside InferenceGraph


def trace(graph: InferenceGraph, options: ExportOptions):
    """``torch.onnx.export(dynamo=True, optimize=False)`` of ``graph`` at ``traced_size``.

    A batch of 2 is traced when dynamic (torch.export specialises a size-1 dim).
    """
    from torch.export import Dim

    batch, size = (2 if options.dynamic else 1), traced_size(options)
    shape = (batch, *size, 3) if options.preprocessing else (batch, 3, *size)
    sample = (torch.randint(0, 256, shape, dtype=torch.uint8) if options.preprocessing
              else torch.randn(shape))
    spatial = (1, 2) if options.preprocessing else (2, 3)
    dims = {0: Dim("batch"), spatial[0]: Dim("height"), spatial[1]: Dim("width")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.onnx.export(
                graph, (sample,), dynamo=True, optimize=False, verbose=False, opset_version=options.opset,
                input_names=["image"], output_names=["labels" if options.argmax else "logits"],
                dynamic_shapes={"image": dims} if options.dynamic else None)
        except Exception as exc:  # torch.export / onnxscript failures: one line, with the exporter named
            raise ExportError(f"torch.onnx.export (dynamo) failed: {first_line(exc)}; re-run with --debug") from exc


def check_graph_tensors(program, network: nn.Module) -> dict[str, tuple[int, ...]]:
    """The network tensors among the traced graph's initializers; ExportError unless exactly the network's."""
    expected = expected_tensors(network)
    constants = {k for k, _ in network.named_buffers()} - set(expected)  # non-persistent buffers (Swin's
    # relative position index) and tensors made in forward (torch.export's lifted_tensor_N) are constants
    found = {key: tuple(value.shape) for name, value in program.model.graph.initializers.items()
             if name.startswith(NETWORK) and (key := name[len(NETWORK):]) not in constants
             and not key.rpartition(".")[2].startswith("lifted_tensor_")}
    if found != expected:
        missing = sorted(set(expected) - set(found))[:3]
        extra = sorted(k for k in found if expected.get(k) != found[k])[:3]
        raise ExportError(f"the traced graph's tensors differ from the network's: missing {missing}, "
                          f"unexpected or reshaped {extra}")
    return found


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_checkpoint(checkpoint: Path, output: Path | None = None,
                      options: ExportOptions = ExportOptions()) -> ExportResult:
    """Export a checkpoint's inference network to ONNX plus a ``FILE.json`` sidecar, both atomically.

    With ``options.verify`` the graph is checked (``onnx.checker`` full check,
    onnxruntime vs PyTorch) before it is renamed into place: a failure leaves nothing.

    Raises:
        CheckpointError: missing or foreign checkpoint. ExportError: bad opset, unwritable
        output, exporter failure. VerificationError: onnxruntime disagrees with PyTorch.
    """
    from contextrast_cli.config import with_overrides
    from contextrast_cli.models.checkpoint import config_from_checkpoint, load_checkpoint

    check_opset(options.opset)
    checkpoint = Path(checkpoint)
    payload = load_checkpoint(checkpoint)
    digest = sha256(checkpoint)  # now, not after the export: a training run may replace the file
    output = Path(output) if output is not None else checkpoint.with_suffix(".onnx")
    check_writable(output)
    cfg = with_overrides(config_from_checkpoint(payload), options.settings)
    options = replace(options, height=options.height or cfg.data.crop_size[0],
                      width=options.width or cfg.data.crop_size[1])
    network, counts = inference_network(payload)
    fixed = getattr(getattr(network, "backbone", None), "fixed_size_export", None)
    if options.dynamic and fixed:
        raise ExportError(f"{cfg.model.name} ({cfg.model.backbone}) exports at one fixed size only: {fixed}; "
                          f"pass --static (and --size HxW, the size to deploy at)")
    graph = InferenceGraph(network, options.preprocessing, options.argmax).eval()
    program = trace(graph, options)
    tensors = check_graph_tensors(program, network)
    program.optimize()
    result = ExportResult(output, Path(f"{output}.json"), checkpoint, counts, tensors)
    _write_atomically(output, lambda tmp: _save_and_check(program, tmp, graph, options, result))
    sidecar = build_sidecar(payload, cfg, result, options, digest)
    atomic_write_text(result.sidecar, json.dumps(sidecar, indent=2) + "\n")
    return result


def _save_and_check(program, tmp: Path, graph: InferenceGraph, options: ExportOptions,
                    result: ExportResult) -> None:
    """Save, check the opset and the model, count the initializers, verify (before the rename)."""
    import onnx

    program.save(tmp, external_data=False)
    model = onnx.load(str(tmp))
    written = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != options.opset:
        raise ExportError(f"--opset {options.opset}: the exporter wrote opset {written}; use --opset {written}")
    try:
        onnx.checker.check_model(str(tmp), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise VerificationError(f"onnx.checker rejected the graph: {first_line(exc)}") from None
    sizes = [(t.name.startswith(NETWORK), torch.Size(t.dims).numel()) for t in model.graph.initializer
             if t.data_type == onnx.TensorProto.FLOAT]
    result.counts["initializer_elements"] = sum(n for ours, n in sizes if ours)  # folded network tensors
    result.counts["constant_elements"] = sum(n for ours, n in sizes if not ours)  # e.g. Resize scales
    if not options.dynamic and (chains := shape_chains(model)):
        raise VerificationError(f"the --static graph still computes sizes at run time ({chains[0]}; {len(chains)} "
                                f"node(s)), which runtimes without dynamic shapes refuse; nothing was written")
    if options.verify:
        from contextrast_cli.export.verify import verify_graph

        result.verification = verify_graph(tmp, graph, options)
        result.reference = reference_parity(tmp, {"dynamic": options.dynamic, "export_size": list(options.size),
                                                  "preprocessing": options.preprocessing, "argmax": options.argmax})


def check_writable(output: Path) -> None:
    """ExportError unless a file can be created in ``output``'s folder (checked before the slow export)."""
    import tempfile

    if output.is_dir():
        raise ExportError(f"--output {output} is a folder; give the ONNX file's name (e.g. {output / 'model.onnx'})")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output.parent, prefix=f".{output.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise ExportError(f"cannot write {output}: {exc.strerror or exc}; pass --output in a writable folder") from None


def _write_atomically(output: Path, write) -> None:
    try:
        atomic_write(output, write)
    except OSError as exc:
        raise ExportError(f"cannot write {output}: {exc.strerror or exc}") from None

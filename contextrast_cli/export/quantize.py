"""int8 quantization of an exported graph, gated on its measured accuracy.

onnxruntime's static quantization: ORT's pre-processing step (``quant_pre_process``: shape
inference and graph optimisation), then ``quantize_static`` in QDQ format with per-channel
int8 weights and uint8 activations whose ranges are calibrated (MinMax) on real images of the
checkpoint's dataset. The int8 graph is compared with the float one on the validation split by
``export.gate`` (mIoU and the other scores of each under the sidecar's evaluation settings, as
``evaluate --onnx`` measures them; the share of pixels where they agree), and onnxruntime's
latency of each at batch 1 is measured apart; it is written, with its sidecar, only if it loses
at most ``max_miou_drop`` mIoU points.
Otherwise nothing is written and the message names the layers whose int8 outputs are furthest
from float (onnxruntime's QDQ debugging helpers), to keep in float with ``exclude_nodes``.
"""

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from onnxruntime.quantization import CalibrationDataReader

from contextrast_cli.errors import ConfigError
from contextrast_cli.export.gate import GateOptions, refusal, score_pair


@dataclass(frozen=True)
class QuantizeOptions:
    """How to calibrate and gate (``export --quantize int8`` options)."""

    calibration_split: str = "train"
    calibration_images: int = 64
    verify_split: str = "val"
    verify_images: int | None = None  # None: the whole split
    max_miou_drop: float = 1.0  # mIoU points
    exclude_nodes: tuple[str, ...] = ()
    data_root: Path | None = None
    latency_runs: int = 10

    def __post_init__(self) -> None:
        if self.calibration_images < 1:
            raise ConfigError(f"--calibration-images {self.calibration_images}: calibration needs at least one "
                              f"image; 64 is a good default")
        _ = self.gate  # validates --verify-images and --max-miou-drop

    @property
    def gate(self) -> GateOptions:
        """The accuracy gate's options (the verification images, the largest drop)."""
        return GateOptions(self.verify_split, self.verify_images, self.max_miou_drop, self.data_root)


def int8_path(float_path: Path) -> Path:
    """``model.onnx`` -> ``model.int8.onnx``."""
    return float_path.with_name(f"{float_path.stem}.int8{float_path.suffix}")


def spaced(items: list, count: int | None) -> list:
    """``count`` items evenly spread over ``items`` (all of them when None or more than there are)."""
    from contextrast_cli.evaluation.evaluator import spread

    return [items[i] for i in spread(len(items), count)]


class CalibrationImages(CalibrationDataReader):
    """An onnxruntime ``CalibrationDataReader`` over prepared images, fed as the graph takes them
    (at the export size for a static graph)."""

    def __init__(self, paths: list[Path], meta: dict) -> None:
        self.paths, self.meta = paths, meta
        self._iter = iter(self.paths)

    def get_next(self) -> dict | None:
        from contextrast_cli.evaluation.onnx import graph_input

        path = next(self._iter, None)
        return None if path is None else {"image": graph_input(load_image(path, self.meta), self.meta)}

    def rewind(self) -> None:
        self._iter = iter(self.paths)


def load_image(path: Path, meta: dict) -> torch.Tensor:
    """(1, 3, H, W) float RGB in [0, 1]; resized to the export size for a static graph, as
    ``OnnxSegmentor`` resizes the images it evaluates."""
    from contextrast_cli.data.loading import read_rgb
    from contextrast_cli.evaluation.onnx import graph_sized

    return graph_sized(torch.from_numpy(read_rgb(path)).permute(2, 0, 1).float().div(255)[None], meta)


def quantize_graph(float_path: Path, options: QuantizeOptions, on_step=lambda _: None) -> dict:
    """Quantize ``float_path`` to ``int8_path(float_path)`` (+ sidecar) if it passes the gate.

    Returns:
        The comparison: mIoU, agreement and latency of both graphs, the drop, the settings.

    Raises:
        DataError: the dataset is not prepared, or a split is empty. ConfigError: bad options.
        VerificationError: the drop exceeds ``max_miou_drop`` (nothing written).
    """
    import json

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from contextrast_cli.atomic import atomic_write, atomic_write_text
    from contextrast_cli.data.prepared import list_pairs
    from contextrast_cli.evaluation.onnx import graph_dataset, read_sidecar

    float_path = Path(float_path)
    meta = read_sidecar(float_path)
    dataset = graph_dataset(float_path, meta, options.data_root)
    calibration = spaced([image for image, _ in list_pairs(dataset.root, options.calibration_split)],
                         options.calibration_images)
    target = int8_path(float_path)
    with tempfile.TemporaryDirectory(dir=float_path.parent, prefix=".quantize-") as work:
        pre, candidate = Path(work) / "pre.onnx", Path(work) / "int8.onnx"
        on_step("ORT pre-processing (shape inference, optimisation)")
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=meta["dynamic"])
        on_step(f"calibrating on {len(calibration)} {options.calibration_split} images")
        quantize_static(str(pre), str(candidate), CalibrationImages(calibration, meta), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=list(options.exclude_nodes))
        on_step(f"comparing int8 with float on the {options.verify_split} images")
        report = compare(float_path, candidate, meta, dataset, options)
        if report["miou_drop"] > options.max_miou_drop:
            worst = sensitive_nodes(pre, candidate, CalibrationImages(calibration[:4], meta))
            raise refusal(report, "int8", options.gate, f"keep the layers furthest from float in float with "
                          f"--exclude-nodes {','.join(worst)} (or calibrate on more images)")
        atomic_write(target, lambda tmp: os.replace(candidate, tmp))
    sidecar = {**meta, "onnx": target.name, "quantization": {
        "format": "QDQ", "weights": "int8 per channel", "activations": "uint8 per tensor", "calibration": "MinMax",
        "calibration_split": options.calibration_split, "calibration_images": len(calibration),
        "excluded_nodes": list(options.exclude_nodes), "float_graph": float_path.name, **report}}
    atomic_write_text(Path(f"{target}.json"), json.dumps(sidecar, indent=2) + "\n")
    return {"path": target, **sidecar["quantization"]}


def compare(float_path: Path, int8_file: Path, meta: dict, dataset, options: QuantizeOptions) -> dict:
    """``export.gate.score_pair`` of both graphs (the scores ``evaluate --onnx`` gives each), plus
    each graph's latency and the speed-up."""
    from contextrast_cli.data.prepared import list_pairs
    from contextrast_cli.evaluation.onnx import OnnxSegmentor

    graphs = {"float": OnnxSegmentor(float_path, meta), "int8": OnnxSegmentor(int8_file, meta)}
    report = score_pair(graphs["int8"], graphs["float"], meta, dataset, options.gate, "int8")
    image = load_image(list_pairs(dataset.root, options.verify_split)[0][0], meta)
    for key, graph in graphs.items():
        report[key]["latency_ms"] = latency_ms(graph, image, options.latency_runs)
    report["speedup"] = report["float"]["latency_ms"] / report["int8"]["latency_ms"]
    return report


def latency_ms(graph, image: torch.Tensor, runs: int) -> float:
    """Median onnxruntime time of one batch-1 forward pass, after two warm-up passes."""
    for _ in range(2):
        graph(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        graph(image)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def sensitive_nodes(float_file: Path, int8_file: Path, reader: CalibrationImages, count: int = 3) -> list[str]:
    """The ``count`` nodes whose int8 output has the lowest signal-to-quantization-noise ratio
    against float (onnxruntime.quantization.qdq_loss_debug)."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as debug

    work = int8_file.parent
    float_aug, int8_aug = work / "float_aug.onnx", work / "int8_aug.onnx"
    debug.modify_model_output_intermediate_tensors(str(float_file), str(float_aug))
    debug.modify_model_output_intermediate_tensors(str(int8_file), str(int8_aug))
    reader.rewind()
    float_acts = debug.collect_activations(str(float_aug), reader)
    reader.rewind()
    int8_acts = debug.collect_activations(str(int8_aug), reader)
    matched = debug.create_activation_matching(int8_acts, float_acts)
    producers = {out: node.name for node in onnx.load(str(float_file)).graph.node for out in node.output}
    ratios = []
    for tensor, pair in matched.items():
        if "float" in pair and "post_qdq" in pair and tensor in producers:
            ratios.append((float(debug.compute_signal_to_quantization_noice_ratio(pair["float"], pair["post_qdq"])),
                           producers[tensor]))
    return [name for _, name in sorted(ratios)[:count]] or ["<node names: see onnx.load(...).graph.node>"]

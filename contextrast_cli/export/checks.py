"""Checks of an exported graph beyond onnxruntime-vs-PyTorch (``verify``):

* ``reference_parity``: a second, independent runtime, ``onnx.reference.ReferenceEvaluator``
  (the onnx package's own Python implementation of the operators), against onnxruntime at a
  small size. It is slow (numpy), so a dynamic graph is run at ``REFERENCE_SIZE``; a static
  graph only runs at its export size, checked when that is at most ``REFERENCE_MAX_PIXELS``.
* ``shape_chains``: the Resize / Reshape nodes whose size or shape input is computed at run
  time from a ``Shape`` node. A ``--static`` graph must have none, so runtimes without dynamic
  shapes (OpenCV DNN, many embedded runtimes) can load it.
"""

from pathlib import Path

import numpy as np

from contextrast_cli.errors import VerificationError

REFERENCE_SIZE = (32, 48)
REFERENCE_MAX_PIXELS = 128 * 128
REFERENCE_MAX_DIFF = 1e-3
SIZE_INPUTS = {"Resize": (1, 2, 3), "Reshape": (1,), "Expand": (1,), "ConstantOfShape": (0,), "Tile": (1,)}


def reference_parity(path: Path, meta_like: dict) -> dict | None:
    """Max |logit difference| of onnxruntime vs ``ReferenceEvaluator`` on one random image (None
    when a static graph is too large to run in the reference runtime).

    Args:
        meta_like: ``dynamic``, ``export_size``, ``preprocessing``, ``argmax`` as in the sidecar.

    Raises:
        VerificationError: the runtimes differ by more than ``REFERENCE_MAX_DIFF`` (or in any
            label of an ``--argmax`` graph).
    """
    from onnx.reference import ReferenceEvaluator

    from contextrast_cli.evaluation.onnx import open_session

    height, width = REFERENCE_SIZE if meta_like["dynamic"] else meta_like["export_size"]
    if height * width > REFERENCE_MAX_PIXELS:
        return None
    pixels = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    feed = pixels if meta_like["preprocessing"] else np.ascontiguousarray(
        pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    ours = open_session(path).run(None, {"image": feed})[0]
    theirs = ReferenceEvaluator(str(path)).run(None, {"image": feed})[0]
    if meta_like["argmax"]:
        diff = float((ours != theirs).mean())
        ok = diff == 0
    else:
        diff = float(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)).max())
        ok = diff <= REFERENCE_MAX_DIFF
    if not ok:
        raise VerificationError(f"onnx.reference.ReferenceEvaluator and onnxruntime disagree on {path.name} at "
                                f"{height}x{width}: {'label mismatch share' if meta_like['argmax'] else 'max |logit diff|'}"
                                f" {diff:.2e} (limit {REFERENCE_MAX_DIFF:g}); nothing was written")
    return {"runtime": "onnx.reference.ReferenceEvaluator", "shape": [1, height, width],
            "max_abs_diff" if not meta_like["argmax"] else "label_mismatch": diff}


def shape_chains(model) -> list[str]:
    """Names of the nodes whose size / shape inputs depend on a ``Shape`` node of ``model`` (an ``onnx.ModelProto``)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    constants = {t.name for t in model.graph.initializer}
    found = []
    for node in model.graph.node:
        for index in SIZE_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index] and _from_shape(node.input[index], producers, constants):
                found.append(f"{node.op_type} {node.name}")
                break
    return found


def _from_shape(tensor: str, producers: dict, constants: set) -> bool:
    stack, seen = [tensor], set()
    while stack:
        name = stack.pop()
        if name in seen or name in constants or name not in producers:
            continue
        seen.add(name)
        node = producers[name]
        if node.op_type == "Shape":
            return True
        if node.op_type != "Constant":
            stack.extend(node.input)
    return False

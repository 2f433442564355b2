"""Shared fixtures: tiny configs that train in seconds on a CPU."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# No test touches the network: the Hugging Face libraries (timm's and transformers' weights) stay
# offline on an empty cache of this session's own, and torch.hub (torchvision's weights) gets an empty
# cache too; set before anything imports huggingface_hub (it reads them once). A test that needs
# cached weights writes them in the cache layout under a HF_HOME of its own (tests/models/test_pretrained.py).
EMPTY_CACHE = tempfile.mkdtemp(prefix="contextrast-empty-cache-")
atexit.register(shutil.rmtree, EMPTY_CACHE, True)
os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=EMPTY_CACHE, TORCH_HOME=EMPTY_CACHE)
os.environ.pop("HF_HUB_CACHE", None)

import pytest  # noqa: E402
import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from contextrast_cli.cli import app  # noqa: E402
from contextrast_cli.config import resolve_config  # noqa: E402

runner = CliRunner()


def invoke(*args):
    """Run ``contextrast ARGS`` in-process (Typer's CliRunner); paths and numbers become strings."""
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, code: int, text: str, after_progress: bool = False) -> None:
    """The command failed with ``code`` and printed one line (no traceback) containing ``text``;
    with ``after_progress``, a training run's progress lines may come before that one line."""
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and text in errors[0], result.output
    assert after_progress or len(lines) == 1, result.output
    assert "Traceback" not in result.output


def tiny_overrides(tmp_path: Path, iterations: int = 4) -> list[str]:
    """--set overrides turning the toy preset into a seconds-long run under ``tmp_path``."""
    return [
        f"data.root={tmp_path / 'synthetic'}",
        "data.synthetic={num_train: 8, num_val: 4, size: [32, 48], seed: 3}",
        "data.crop_size=[32, 48]",
        "data.workers=0",
        "model.output_stride=32",
        f"train.iterations={iterations}",
        "train.batch_size=2",
        "train.eval_interval=2",
        "train.checkpoint_interval=2",
        "train.log_interval=1",
        "train.device=cpu",
        f"train.output_dir={tmp_path / 'runs'}",
        "eval.batch_size=2",
    ]


@pytest.fixture
def tiny_config(tmp_path):
    """A validated toy config shrunk to a seconds-long CPU run."""
    return resolve_config(preset="toy", overrides=tiny_overrides(tmp_path))


@pytest.fixture
def camvid_source() -> Path:
    """The real SegNet CamVid folder, or skip when CONTEXTRAST_CAMVID is unset."""
    path = os.environ.get("CONTEXTRAST_CAMVID")
    if not path:
        pytest.skip("set CONTEXTRAST_CAMVID to the SegNet CamVid folder to run real-data tests")
    return Path(path)


@pytest.fixture
def bane_case() -> tuple[torch.Tensor, torch.Tensor]:
    """One 10x12 layer with known BANE picks: (pred, labels), both (10, 12) int64.

    Labels: class 0 everywhere except a class-2 strip in the top-right corner and one ignored
    pixel. Prediction: a 5x5 block of class 1 over class-0 pixels (the error region of anchor
    1) and a 1x3 strip of class 2 over class 0 (anchor 2).
    """
    labels = torch.zeros(10, 12, dtype=torch.long)
    labels[0, 9:] = 2
    labels[9, 0] = 255
    pred = labels.clone()
    pred[9, 0] = 0
    pred[2:7, 2:7] = 1
    pred[8, 6:9] = 2
    return pred, labels

"""Shared fixtures: tiny configs that train in seconds on a CPU."""

import os
from pathlib import Path

import pytest

from contextrast_cli.config import resolve_config


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

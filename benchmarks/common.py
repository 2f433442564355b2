"""Shared bits of the benchmark scripts: the machine description and scene batches."""

import os
import platform

import numpy as np
import torch

from contextrast_cli.data.synthetic import render_scene


def machine(device: torch.device) -> dict:
    """What the numbers were measured on."""
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def scene_batch(batch: int, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic street scenes (normalised images, labels) of the requested size.

    Realistic region structure matters here: BANE's cost depends on the error
    regions' shapes, which random per-pixel labels would not have.
    """
    images, labels = zip(*(render_scene(seed, i, height, width) for i in range(batch)))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return (x - mean) / std, torch.from_numpy(np.stack(labels)).long()

"""Shared bits of the benchmark scripts: the machine description and scene batches."""

import argparse
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


def scene_batch(batch: int, height: int, width: int, seed: int = 0,
                num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic street scenes (RGB images in [0, 1], labels) of the requested size; the networks
    normalise their input themselves.

    Realistic region structure matters here: BANE's cost depends on the error
    regions' shapes, which random per-pixel labels would not have. With ``num_classes`` above
    the scenes' 8, each image's 8 classes are renamed to 8 random ids of ``range(num_classes)``
    (a different draw per image), so a batch holds up to 8 x batch classes, as ADE20K or
    COCO-Stuff batches do (8-10 classes an image).
    """
    images, labels = zip(*(render_scene(seed, i, height, width) for i in range(batch)))
    labels = np.stack(labels)
    if num_classes is not None and num_classes > 8:
        for index, label in enumerate(labels):
            table = np.full(256, 255, np.uint8)
            table[:8] = np.random.default_rng((seed, index)).choice(num_classes, 8, replace=False)
            labels[index] = table[label]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return x, torch.from_numpy(labels).long()


def add_network_args(parser: argparse.ArgumentParser, size: tuple[int, int] = (360, 480)) -> None:
    """``--preset`` (the network and class count come from it), model overrides, input size."""
    parser.add_argument("--preset", default="camvid", help="network settings come from here")
    parser.add_argument("--model", help="override model.name")
    parser.add_argument("--backbone", help="override model.backbone")
    parser.add_argument("--output-stride", type=int, help="override model.output_stride")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="any key=value")
    parser.add_argument("--height", type=int, default=size[0])
    parser.add_argument("--width", type=int, default=size[1])


def network_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` strings for the options of ``add_network_args`` (random init: no weights)."""
    items = ["model.pretrained=false", "model.weights=null"]
    for key, value in (("name", args.model), ("backbone", args.backbone), ("output_stride", args.output_stride)):
        if value is not None:
            items.append(f"model.{key}={value}")
    return items + args.overrides


def conv_flops(module: torch.nn.Module, *inputs) -> float:
    """Multiply-adds x 2 of every convolution in one forward of ``module(*inputs)`` (no gradients)."""
    total = 0.0

    def count(conv, _, output):
        nonlocal total
        total += 2.0 * output.numel() * conv.weight[0].numel()  # in_channels / groups * kh * kw

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return total

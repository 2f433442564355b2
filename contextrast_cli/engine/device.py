"""The one module that knows about devices, precision, seeds and processes.

Everything else receives a ``Runtime``. Multi-process training (torchrun) will
initialise its process group here and fill ``rank`` / ``world_size``.
"""

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from contextrast_cli.errors import ConfigError, ContextrastError


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors are computed.

    Attributes:
        device: the torch device of this process.
        amp_dtype: autocast dtype, or None for full float32.
        rank: process index under torchrun (0 otherwise).
        world_size: number of processes.
    """

    device: torch.device
    amp_dtype: torch.dtype | None = None
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context for forward passes (a no-op without AMP)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available else CPU; a CUDA request without CUDA is an error.

    A CUDA device always comes back with its index (``cuda`` -> ``cuda:<current>``):
    ``torch.cuda.set_device`` rejects an index-less device.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device: {name} requested but CUDA is not available here; "
                              f"use --device cpu (or auto)")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device.index >= torch.cuda.device_count():
            raise ConfigError(f"train.device: {name} does not exist; this machine has "
                              f"{torch.cuda.device_count()} GPU(s)")
    return device


def setup_runtime(device: str = "auto", amp: bool = True, seed: int | None = None,
                  fixed_shapes: bool = False) -> Runtime:
    """Pick the device and precision, and seed every RNG (offset by rank).

    Args:
        amp: bfloat16 autocast where the GPU has native bfloat16 (compute capability 8.0+);
            older GPUs, where it would only be emulated, and the CPU run float32.
        fixed_shapes: every batch has one shape (training crops): let cuDNN time its
            algorithms once per shape (``cudnn.benchmark``). Off for evaluation and
            visualisation, whose whole images change size.

    Float32 matrix products stay full float32 (PyTorch's default): the contrastive loss is
    computed in float32 on purpose. Convolutions keep cuDNN's default TF32.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ContextrastError("multi-process (torchrun) training is not supported yet; "
                               "run a single process")
    torch_device = resolve_device(device)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
        torch.backends.cudnn.benchmark = fixed_shapes
    use_amp = amp and torch_device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    runtime = Runtime(torch_device, torch.bfloat16 if use_amp else None)
    if seed is not None:
        seed_everything(seed + runtime.rank)
    return runtime


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(device: torch.device) -> dict:
    """The torch RNG state of the CPU and, on a GPU, of ``device`` alone, for checkpoints."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore what ``rng_state`` returned; a GPU state goes to ``device`` (a run may resume
    on another GPU, or on the CPU, where it is not needed)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")  # a list in older checkpoints: only CPU runs wrote those, unused
    if device.type == "cuda" and isinstance(cuda, torch.Tensor):
        torch.cuda.set_rng_state(cuda, device)

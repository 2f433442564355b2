"""The one place that knows about devices, precision, seeds and the process group.

Everything else receives a ``Runtime``. Under torchrun (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``)
or ``srun`` (``SLURM_PROCID``/``SLURM_STEP_NUM_TASKS``/``SLURM_LOCALID``) with more than one
process, ``setup_runtime(distributed=True)`` joins the process group here: NCCL on GPUs (one
per process, picked by the local rank), gloo on the CPU.
"""

import contextlib
import os
import random
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from contextrast_cli.errors import ConfigError, ContextrastError
from contextrast_cli.runtime.launch import Launch, launch_from_env, slurm_rendezvous

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors are computed.

    Attributes:
        device: the torch device of this process.
        amp_dtype: autocast dtype, or None for full float32.
        rank: process index (0 in a single process).
        world_size: number of processes.
        grad_scaling: float16 training: losses are scaled (``torch.amp.GradScaler``).
        host_group: the process group for small host-side collectives (gloo; the default
            group on the CPU), None in a single process.
    """

    device: torch.device
    amp_dtype: torch.dtype | None = None
    rank: int = 0
    world_size: int = 1
    grad_scaling: bool = False
    host_group: object | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

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


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether losses are scaled) for ``train.precision`` on ``device``.

    ``auto``: bfloat16 where the GPU has it natively (compute capability 8.0+), float16 with a
    gradient scaler on older GPUs, float32 on the CPU. An explicit ``bf16`` on a GPU without
    native bfloat16 is an error (it would be emulated, slowly); ``fp16`` on the CPU runs (slowly:
    meant for tests of the scaler).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    cuda = device.type == "cuda"
    native_bf16 = cuda and torch.cuda.is_bf16_supported(including_emulation=False)
    if precision == "auto":
        precision = "fp32" if not cuda else "bf16" if native_bf16 else "fp16"
    if precision == "bf16" and cuda and not native_bf16:
        raise ConfigError(f"train.precision: bf16 but {torch.cuda.get_device_name(device)} has no native "
                          f"bfloat16; use fp16 (or auto)")
    return {"fp32": (None, False), "bf16": (torch.bfloat16, False), "fp16": (torch.float16, True)}[precision]


def setup_runtime(device: str = "auto", precision: str = "auto", seed: int | None = None,
                  fixed_shapes: bool = False, distributed: bool = False) -> Runtime:
    """Pick the device and precision, join the process group if launched as several processes,
    and seed every RNG (offset by rank).

    Args:
        precision: ``train.precision`` (``resolve_precision``).
        fixed_shapes: every batch has one shape (training crops): let cuDNN time its
            algorithms once per shape (``cudnn.benchmark``). Off for evaluation and
            visualisation, whose whole images change size.
        distributed: this command supports several processes (training). Elsewhere a
            multi-process launch is an error.

    Float32 matrix products stay full float32 (PyTorch's default): the contrastive loss is
    computed in float32 on purpose. Convolutions keep cuDNN's default TF32.
    """
    launch = launch_from_env()
    if launch is not None and not distributed:
        raise ContextrastError(f"this command runs in one process; it was started as rank {launch.rank} of "
                               f"{launch.world_size} ({launch.launcher}): run it without torchrun / srun")
    if launch is not None and device.startswith("cuda:"):
        raise ConfigError(f"train.device: {device} under {launch.launcher}, but each process takes the GPU of its "
                          f"local rank (this one {launch.local_rank}); use --device cuda (or auto) and choose the GPUs "
                          f"with CUDA_VISIBLE_DEVICES")
    torch_device = resolve_device(device)
    if launch is not None and torch_device.type == "cuda":
        torch_device = torch.device("cuda", launch.local_rank % torch.cuda.device_count())
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
        torch.backends.cudnn.benchmark = fixed_shapes
    amp_dtype, scaling = resolve_precision(precision, torch_device)
    runtime = Runtime(torch_device, amp_dtype, grad_scaling=scaling)
    if launch is not None:
        runtime = join_process_group(launch, runtime)
    if seed is not None:
        seed_everything(seed + runtime.rank)
    return runtime


def join_process_group(launch: Launch, runtime: Runtime) -> Runtime:
    """Initialise ``torch.distributed`` for ``launch`` (env:// rendezvous) and return the runtime
    with its rank, world size and host-side group."""
    if launch.launcher == "srun":
        os.environ.update(slurm_rendezvous())
    cuda = runtime.device.type == "cuda"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", rank=launch.rank, world_size=launch.world_size,
                                timeout=timedelta(minutes=30), device_id=runtime.device if cuda else None)
    host = dist.new_group(backend="gloo") if cuda else dist.group.WORLD
    return Runtime(runtime.device, runtime.amp_dtype, launch.rank, launch.world_size, runtime.grad_scaling, host)


def shutdown_runtime(runtime: Runtime) -> None:
    """Leave the process group (after the last collective of this process)."""
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


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

"""Device resolution, including the CUDA branch simulated on a CPU-only machine."""

import pytest
import torch
from torch.cuda._utils import _get_device_index

from contextrast_cli.engine.device import resolve_device, rng_state, set_rng_state, setup_runtime
from contextrast_cli.errors import ConfigError


class FakeGpus(list):
    """Devices passed to torch.cuda.set_device, and whether bfloat16 is native."""

    native_bf16 = True


@pytest.fixture
def two_gpus(monkeypatch):
    """torch.cuda as a 2-GPU machine whose current device is 1; set_device validates its
    argument with torch's own check and records it; bfloat16 is always available through
    emulation, natively only where ``native_bf16``."""
    chosen = FakeGpus()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation or chosen.native_bf16)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: chosen.append(_get_device_index(device)))
    flags = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    yield chosen
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def test_cpu_only_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    runtime = setup_runtime("auto", amp=True)
    assert runtime.device == torch.device("cpu") and runtime.amp_dtype is None


def test_cuda_devices_carry_an_index(two_gpus):
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="2 GPU"):
        resolve_device("cuda:2")


def test_setup_runtime_on_cuda(two_gpus):
    # torch.cuda.set_device rejects torch.device("cuda") (no index): the default must not reach it
    runtime = setup_runtime("auto", amp=True)
    assert two_gpus == [1]
    assert runtime.device == torch.device("cuda", 1)
    assert runtime.amp_dtype == torch.bfloat16
    assert setup_runtime("cuda", amp=False).amp_dtype is None


def test_bfloat16_autocast_only_where_native(two_gpus):
    two_gpus.native_bf16 = False  # a V100 or T4: bfloat16 tensors exist, cuDNN has no bf16 convs
    assert setup_runtime("cuda", amp=True).amp_dtype is None


def test_cudnn_benchmark_only_for_fixed_shapes_and_float32_matmuls_stay_float32(two_gpus):
    torch.backends.cuda.matmul.allow_tf32 = False  # PyTorch's default
    setup_runtime("cuda", fixed_shapes=True)
    assert torch.backends.cudnn.benchmark
    setup_runtime("cuda")
    assert not torch.backends.cudnn.benchmark
    assert not torch.backends.cuda.matmul.allow_tf32


def test_rng_state_follows_the_run_device(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: calls.append(("get", device)) or
                        torch.full((16,), device.index, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append(("set", int(state[0]), device)))
    cpu_state = rng_state(torch.device("cpu"))
    first_draw = torch.rand(3)
    assert set(cpu_state) == {"torch"} and calls == []  # a CPU run never touches CUDA
    state = rng_state(torch.device("cuda", 1))
    assert calls == [("get", torch.device("cuda", 1))]
    set_rng_state(state, torch.device("cuda", 0))  # resumed on another GPU: its state goes there
    assert calls[-1] == ("set", 1, torch.device("cuda", 0))
    set_rng_state(state, torch.device("cpu"))
    set_rng_state({**cpu_state, "cuda": [torch.zeros(16, dtype=torch.uint8)] * 4}, torch.device("cuda", 0))
    assert len(calls) == 2  # nothing restored on the CPU, nor from an old per-GPU list
    set_rng_state(cpu_state, torch.device("cpu"))
    assert torch.equal(torch.rand(3), first_draw)

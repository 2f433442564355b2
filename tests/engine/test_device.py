"""Device resolution, including the CUDA branch simulated on a CPU-only machine."""

import pytest
import torch
from torch.cuda._utils import _get_device_index

from contextrast_cli.engine.device import resolve_device, setup_runtime
from contextrast_cli.errors import ConfigError


@pytest.fixture
def two_gpus(monkeypatch):
    """torch.cuda as a 2-GPU machine whose current device is 1; set_device validates its
    argument with torch's own check and records it."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
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

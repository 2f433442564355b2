"""Device resolution, including the CUDA branch simulated on a CPU-only machine."""

import pytest
import torch
from torch.cuda._utils import _get_device_index

from contextrast_cli.runtime.device import resolve_device, rng_state, set_rng_state, setup_runtime
from contextrast_cli.errors import ConfigError, ContextrastError


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
    runtime = setup_runtime("auto", "auto")
    assert runtime.device == torch.device("cpu") and runtime.amp_dtype is None


def test_cuda_devices_carry_an_index(two_gpus):
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="2 GPU"):
        resolve_device("cuda:2")


def test_setup_runtime_on_cuda(two_gpus):
    # torch.cuda.set_device rejects torch.device("cuda") (no index): the default must not reach it
    runtime = setup_runtime("auto", "auto")
    assert two_gpus == [1]
    assert runtime.device == torch.device("cuda", 1)
    assert runtime.amp_dtype == torch.bfloat16
    assert setup_runtime("cuda", "fp32").amp_dtype is None


def test_precision_auto_is_bfloat16_where_native_else_float16_with_a_scaler(two_gpus, monkeypatch):
    def picked(device, precision):
        runtime = setup_runtime(device, precision)
        return runtime.amp_dtype, runtime.grad_scaling

    assert picked("cuda", "auto") == (torch.bfloat16, False)
    assert picked("cuda", "fp16") == (torch.float16, True)
    assert picked("cuda", "fp32") == (None, False)
    two_gpus.native_bf16 = False  # a V100 or T4: bfloat16 tensors exist, cuDNN has no bf16 convs
    assert picked("cuda", "auto") == (torch.float16, True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    with pytest.raises(ConfigError, match="V100-SXM2-16GB has no native bfloat16; use fp16"):
        setup_runtime("cuda", "bf16")
    assert picked("cpu", "auto") == (None, False)
    assert picked("cpu", "fp16") == (torch.float16, True)  # runs (slowly): the scaler's plumbing, tested here
    with pytest.raises(ConfigError, match="train.precision must be one of auto, fp32, bf16, fp16"):
        setup_runtime("cpu", "half")


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


def test_launch_from_torchrun_and_srun_variables():
    from contextrast_cli.runtime.launch import Launch, launch_from_env

    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}
    assert launch_from_env(torchrun) == Launch(3, 4, 1, "torchrun")
    srun = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8"}
    assert launch_from_env(srun) == Launch(5, 8, 1, "srun")
    assert launch_from_env({**srun, **torchrun}).launcher == "torchrun"  # torchrun inside an allocation
    assert launch_from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}) is None  # the batch script itself
    assert launch_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None  # torchrun with one process
    assert launch_from_env({}) is None


def test_srun_rendezvous_is_the_first_node_and_a_job_port():
    from contextrast_cli.runtime.launch import first_node, slurm_rendezvous

    assert first_node("gpu[007-009,012],cpu1") == "gpu007"
    assert first_node("node12") == "node12"
    assert first_node("a-b[3,5]") == "a-b3"
    env = {"SLURM_STEP_NODELIST": "gpu[007-009]", "SLURM_JOB_ID": "123456"}
    assert slurm_rendezvous(env) == {"MASTER_ADDR": "gpu007", "MASTER_PORT": str(20000 + 123456 % 20000)}
    assert slurm_rendezvous({**env, "MASTER_ADDR": "head", "MASTER_PORT": "29500"}) == {
        "MASTER_ADDR": "head", "MASTER_PORT": "29500"}


def test_one_process_commands_refuse_a_multi_process_launch(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ContextrastError, match="this command runs in one process; it was started as rank 1 of 2 "
                                               r"\(torchrun\): run it without torchrun / srun"):
        setup_runtime("cpu")


def test_an_explicit_gpu_under_torchrun_is_refused(monkeypatch):
    """Under torchrun each process takes the GPU of its local rank; an explicit cuda:1 was silently
    replaced by it. Now one line says so (before any CUDA call: this machine may have none)."""
    from contextrast_cli.runtime.device import setup_runtime

    for key, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=r"train.device: cuda:1 under torchrun, but each process takes the GPU "
                                          r"of its local rank \(this one 1\)"):
        setup_runtime("cuda:1", distributed=True)

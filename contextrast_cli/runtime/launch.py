"""How this process was started: torchrun's or SLURM srun's variables read into a ``Launch``
(rank, world size, local rank), and the rendezvous address an srun launch needs. No torch
here; ``runtime.device.setup_runtime`` joins the process group from it."""

import os
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Launch:
    """This process's place in a multi-process launch (torchrun or srun)."""

    rank: int
    world_size: int
    local_rank: int
    launcher: str


def launch_from_env(env=os.environ) -> Launch | None:
    """The launch described by torchrun's or SLURM srun's variables, or None for one process.

    srun is recognised by ``SLURM_STEP_NUM_TASKS``, which only a job step has: a batch script
    (``SLURM_NTASKS`` set, one process) is not mistaken for one rank of many. torchrun wins
    where both are set (torchrun inside an allocation).
    """
    if "RANK" in env and "WORLD_SIZE" in env:
        launch = Launch(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)), "torchrun")
    elif "SLURM_STEP_NUM_TASKS" in env and "SLURM_PROCID" in env:
        launch = Launch(int(env["SLURM_PROCID"]), int(env["SLURM_STEP_NUM_TASKS"]),
                        int(env.get("SLURM_LOCALID", 0)), "srun")
    else:
        return None
    return launch if launch.world_size > 1 else None


def slurm_rendezvous(env=os.environ) -> dict[str, str]:
    """MASTER_ADDR / MASTER_PORT for an srun launch that did not set them: the step's first node
    and a port derived from the job id (the same on every rank)."""
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or "127.0.0.1"
    return {"MASTER_ADDR": env.get("MASTER_ADDR") or first_node(nodes),
            "MASTER_PORT": env.get("MASTER_PORT") or str(20000 + int(env.get("SLURM_JOB_ID", "0") or 0) % 20000)}


def first_node(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[007-009,012],cpu1`` -> ``gpu007``."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if match is None:
        return nodelist
    prefix, ranges = match.groups()
    return prefix + (ranges.split(",")[0].split("-")[0] if ranges else "")

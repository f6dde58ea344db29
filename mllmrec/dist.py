"""Process layout under `accelerate launch` / torchrun, shared by the stages that run as many processes.

The launchers set RANK / WORLD_SIZE / LOCAL_RANK and the rendezvous address. On CPU accelerate
does not open a process group, so we open one ourselves (gloo; nccl when CUDA is there) the first
time processes need to talk.
"""

from __future__ import annotations

import os


def dist_info() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment; (0, 1) for a plain run."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def device_for_rank(device: str, rank: int, world: int) -> str:
    """One GPU per process when several processes share a machine."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available() and world > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
    return device


def init_group(world: int) -> None:
    if world > 1:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            from datetime import timedelta

            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
            # Long: process 0 validates (minutes on a large model) while the others wait.
            dist.init_process_group(
                "nccl" if torch.cuda.is_available() else "gloo", timeout=timedelta(hours=2)
            )


def barrier(world: int) -> None:
    """Wait for every process."""
    if world > 1:
        import torch.distributed as dist

        init_group(world)
        dist.barrier()


def end_processes(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

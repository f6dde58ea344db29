"""Starting the package in several processes from tests: a free port and the `accelerate launch`
command line (CPU processes standing in for GPUs), one place for what the tests used to repeat."""

from __future__ import annotations

import socket
import sys
from pathlib import Path


def free_port() -> int:
    """A TCP port free on localhost right now (for a rendezvous or an HTTP server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_launch(*cli_args: str, processes: int = 2) -> list[str]:
    """`accelerate launch ... -m mllmrec.cli CLI_ARGS` with `processes` CPU processes."""
    launcher = Path(sys.executable).with_name("accelerate")
    return [
        str(launcher), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        "-m", "mllmrec.cli", *cli_args,
    ]  # fmt: skip

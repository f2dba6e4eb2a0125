"""Child processes with several CPU devices or several ``jax.distributed`` processes, for the tests of
sharded simulators (``test_distributed.py``, ``test_network_shard.py``).

``XLA_FLAGS=--xla_force_host_platform_device_count=N`` must be set before a process imports jax, so the
devices are made in a child process; :func:`run_children` starts ``count`` copies of a script (``python -c``)
with the arguments ``port pid *args``: a free port on 127.0.0.1 for a ``jax.distributed`` coordinator and
the process's id.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from conftest import FAST_COMPILE, TEST_XLA_FLAGS

ROOT = Path(__file__).resolve().parents[1]

#: The first lines of a child that joins a ``jax.distributed`` run of ``num_processes`` processes (its
#: arguments: port, process id): CPU collectives over ``gloo``.
DISTRIBUTED_HEADER = """
import sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
port, pid = sys.argv[1], int(sys.argv[2])
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=%(num_processes)d,
                           process_id=pid, initialization_timeout=60)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(devices: int, users_programs: bool = False) -> dict:
    """The environment of a child on the CPU with ``devices`` devices.  ``users_programs``: compiled with
    XLA's defaults and optimisations (as users' programs are), else with the suite's settings
    (``conftest``), like the test process."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    assert TEST_XLA_FLAGS in env.get("XLA_FLAGS", "") or env.get("JAXLIF_TEST_XLA_DEFAULTS")
    flags = env.get("XLA_FLAGS", "")
    if users_programs:
        flags = flags.replace(TEST_XLA_FLAGS, "")                                   # XLA's defaults
        env.pop(FAST_COMPILE, None)                                                 # optimised, like users'
    env["XLA_FLAGS"] = (flags + f" --xla_force_host_platform_device_count={devices}").strip()
    return env


def run_children(script: str, args: list[str], count: int, env: dict, timeout: float = 240.0) -> list[str]:
    """Run ``count`` copies of ``script`` with arguments ``port pid *args``; assert they all succeed and
    return their outputs (stdout and stderr)."""
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", script, str(port), str(pid), *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for pid in range(count)]
    try:
        logs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
    return logs

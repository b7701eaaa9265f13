"""One sweep on several hosts: jax.distributed set-up, and the rules that keep the processes in step.

Every process loads the same data and runs the same computations on global arrays (one mesh over
all devices of all processes), so every process holds the same results. Process 0 alone writes
files (gbair.files). What a process decides from the workdir (is this run finished? what did that
iteration keep?) is process 0's reading, broadcast to all (`agree`), so the processes never take
different branches, even when a file appears between two processes' reads.
"""

import importlib.util
import json
from typing import Callable, TypeVar

import jax
import numpy as np
from absl import logging

from gbair import UsageError, UserError

T = TypeVar("T")


def initialize(distributed: bool | None, coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Joins the other processes of this run (jax.distributed), before JAX touches any device.

    distributed: True, False, or None (auto): on when a coordinator is given, or on a Cloud TPU VM
      (libtpu installed), where JAX finds the coordinator, process count and id by itself.
    """
    explicit = coordinator_address is not None or num_processes is not None or process_id is not None
    if distributed is None:
        distributed = explicit or importlib.util.find_spec("libtpu") is not None
    if not distributed:
        if explicit:
            raise UsageError("--coordinator_address/--num_processes/--process_id given with --nodistributed")
        return
    if explicit and None in (coordinator_address, num_processes, process_id):
        raise UsageError(f"--coordinator_address={coordinator_address}, --num_processes={num_processes}, "
                         f"--process_id={process_id}: give all three, or none (JAX detects Cloud TPU, SLURM, MPI)")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # how CPU devices of processes talk
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    except (ValueError, RuntimeError) as e:
        raise UsageError(f"jax.distributed.initialize failed ({e}); on a single host pass --nodistributed") from e
    logging.info("gbair: process %d of %d, %d local / %d global devices", jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count())


def is_writer() -> bool:
    """Process 0 writes every file; the other processes compute the same and write nothing."""
    return jax.process_index() == 0


def agree(read: Callable[[], T]) -> T:
    """`read()` (a JSON value) as process 0 evaluates it, the same on every process; a UserError it
    raises on process 0 is raised on every process."""
    if jax.process_count() == 1:
        return read()
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

    message = b""
    if is_writer():
        try:
            message = json.dumps({"value": read()}).encode()
        except UserError as e:
            message = json.dumps({"error": str(e)}).encode()
    data = np.frombuffer(message, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int32(data.size)))
    buffer = data if is_writer() else np.zeros(size, np.uint8)
    answer = json.loads(bytes(np.asarray(multihost_utils.broadcast_one_to_all(buffer))).decode())
    if "error" in answer:
        raise UserError(answer["error"])
    return answer["value"]


def barrier(name: str) -> None:
    """Waits until every process gets here (a no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

        multihost_utils.sync_global_devices(name)

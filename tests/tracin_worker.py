"""Run by tests/test_tracin.py in subprocesses: TracIn on the toy model with several devices/processes.

    python tests/tracin_worker.py OUT.npz                       # all local devices vs the first one
    python tests/tracin_worker.py OUT.npz ADDRESS NPROC PID     # one process of a jax.distributed run
"""

import sys

import jax
import numpy as np

if len(sys.argv) > 2:  # must precede any other JAX use
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=sys.argv[2], num_processes=int(sys.argv[3]),
                               process_id=int(sys.argv[4]))

from jax.sharding import Mesh  # noqa: E402

from gbair.influence.tracin import TracIn  # noqa: E402
from tests.toy_model import toy_checkpoints, toy_dataset, toy_model  # noqa: E402


def scores(mesh):
    model = toy_model()
    train, test = toy_dataset(29, seed=1), toy_dataset(5, seed=2)  # 29: not divisible by 8 or 2
    tracin = TracIn(model, toy_checkpoints(model), batch_size=3, mesh=mesh)
    top = tracin.top_k(train, test, 7)
    low = tracin.top_k(train, test, 7, opponents=True)
    return {"influence": tracin.influence(train, test), "self": tracin.self_influence(train),
            "aggregate": tracin.aggregate_influence(train, test), "top_indices": top.indices,
            "top_scores": top.scores, "low_indices": low.indices, "low_scores": low.scores,
            "devices": np.array(mesh.devices.size)}


if __name__ == "__main__":
    everything = scores(Mesh(np.array(jax.devices()), ("data",)))
    if len(sys.argv) == 2:
        single = scores(Mesh(np.array(jax.devices()[:1]), ("data",)))
        everything.update({f"single_{k}": v for k, v in single.items()})
    np.savez(sys.argv[1], **everything)

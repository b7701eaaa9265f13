"""Run by tests/test_tracin.py in subprocesses: TracIn on the toy model with several devices/processes
(and the second-order scorers with several local devices).

    python tests/tracin_worker.py OUT.npz [--second-order]      # all local devices vs the first one
    python tests/tracin_worker.py OUT.npz ADDRESS NPROC PID     # one process of a jax.distributed run
"""

import sys

import jax
import numpy as np

SECOND_ORDER = sys.argv[2:] == ["--second-order"]
if len(sys.argv) > 2 and not SECOND_ORDER:  # must precede any other JAX use
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=sys.argv[2], num_processes=int(sys.argv[3]),
                               process_id=int(sys.argv[4]))

from jax.sharding import Mesh  # noqa: E402

from gbair.influence.second_order import TRAK, DataInf, InfluenceFunction  # noqa: E402
from gbair.influence.tracin import TracIn  # noqa: E402
from tests.toy_model import toy_checkpoints, toy_dataset, toy_model  # noqa: E402


def scores(mesh, second_order=False):
    model = toy_model()
    train, test = toy_dataset(29, seed=1), toy_dataset(5, seed=2)  # 29: not divisible by 8 or 2
    tracin = TracIn(model, toy_checkpoints(model), batch_size=3, mesh=mesh)
    top = tracin.top_k(train, test, 7)
    low = tracin.top_k(train, test, 7, opponents=True)
    return {"influence": tracin.influence(train, test), "self": tracin.self_influence(train),
            "aggregate": tracin.aggregate_influence(train, test), "top_indices": top.indices,
            "top_scores": top.scores, "low_indices": low.indices, "low_scores": low.scores,
            "devices": np.array(mesh.devices.size),
            **(second_order_scores(model, train, test, mesh) if second_order else {})}


def second_order_scores(model, train, test, mesh):
    """Self-influence of each second-order scorer (its curvature pass and preconditioner), and TRAK's
    influence (its own test-side pass; the others' test sides are TracIn's): few compilations."""
    engines = {scorer.__name__: scorer(model, toy_checkpoints(model), train, batch_size=3, mesh=mesh)
               for scorer in (InfluenceFunction, DataInf, TRAK)}
    return {f"{name}_self": engine.self_influence(train) for name, engine in engines.items()} | {
        "TRAK_influence": engines["TRAK"].influence(train, test)}


if __name__ == "__main__":
    everything = scores(Mesh(np.array(jax.devices()), ("data",)), SECOND_ORDER)
    if len(sys.argv) == 2 or SECOND_ORDER:
        single = scores(Mesh(np.array(jax.devices()[:1]), ("data",)), SECOND_ORDER)
        everything.update({f"single_{k}": v for k, v in single.items()})
    np.savez(sys.argv[1], **everything)

"""Run by tests/test_t5_sharding.py with 8 simulated CPU devices: the tiny T5 with its kernels sharded
over a 2-way model axis (and batches over a 4-way data axis) against the same model on one device.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/t5_sharding_worker.py OUT.npz
"""

import json
import pathlib
import sys

import jax
import numpy as np
from safetensors.numpy import load_file

from gbair.pretrained import hf
from gbair.influence.tracin import TracIn
from gbair.models import prompts, t5
from gbair.train import trainer
from gbair.models.prompts import PromptCheckpoint
from tests.test_t5 import tokenize, toy_dataset

GOLDEN = pathlib.Path(__file__).parent / "golden"


def run(model_parallel: int | None) -> dict[str, np.ndarray]:
    config = t5.T5Config.from_hf(json.loads((GOLDEN / "t5_tiny_outputs.json").read_text())["config"])
    params = hf.params_from_hf(load_file(str(GOLDEN / "t5_tiny.safetensors")), config)
    mesh = None
    if model_parallel:
        mesh = prompts.device_mesh(model_parallel)
        params = prompts.place(params, mesh, t5.partition_specs(config, model_parallel))
    model = t5.t5_classifier(params, config, tokenize, ("ham", "spam!"), prompt_length=4, max_length=16, mesh=mesh)
    data = toy_dataset(16)
    train_config = trainer.TrainConfig(optimizer="adam", learning_rate=0.1, batch_size=8, num_epochs=2, log_every=100)
    prompt = trainer.train(model, data, train_config).prompt
    checkpoints = [PromptCheckpoint(1, 0.1, prompt)]
    tracin = TracIn(model, checkpoints, batch_size=2)
    query = params["encoder"]["layers_0"]["attention"]["query"]["kernel"]
    return {"probabilities": trainer.predict(model, prompt, data), "prompt": prompt,
            "self_influence": tracin.self_influence(data), "top": tracin.top_k(data, data.subset(np.arange(3)), 4).indices,
            "query_shard_shape": np.array(query.addressable_shards[0].data.shape if model_parallel else query.shape),
            "devices": np.array(len(jax.devices()))}


if __name__ == "__main__":
    sharded, single = run(2), run(None)
    np.savez(sys.argv[1], **{f"sharded_{k}": v for k, v in sharded.items()},
             **{f"single_{k}": v for k, v in single.items()})

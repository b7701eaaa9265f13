"""The T5 path with kernels sharded over a model axis equals the single-device model (8 simulated devices)."""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from gbair.models import prompts, t5

REPO = pathlib.Path(__file__).parent.parent


def test_partition_specs_split_kernels_over_the_model_axis():
    config = t5.SIZES["xxl"]
    specs = t5.partition_specs(config, 8)
    enc = specs["encoder"]["layers_0"]
    split_out, split_in = jax.sharding.PartitionSpec(None, "model"), jax.sharding.PartitionSpec("model", None)
    assert enc["attention"]["query"]["kernel"] == split_out and enc["mlp"]["wi_1"]["kernel"] == split_out
    assert enc["attention"]["out"]["kernel"] == split_in and enc["mlp"]["wo"]["kernel"] == split_in
    assert specs["token_embedder"]["embedding"] == split_in
    assert specs["decoder"]["logits_dense"]["kernel"] == split_out
    assert enc["pre_mlp_layer_norm"]["scale"] == jax.sharding.PartitionSpec()
    assert specs["encoder"]["relpos_bias"]["rel_embedding"] == jax.sharding.PartitionSpec()
    assert all(s == jax.sharding.PartitionSpec() for s in jax.tree.leaves(t5.partition_specs(config, 1)))
    with pytest.raises(ValueError, match="d_ff=20 is not divisible by model_parallel=3"):
        t5.partition_specs(t5.T5Config(64, 16, 4, 6, 20, 1, 1), 3)
    with pytest.raises(ValueError, match="does not divide the"):
        prompts.device_mesh(3 * len(jax.devices()) + 1)


def test_sharded_model_trains_predicts_and_scores_like_one_device(tmp_path):
    out = tmp_path / "out.npz"
    worker = subprocess.run([sys.executable, "tests/t5_sharding_worker.py", str(out)], cwd=REPO, timeout=600,
                            env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
                                 "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert worker.returncode == 0, worker.stdout[-3000:]
    r = np.load(out)
    assert int(r["sharded_devices"]) == 8
    assert r["sharded_query_shard_shape"].tolist() == [16, 12] and r["single_query_shard_shape"].tolist() == [16, 24]
    np.testing.assert_allclose(r["sharded_prompt"], r["single_prompt"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r["sharded_probabilities"], r["single_probabilities"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r["sharded_self_influence"], r["single_self_influence"], rtol=1e-4)
    np.testing.assert_array_equal(r["sharded_top"], r["single_top"])

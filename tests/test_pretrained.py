"""T5X legacy / Orbax and Hugging Face checkpoints of a tiny T5 1.1, written in the true on-disk formats.

The legacy writer below is independent of gbair and flax: raw msgpack with ext-type-1 inline arrays
(shape, dtype name, C bytes) and gzip zarr arrays written by TensorStore at relative paths, as T5X does.
"""

import dataclasses
import os
import shutil

import ml_dtypes
import msgpack
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorstore as ts
from safetensors.numpy import load_file, save_file

import jax
from gbair import pretrained
from gbair.pretrained import hf, t5x
from gbair.models import t5

CONFIG = t5.T5Config(vocab_size=40, d_model=16, num_heads=3, head_dim=8, d_ff=20, num_encoder_layers=2,
                     num_decoder_layers=2)


@pytest.fixture(scope="module")
def params():
    return t5.init_params(CONFIG, jax.random.PRNGKey(0))


def flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}/"))
        else:
            out[prefix + key] = value
    return out


def inline(array: np.ndarray) -> msgpack.ExtType:
    return msgpack.ExtType(1, msgpack.packb((array.shape, array.dtype.name, array.tobytes("C")), use_bin_type=True))


def zarr(step_dir: str, name: str, array: np.ndarray, rechunk: bool = False) -> dict:
    """Writes `array` as T5X does (gzip zarr, relative path = name with / -> .) and returns its spec.

    rechunk: the array on disk has other chunks (and compressor) than the spec says, as after a copy
    tool rewrote it."""
    spec = {"driver": "zarr", "dtype": array.dtype.name,
            "kvstore": {"driver": "file", "path": name.replace("/", ".")},
            "metadata": {"compressor": {"id": "gzip"}, "shape": list(array.shape),
                         "chunks": [max(1, n // 2) for n in array.shape]}}
    stored = {**spec, "metadata": {"compressor": {"id": "zlib"}, "shape": list(array.shape),
                                   "chunks": [max(1, n // 4) for n in array.shape]}} if rechunk else spec
    absolute = {**stored, "kvstore": {"driver": "file", "path": os.path.join(step_dir, spec["kvstore"]["path"])}}
    ts.open(absolute, create=True).result().write(array).result()
    return spec


def write_legacy(step_dir: str, target: dict, dtype=np.float32, version: int = 3, rechunk: bool = False) -> None:
    """Kernels and embeddings in TensorStore, norms and position tables inline (as T5X decides by size).

    version <= 2 with bfloat16: TensorStore arrays hold the uint16 bit patterns, as T5X wrote them then."""
    os.makedirs(step_dir)
    leaves = {}
    for name, array in flat(target).items():
        array = np.asarray(array).astype(dtype)
        big = "kernel" in name or "embedding" in name and "rel_" not in name
        if big and version <= 2 and array.dtype == ml_dtypes.bfloat16:
            array = array.view(np.uint16)
        leaves[name] = zarr(step_dir, "target/" + name, array, rechunk) if big else inline(array)
    tree: dict = {}
    for name, leaf in leaves.items():
        node = tree
        *parents, last = name.split("/")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = leaf
    state = {"step": inline(np.array(1100000, np.int32)),
             "param_states": {"decoder": {"decoder_norm": {"scale": {"v": inline(np.ones(16, np.float32))}}}}}
    blob = msgpack.packb({"version": version, "optimizer": {"target": tree, "state": state}}, use_bin_type=True)
    with open(os.path.join(step_dir, "checkpoint"), "wb") as f:
        f.write(blob)


def assert_same(got, expected):
    got, expected = flat(got), flat(expected)
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name].dtype == np.float32, name
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_legacy_checkpoint_loads_exactly_after_being_moved(tmp_path, params):
    write_legacy(str(tmp_path / "run" / "checkpoint_1100000"), params)
    shutil.move(tmp_path / "run", tmp_path / "moved")  # spec paths are relative to the step dir
    step_dir = str(tmp_path / "moved" / "checkpoint_1100000")
    assert pretrained.detect_format(step_dir) == ("t5x_legacy", step_dir)
    assert_same(pretrained.load_t5_params(step_dir, CONFIG), params)
    assert_same(pretrained.load_t5_params(step_dir + "/checkpoint", CONFIG), params)


@pytest.mark.parametrize("version", [3, 2])  # version 2 stored bfloat16 as uint16 bit patterns
def test_legacy_bfloat16_arrays_are_widened_to_float32(tmp_path, params, version):
    write_legacy(str(tmp_path / "checkpoint_1"), params, dtype=ml_dtypes.bfloat16, version=version)
    rounded = jax.tree.map(lambda x: np.asarray(x).astype(ml_dtypes.bfloat16).astype(np.float32), params)
    assert_same(pretrained.load_t5_params(str(tmp_path / "checkpoint_1"), CONFIG), rounded)


def test_legacy_arrays_rewritten_with_other_chunks_still_load(tmp_path, params):
    write_legacy(str(tmp_path / "checkpoint_1"), params, rechunk=True)
    assert_same(pretrained.load_t5_params(str(tmp_path / "checkpoint_1"), CONFIG), params)


def test_orbax_checkpoint_loads_exactly_and_skips_optimizer_state(tmp_path, params):
    options = ocp.CheckpointManagerOptions(step_prefix="checkpoint")
    with ocp.CheckpointManager(str(tmp_path), options=options) as manager:
        state = {"target": params, "state": {"step": np.int32(7), "param_states": {"v": np.zeros(3, np.float32)}}}
        manager.save(7, args=ocp.args.Composite(state=ocp.args.PyTreeSave(state)))
    step_dir = str(tmp_path / "checkpoint_7")
    assert pretrained.detect_format(step_dir)[0] == "t5x_orbax"
    assert pretrained.detect_format(step_dir + "/state") == ("t5x_orbax", step_dir)
    assert pretrained.detect_format("gs://b/m/checkpoint_7/state") == ("t5x_orbax", "gs://b/m/checkpoint_7")
    assert pretrained.detect_format("gs://b/m/checkpoint_7") == ("t5x_legacy", "gs://b/m/checkpoint_7")
    assert_same(pretrained.load_t5_params(step_dir, CONFIG), params)


def test_hf_safetensors_file_or_dir(tmp_path):
    golden = os.path.join(os.path.dirname(__file__), "golden", "t5_tiny.safetensors")
    import json

    config = t5.T5Config.from_hf(json.load(open(os.path.join(os.path.dirname(__file__), "golden",
                                                              "t5_tiny_outputs.json")))["config"])
    expected = hf.params_from_hf(load_file(golden), config)
    save_file(load_file(golden), str(tmp_path / "model.safetensors"))
    assert pretrained.detect_format(str(tmp_path)) == ("hf_safetensors", str(tmp_path / "model.safetensors"))
    assert_same(pretrained.load_t5_params(str(tmp_path), config), expected)
    assert_same(pretrained.load_t5_params(golden, config), expected)


def test_mismatch_names_every_missing_unexpected_and_wrong_shape_param(tmp_path, params):
    target = jax.tree.map(np.asarray, params)
    del target["encoder"]["layers_1"]["mlp"]["wo"]
    target["encoder"]["extra"] = {"kernel": np.zeros((2, 2), np.float32)}
    target["token_embedder"]["embedding"] = np.zeros((41, 16), np.float32)
    write_legacy(str(tmp_path / "checkpoint_1"), target)
    with pytest.raises(ValueError) as error:
        pretrained.load_t5_params(str(tmp_path / "checkpoint_1"), CONFIG)
    message = str(error.value)
    assert "missing ['encoder/layers_1/mlp/wo/kernel']" in message
    assert "unexpected ['encoder/extra/kernel']" in message
    assert "wrong shape ['token_embedder/embedding (41, 16) (expected (40, 16))']" in message


def test_bad_paths_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pretrained.load_t5_params(str(tmp_path / "nope"), CONFIG)
    with pytest.raises(ValueError, match="not a T5X step dir"):
        pretrained.load_t5_params(str(tmp_path), CONFIG)
    for step in (900, 1000, 80):
        (tmp_path / f"checkpoint_{step}").mkdir()
    with pytest.raises(ValueError, match=r"model dir: pass one of its step dirs, e.g. .*checkpoint_1000 "
                                         r"\(found checkpoint_80, checkpoint_900, checkpoint_1000\)"):
        pretrained.load_t5_params(str(tmp_path), CONFIG)


def test_gcs_specs_take_the_bucket_and_dir_of_the_given_path():
    written_on_gcs = {"driver": "zarr", "kvstore": {"driver": "gcs", "bucket": "t5x-dummy-bucket"},
                      "path": "target.encoder.encoder_norm.scale", "metadata": {}}
    spec = t5x.absolute_spec(written_on_gcs, "gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base/checkpoint_1100000")
    assert spec == {"driver": "zarr", "metadata": {}, "kvstore": {
        "driver": "gcs", "bucket": "t5-data",
        "path": "pretrained_models/t5x/t5_1_1_lm100k_base/checkpoint_1100000/target.encoder.encoder_norm.scale"}}
    local = t5x.absolute_spec({"driver": "zarr", "kvstore": {"driver": "file", "path": "target.x"}}, "/ckpt/checkpoint_1")
    assert local["kvstore"] == {"driver": "file", "path": "/ckpt/checkpoint_1/target.x"}


def shapes_of(tree) -> dict:
    return {name: tuple(np.shape(leaf)) for name, leaf in flat(tree).items()}


def test_shapes_come_from_metadata_alone_in_every_format(tmp_path, params):
    write_legacy(str(tmp_path / "legacy" / "checkpoint_1"), params)
    for chunk in (tmp_path / "legacy" / "checkpoint_1").rglob("*"):
        if chunk.is_file() and chunk.name not in ("checkpoint", ".zarray"):
            chunk.unlink()  # no array data left: only the msgpack index and each array's .zarray
    found = pretrained.read_shapes(str(tmp_path / "legacy" / "checkpoint_1"))
    assert found.format == "t5x_legacy" and found.shapes == shapes_of(params)
    assert pretrained.shape_problems(found, CONFIG) == []
    emptied = pretrained.load_t5_params(str(tmp_path / "legacy" / "checkpoint_1"), CONFIG)  # zarr's fill value
    assert not emptied["token_embedder"]["embedding"].any() and params["token_embedder"]["embedding"].any()

    options = ocp.CheckpointManagerOptions(step_prefix="checkpoint")
    with ocp.CheckpointManager(str(tmp_path / "orbax"), options=options) as manager:
        manager.save(7, args=ocp.args.Composite(state=ocp.args.PyTreeSave({"target": params})))
    found = pretrained.read_shapes(str(tmp_path / "orbax" / "checkpoint_7"))
    assert found.format == "t5x_orbax" and found.shapes == shapes_of(params)

    golden = os.path.join(os.path.dirname(__file__), "golden", "t5_tiny.safetensors")
    found = pretrained.read_shapes(golden)
    assert found.shapes == {name: array.shape for name, array in load_file(golden).items()}
    import json  # pylint: disable=import-outside-toplevel

    config = t5.T5Config.from_hf(json.load(open(os.path.join(os.path.dirname(__file__), "golden",
                                                              "t5_tiny_outputs.json")))["config"])
    assert pretrained.shape_problems(found, config) == []
    assert "shared.weight" in " ".join(pretrained.shape_problems(found, dataclasses.replace(config, vocab_size=7)))


def test_shape_problems_name_each_param_that_does_not_fit(tmp_path, params):
    write_legacy(str(tmp_path / "checkpoint_1"), params)
    found = pretrained.read_shapes(str(tmp_path / "checkpoint_1"))
    wider = dataclasses.replace(CONFIG, num_encoder_layers=3, d_ff=24)
    problems = pretrained.shape_problems(found, wider)
    assert "encoder/layers_2/mlp/wo/kernel missing" in problems
    assert "encoder/layers_0/mlp/wo/kernel (20, 16) (expected (24, 16))" in problems
    assert pretrained.shape_problems(found, dataclasses.replace(wider, num_encoder_layers=1, d_ff=20)) == [
        f"encoder/layers_1/{name} unexpected" for name in sorted(
            "/".join(k) for k in [("attention", p, "kernel") for p in ("key", "out", "query", "value")]
            + [("mlp", p, "kernel") for p in ("wi_0", "wi_1", "wo")]
            + [(n, "scale") for n in ("pre_attention_layer_norm", "pre_mlp_layer_norm")])]

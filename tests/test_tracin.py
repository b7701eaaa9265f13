"""TracIn engine against a float64 brute-force oracle, invariants, and multi-device / multi-process runs."""

import dataclasses
import os
import pathlib
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gbair.influence.gradients import per_example_grads
from gbair.influence.tracin import TracIn, most_influential, projection_matrix
from gbair.models.prompts import PromptCheckpoint
from tests.toy_model import (brute_force_influence, toy_checkpoints, toy_dataset, toy_model)

REPO = pathlib.Path(__file__).resolve().parent.parent
TRAIN, TEST = toy_dataset(13, seed=1), toy_dataset(4, seed=2)


def relative_error(actual, expected):
    return np.abs(np.asarray(actual, np.float64) - expected).max() / np.abs(expected).max()


@pytest.mark.parametrize("method", ["tiled", "vmap"])
@pytest.mark.parametrize("variant", ["dot", "cosine"])
def test_float64_engine_matches_brute_force_oracle(method, variant):
    with jax.enable_x64(True):
        model = toy_model(np.float64)
        checkpoints = toy_checkpoints(model, dtype=np.float64)
        expected = brute_force_influence(model, checkpoints, TRAIN, TEST, cosine=variant == "cosine")
        tracin = TracIn(model, checkpoints, variant=variant, batch_size=4, method=method)
        assert relative_error(tracin.influence(TRAIN, TEST), expected) < 1e-6
        assert relative_error(tracin.aggregate_influence(TRAIN, TEST), expected.sum(1)) < 1e-6
        top = tracin.top_k(TRAIN, TEST, 5)
        np.testing.assert_array_equal(top.indices, np.argsort(-expected, axis=0)[:5].T)
        if variant == "dot":
            self_expected = [brute_force_influence(model, checkpoints, TRAIN.subset([i]), TRAIN.subset([i]))[0, 0]
                             for i in range(len(TRAIN))]
            assert relative_error(tracin.self_influence(TRAIN), np.array(self_expected)) < 1e-6


@pytest.mark.parametrize("variant", ["dot", "cosine"])
def test_float32_engine_matches_float64_oracle(variant):
    model = toy_model(np.float32)
    checkpoints = toy_checkpoints(model)
    with jax.enable_x64(True):
        model64 = toy_model(np.float64)
        expected = brute_force_influence(model64, toy_checkpoints(model64, dtype=np.float64), TRAIN, TEST,
                                         cosine=variant == "cosine")
    tracin = TracIn(model, checkpoints, variant=variant, batch_size=4)
    scores = tracin.influence(TRAIN, TEST)
    assert scores.dtype == np.float32
    assert relative_error(scores, expected) < 1e-4
    assert relative_error(tracin.aggregate_influence(TRAIN, TEST), expected.sum(1)) < 1e-4


def test_one_pass_dot_and_cosine_equal_the_separate_variants():
    model = toy_model()
    checkpoints = toy_checkpoints(model)
    dot, cosine = TracIn(model, checkpoints, batch_size=4).influence_dot_and_cosine(TRAIN, TEST)
    np.testing.assert_allclose(dot, TracIn(model, checkpoints, batch_size=4).influence(TRAIN, TEST), rtol=1e-5)
    np.testing.assert_allclose(cosine, TracIn(model, checkpoints, variant="cosine", batch_size=4).influence(TRAIN, TEST),
                               rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="variant='dot'"):
        TracIn(model, checkpoints, variant="cosine").influence_dot_and_cosine(TRAIN, TEST)


def test_self_influence_is_diagonal_and_aggregate_is_row_sum():
    model = toy_model()
    tracin = TracIn(model, toy_checkpoints(model), batch_size=5)
    matrix = tracin.influence(TRAIN, TRAIN)
    np.testing.assert_allclose(tracin.self_influence(TRAIN), np.diag(matrix), rtol=1e-5)
    np.testing.assert_allclose(tracin.aggregate_influence(TRAIN, TEST), tracin.influence(TRAIN, TEST).sum(1),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="variant='cosine'"):
        TracIn(model, toy_checkpoints(model), variant="cosine").self_influence(TRAIN)


@pytest.mark.parametrize("k", [1, 4, 13])
def test_top_k_equals_full_sort(k):
    model = toy_model()
    tracin = TracIn(model, toy_checkpoints(model), batch_size=3)  # 13 = 4 blocks + 1 padded
    matrix = tracin.influence(TRAIN, TEST)
    for opponents in (False, True):
        result = tracin.top_k(TRAIN, TEST, k, opponents=opponents)
        order = np.argsort(matrix if opponents else -matrix, axis=0, kind="stable")[:k].T
        np.testing.assert_array_equal(result.indices, order)
        np.testing.assert_allclose(result.scores, np.take_along_axis(matrix.T, order, axis=1), rtol=1e-5)
        stored = most_influential(matrix, k, opponents=opponents)  # explain's ranking of a stored matrix
        np.testing.assert_array_equal(stored.indices, order)
        np.testing.assert_array_equal(stored.scores, np.take_along_axis(matrix.T, order, axis=1))
    with pytest.raises(ValueError, match="k=14, expected 1..13"):
        tracin.top_k(TRAIN, TEST, 14)


def test_cosine_is_bounded_and_invariant_to_gradient_scale():
    model = toy_model()
    checkpoint = [dataclasses.replace(toy_checkpoints(model, 1)[0], learning_rate=1.0)]
    scaled = dataclasses.replace(model, loss_fn=lambda p, prompt, b: 7.0 * model.loss_fn(p, prompt, b))
    cosine = TracIn(model, checkpoint, variant="cosine").influence(TRAIN, TEST)
    assert np.all(np.abs(cosine) <= 1 + 1e-6)
    np.testing.assert_allclose(TracIn(scaled, checkpoint, variant="cosine").influence(TRAIN, TEST), cosine,
                               atol=1e-6)
    dot = TracIn(model, checkpoint).influence(TRAIN, TEST)
    np.testing.assert_allclose(TracIn(scaled, checkpoint).influence(TRAIN, TEST), 49.0 * dot, rtol=1e-4)


def test_projection_matches_explicitly_projected_oracle():
    model = toy_model()
    checkpoints = toy_checkpoints(model)
    dim = int(np.prod(model.prompt_shape))
    projection = np.asarray(projection_matrix(dim, 6, seed=3), np.float64)
    expected = brute_force_influence(model, checkpoints, TRAIN, TEST, projection=projection)
    tracin = TracIn(model, checkpoints, projection_dim=6, projection_seed=3)
    assert relative_error(tracin.influence(TRAIN, TEST), expected) < 1e-4
    assert tracin.gradient_features(TEST).shape == (3, len(TEST), 6)
    assert not np.allclose(projection, np.asarray(projection_matrix(dim, 6, seed=4)))


def test_tiled_and_vmap_kernels_agree_on_minilm_shaped_model(tiny_bert_dir):
    from gbair.classifiers import minilm_classifier  # pylint: disable=import-outside-toplevel
    model = minilm_classifier(["work email", "spam"], prompt_length=4, max_length=12, model_dir=tiny_bert_dir)
    batch = dict(model.featurize(["hello there", "win money now", "see you at noon"]),
                 label=np.array([0, 1, 0], np.int32), weight=np.array([1, 1, 0], np.float32))
    prompt = model.init_prompt(jax.random.key(0))
    grads = jax.jit(per_example_grads, static_argnums=0, static_argnames="method")
    tiled = grads(model.loss_fn, model.params, prompt, batch, method="tiled")
    vmapped = grads(model.loss_fn, model.params, prompt, batch, method="vmap")
    np.testing.assert_allclose(tiled, vmapped, atol=1e-6)
    assert tiled.shape == (3, 4, 32) and np.all(tiled[2] == 0)  # weight 0: padding
    single = jax.grad(lambda p: model.loss_fn(model.params, p, {k: v[1:2] for k, v in batch.items()})[0])(prompt)
    np.testing.assert_allclose(tiled[1], single, atol=1e-6)


def test_bfloat16_model_gives_float32_scores_close_to_float32(tiny_bert_dir):
    from gbair.classifiers import minilm_classifier  # pylint: disable=import-outside-toplevel
    from tests.toy_model import spam_like  # pylint: disable=import-outside-toplevel
    train, test = spam_like(12, 0, "train"), spam_like(3, 1, "test")
    scores = {}
    for dtype in ("float32", "bfloat16"):
        model = minilm_classifier(["work email", "spam"], prompt_length=4, max_length=12, model_dir=tiny_bert_dir,
                                  dtype=dtype)
        checkpoints = [PromptCheckpoint(1, 0.1, np.asarray(model.init_prompt(jax.random.key(0))))]
        scores[dtype] = TracIn(model, checkpoints, batch_size=4).influence(train, test)
    assert scores["bfloat16"].dtype == np.float32
    assert np.corrcoef(scores["float32"].ravel(), scores["bfloat16"].ravel())[0, 1] > 0.95


def run_worker(*args, env=None):
    return subprocess.Popen([sys.executable, "tests/tracin_worker.py", *map(str, args)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


SCORE_KEYS = ("influence", "self", "aggregate", "top_indices", "top_scores", "low_indices", "low_scores")
SECOND_ORDER_KEYS = ("InfluenceFunction_self", "DataInf_self", "TRAK_self", "TRAK_influence")


def test_eight_devices_give_the_same_scores_as_one(tmp_path):
    worker = run_worker(tmp_path / "out.npz", "--second-order",
                        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    output = worker.communicate(timeout=300)[0]
    assert worker.returncode == 0, output[-3000:]
    result = np.load(tmp_path / "out.npz")
    assert int(result["devices"]) == 8 and int(result["single_devices"]) == 1
    for key in SCORE_KEYS + SECOND_ORDER_KEYS:
        np.testing.assert_allclose(result[key], result[f"single_{key}"], rtol=1e-6, atol=1e-7, err_msg=key)


def test_two_processes_give_the_same_scores_as_one(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workers = [run_worker(tmp_path / f"p{i}.npz", f"127.0.0.1:{port}", 2, i) for i in range(2)]
    single = run_worker(tmp_path / "single.npz")
    for worker in workers + [single]:
        output = worker.communicate(timeout=300)[0]
        assert worker.returncode == 0, output[-3000:]
    reference = np.load(tmp_path / "single.npz")
    for i in range(2):
        result = np.load(tmp_path / f"p{i}.npz")
        assert int(result["devices"]) == 2
        for key in SCORE_KEYS:
            np.testing.assert_allclose(result[key], reference[key], rtol=1e-6, atol=1e-7, err_msg=key)


def test_bad_arguments_are_rejected():
    model = toy_model()
    with pytest.raises(ValueError, match="variant='l2'"):
        TracIn(model, toy_checkpoints(model), variant="l2")
    with pytest.raises(ValueError, match="no checkpoints"):
        TracIn(model, [])
    with pytest.raises(ValueError, match="method='loop'"):
        per_example_grads(model.loss_fn, model.params, jnp.zeros(model.prompt_shape),
                          {"label": np.zeros(2, np.int32)}, method="loop")


def test_a_model_written_for_shared_prompts_only_is_refused_by_tiled_naming_vmap():
    from gbair import UserError  # pylint: disable=import-outside-toplevel
    from gbair.influence.tracin import check_method  # pylint: disable=import-outside-toplevel
    from gbair.models import heads  # pylint: disable=import-outside-toplevel

    model = toy_model(prompt_length=2, d_model=4)

    def shared_only(params, prompt, batch):  # adds the mean prompt row to each example: [P, E] only
        words = params["embed"][batch["input_ids"]].mean(1)  # [B, E]
        return jnp.tanh(words + prompt.mean(0)) @ params["out"]

    user = dataclasses.replace(model, logits_fn=shared_only, loss_fn=lambda p, prompt, b: heads.cross_entropy(
        shared_only(p, prompt, b), b["label"]))
    with pytest.raises(UserError, match=r"method='tiled'.*\(3, 2, 4\) \[B, P, E\].*pass method='vmap'"):
        TracIn(user, toy_checkpoints(user))  # refused when built, before any gradient
    check_method(user, "vmap")  # (vmap on such a model: tests/test_cleaning.py runs docs/cleaning.md's example)
    check_method(model, "tiled")  # a model that takes [B, P, E] prompts passes

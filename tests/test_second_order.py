"""Influence functions over the prompt against their formula written out naively in float64."""

import jax
import numpy as np
import pytest

from gbair.influence.second_order import InfluenceFunction
from gbair.influence.tracin import TracIn
from tests.toy_model import brute_force_grads, toy_checkpoints, toy_dataset, toy_model

TRAIN, TEST = toy_dataset(13, seed=1), toy_dataset(4, seed=2)


def naive_influence_function(model, checkpoints, train, test, damping):
    """Explicit G_c = mean g g^T, lambda = damping * mean_c trace(G_c) / d, explicit inverse, loops."""
    grads = [(brute_force_grads(model, c, train), brute_force_grads(model, c, test)) for c in checkpoints]
    fishers = [g_train.T @ g_train / len(train) for g_train, _ in grads]
    dim = fishers[0].shape[0]
    lam = damping * np.mean([np.trace(f) for f in fishers]) / dim
    total = np.zeros((len(train), len(test)))
    for c, (g_train, g_test), fisher in zip(checkpoints, grads, fishers):
        inverse = np.linalg.inv(fisher + lam * np.eye(dim))
        for i in range(len(train)):
            for j in range(len(test)):
                total[i, j] += c.learning_rate * g_test[j] @ inverse @ g_train[i]
    return total, lam


@pytest.mark.parametrize("damping", [1e-3, 0.1])
def test_float64_influence_function_matches_its_formula(damping):
    with jax.enable_x64(True):
        model = toy_model(np.float64)
        checkpoints = toy_checkpoints(model, dtype=np.float64)
        expected, lam = naive_influence_function(model, checkpoints, TRAIN, TEST, damping)
        scorer = InfluenceFunction(model, checkpoints, TRAIN, damping=damping, batch_size=4)
        assert scorer.damping == pytest.approx(lam, rel=1e-10)
        np.testing.assert_allclose(scorer.influence(TRAIN, TEST), expected, rtol=1e-6, atol=1e-9 * np.abs(expected).max())
        np.testing.assert_allclose(scorer.aggregate_influence(TRAIN, TEST), expected.sum(1), rtol=1e-6,
                                   atol=1e-9 * np.abs(expected).max())
        top = scorer.top_k(TRAIN, TEST, 5)
        np.testing.assert_array_equal(top.indices, np.argsort(-expected, axis=0)[:5].T)
        square, _ = naive_influence_function(model, checkpoints, TRAIN, TRAIN, damping)
        np.testing.assert_allclose(scorer.self_influence(TRAIN), np.diag(square), rtol=1e-6)


def test_large_damping_gives_tracin_up_to_scale():
    with jax.enable_x64(True):
        model = toy_model(np.float64)
        checkpoints = toy_checkpoints(model, dtype=np.float64)
        scorer = InfluenceFunction(model, checkpoints, TRAIN, damping=1e8, batch_size=4)
        tracin = TracIn(model, checkpoints, batch_size=4).influence(TRAIN, TEST)
        np.testing.assert_allclose(scorer.damping * scorer.influence(TRAIN, TEST), tracin, rtol=1e-6)
        np.testing.assert_array_equal(np.argsort(scorer.influence(TRAIN, TEST), axis=0), np.argsort(tracin, axis=0))
        small = InfluenceFunction(model, checkpoints, TRAIN, damping=1e-3, batch_size=4).influence(TRAIN, TEST)
        assert not np.array_equal(np.argsort(small, axis=0), np.argsort(tracin, axis=0))  # curvature matters


def test_projected_influence_function_uses_the_projected_gradients():
    model = toy_model()
    checkpoints = toy_checkpoints(model)
    scorer = InfluenceFunction(model, checkpoints, TRAIN, projection_dim=6, batch_size=4)
    assert scorer.influence(TRAIN, TEST).shape == (len(TRAIN), len(TEST))
    assert scorer._factors[0][0].shape == (6, 6)  # the solve happens in the projected space
    with pytest.raises(ValueError, match="damping"):
        InfluenceFunction(model, checkpoints, TRAIN, damping=0.0)


def test_influence_function_strategies_score_every_example_with_the_tracin_rules():
    from gbair.recovery import strategies  # pylint: disable=import-outside-toplevel

    model = toy_model()
    checkpoints = toy_checkpoints(model)
    binary = lambda d: d.with_labels(d.labels % 2)  # noqa: E731
    train, wrong = binary(TRAIN), binary(TEST)
    context = strategies.SelectionContext(model=model, train=train, checkpoints=checkpoints, prompt=None,
                                          misclassified=wrong, corrupted=np.zeros(len(train), bool), seed=0,
                                          fit=None, batch_size=4)
    matrix = InfluenceFunction(model, checkpoints, train, batch_size=4).influence(train, wrong)
    np.testing.assert_allclose(strategies.score("influence_function", context), -matrix.sum(1), rtol=1e-5)
    by_label = strategies.score("influence_function_by_label", context)
    tracin_rule = strategies.tracin_by_label(strategies.SelectionContext(**{**context.__dict__,
                                                                           "influence": {"dot": matrix}}))
    np.testing.assert_array_equal(by_label, tracin_rule)

"""Influence functions, DataInf and TRAK over the prompt against their formulas written out naively in float64."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gbair.influence.matrices import SECOND_ORDER, InfluenceMatrices
from gbair.influence.second_order import TRAK, DataInf, InfluenceFunction
from gbair.influence.tracin import TracIn, projection_matrix
from gbair.models import t5
from gbair.models.prompts import PromptCheckpoint
from tests.toy_model import brute_force_grads, toy_checkpoints, toy_dataset, toy_model

TRAIN, TEST = toy_dataset(13, seed=1), toy_dataset(4, seed=2)


def naive_influence_function(model, checkpoints, train, test, damping, fishers=None, rank=None):
    """Explicit G_c (default mean g g^T), lambda = damping * mean_c trace(G_c) / rank with rank
    min(N, d) (the number of nonzero eigenvalues in general position; the toy's prompt gradients are
    not in general position), explicit inverse, loops."""
    grads = [(brute_force_grads(model, c, train), brute_force_grads(model, c, test)) for c in checkpoints]
    if fishers is None:
        fishers = [g_train.T @ g_train / len(train) for g_train, _ in grads]
    dim = fishers[0].shape[0]
    lam = damping * np.mean([np.trace(f) for f in fishers]) / (rank or min(len(train), dim))
    total = np.zeros((len(train), len(test)))
    for c, (g_train, g_test), fisher in zip(checkpoints, grads, fishers):
        inverse = np.linalg.inv(fisher + lam * np.eye(dim))
        for i in range(len(train)):
            for j in range(len(test)):
                total[i, j] += c.learning_rate * g_test[j] @ inverse @ g_train[i]
    return total, lam


def test_damping_is_relative_to_the_mean_nonzero_eigenvalue_of_a_rank_deficient_gram():
    from gbair.influence.second_order import mean_nonzero_eigenvalue  # pylint: disable=import-outside-toplevel

    rng = np.random.default_rng(0)
    for n, dim in [(7, 30), (30, 7), (9, 9)]:
        gram = sum(np.outer(g, g) for g in rng.standard_normal((n, dim)))
        eigenvalues = np.linalg.eigvalsh(gram)
        nonzero = eigenvalues[eigenvalues > 1e-9 * eigenvalues.max()]
        assert len(nonzero) == min(n, dim)
        assert mean_nonzero_eigenvalue(np.trace(gram), n, dim) == pytest.approx(nonzero.mean(), rel=1e-10)
        if n < dim:  # the old trace / d rule is n / d times smaller
            assert np.trace(gram) / dim == pytest.approx(nonzero.mean() * n / dim, rel=1e-10)


def true_fishers(model, checkpoints, train):
    """Per checkpoint, the Gauss-Newton matrix mean_i J_i^T (diag(p_i) - p_i p_i^T) J_i with J_i the
    jacobian of the logits w.r.t. the prompt (jax.jacobian per example) and p_i their softmax."""
    features = model.featurize(train.texts)
    out = []
    for c in checkpoints:
        total = 0.0
        for i in range(len(train)):
            example = {k: v[i:i + 1] for k, v in features.items()}
            logits_of = lambda p: model.logits_fn(model.params, p, example)[0]  # noqa: E731
            jac = np.asarray(jax.jacobian(logits_of)(jnp.asarray(c.prompt)), np.float64).reshape(
                len(model.class_names), -1)
            logits = np.asarray(logits_of(jnp.asarray(c.prompt)), np.float64)
            p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            total = total + jac.T @ (np.diag(p) - np.outer(p, p)) @ jac
        out.append(total / len(train))
    return out


def test_float64_fisher_curvature_is_the_gauss_newton_matrix():
    with jax.enable_x64(True):
        model = toy_model(np.float64)
        checkpoints = toy_checkpoints(model, dtype=np.float64)
        fishers = true_fishers(model, checkpoints, TRAIN)
        rank = min(len(TRAIN) * 2, fishers[0].shape[0])  # N (K - 1) directions, K = 3 classes
        expected, lam = naive_influence_function(model, checkpoints, TRAIN, TEST, 0.1, fishers=fishers, rank=rank)
        scorer = InfluenceFunction(model, checkpoints, TRAIN, damping=0.1, curvature="fisher", batch_size=4)
        assert scorer.damping == pytest.approx(lam, rel=1e-8)
        np.testing.assert_allclose(scorer.influence(TRAIN, TEST), expected, rtol=1e-6, atol=1e-9 * np.abs(expected).max())
        relabelled = InfluenceFunction(model, checkpoints, TRAIN.with_labels((TRAIN.labels + 1) % 3), damping=0.1,
                                       curvature="fisher", batch_size=4)
        np.testing.assert_allclose(relabelled.influence(TRAIN, TEST), expected, rtol=1e-6,
                                   atol=1e-9 * np.abs(expected).max())  # the given labels do not enter it
        empirical = InfluenceFunction(model, checkpoints, TRAIN, damping=0.1, batch_size=4).influence(TRAIN, TEST)
        assert not np.allclose(empirical, expected, rtol=1e-3)  # the curvature option is used
    with pytest.raises(ValueError, match="curvature='hessian'"):
        InfluenceFunction(model, checkpoints, TRAIN, curvature="hessian")


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
    assert scorer._inverses[0].factor[0].shape == (6, 6)  # the solve happens in the projected space
    with pytest.raises(ValueError, match="damping"):
        InfluenceFunction(model, checkpoints, TRAIN, damping=0.0)


@pytest.mark.parametrize("scorer, options, passes", [  # over TRAIN, to build and score it: (kept, streamed)
    (InfluenceFunction, {"damping": 1e-3}, (1, 2)), (InfluenceFunction, {"damping": 0.1, "curvature": "fisher"}, (3, 4)),
    (DataInf, {}, (1, 3)), (TRAK, {}, (1, 2))])
def test_float64_one_gradient_pass_gives_the_streamed_two_pass_scores(scorer, options, passes, monkeypatch):
    """Training gradients kept from the curvature's pass (the default budget) against every pass computing
    them again (budget 0): the same lambda and scores, and the kept scorer scores `TRAIN` without another pass."""
    made = []
    stream = TracIn._stream
    monkeypatch.setattr(TracIn, "_stream", lambda self, what, dataset, *rest: (
        made.append(what) if dataset.ids == TRAIN.ids else None, stream(self, what, dataset, *rest))[1])
    relabelled = TRAIN.with_labels((TRAIN.labels + 1) % 3)  # not the curvature's set: streamed by both
    with jax.enable_x64(True):
        model = toy_model(np.float64)
        checkpoints = toy_checkpoints(model, dtype=np.float64)
        results = {}
        for budget in (None, 0):
            made.clear()
            built = scorer(model, checkpoints, TRAIN, batch_size=4, **options,
                           **({} if budget is None else {"keep_gradients_bytes": budget}))
            influence = built.influence(TRAIN, TEST)
            results[budget] = (len(made), built, influence, built.aggregate_influence(TRAIN, TEST),
                               built.self_influence(TRAIN), built.influence(relabelled, TEST))
    (kept_passes, kept, *kept_scores), (streamed_passes, streamed, *streamed_scores) = results[None], results[0]
    assert (kept_passes, streamed_passes) == passes
    assert kept._kept is not None and streamed._kept is None
    lam = (kept.damping, streamed.damping) if scorer is InfluenceFunction else (kept.lambdas, streamed.lambdas)
    np.testing.assert_allclose(*lam, rtol=1e-12)
    for one_pass, two_passes in zip(kept_scores, streamed_scores):
        np.testing.assert_allclose(one_pass, two_passes, rtol=1e-9, atol=1e-12 * np.abs(two_passes).max())
    if scorer is not DataInf and "curvature" not in options:  # 13 gradients of 15 numbers: solved in their span
        assert kept._inverses[0].factor[0].shape == (len(TRAIN),) * 2


@pytest.mark.parametrize("family", ["influence_function", "trak"])
def test_prompts_too_big_for_a_dense_curvature_need_a_projection(family, monkeypatch):
    from gbair.influence import second_order  # pylint: disable=import-outside-toplevel

    model = toy_model()
    checkpoints = toy_checkpoints(model)
    monkeypatch.setattr(second_order, "MAX_DENSE_DIM", int(np.prod(model.prompt_shape)) - 1)
    with pytest.raises(ValueError, match="set projection_dim"):
        _ = InfluenceMatrices(model, checkpoints, TRAIN, TEST, batch_size=4)[family]
    projected = InfluenceMatrices(model, checkpoints, TRAIN, TEST, batch_size=4, projection_dim=6)[family]
    scorer = SECOND_ORDER[family](model, checkpoints, TRAIN, batch_size=4, projection_dim=6)
    np.testing.assert_allclose(projected, scorer.influence(TRAIN, TEST), rtol=1e-6)


def test_influence_function_strategies_score_every_example_with_the_tracin_rules():
    from gbair.recovery import strategies  # pylint: disable=import-outside-toplevel

    model = toy_model()
    checkpoints = toy_checkpoints(model)
    binary = lambda d: d.with_labels(d.labels % 2)  # noqa: E731
    train, wrong = binary(TRAIN), binary(TEST)
    context = strategies.SelectionContext(model=model, train=train, prompt=None, misclassified=wrong,
                                          corrupted=np.zeros(len(train), bool), seed=0, fit=None,
                                          influence=InfluenceMatrices(model, checkpoints, train, wrong, batch_size=4))
    matrix = InfluenceFunction(model, checkpoints, train, batch_size=4).influence(train, wrong)
    np.testing.assert_allclose(strategies.score("influence_function", context), -matrix.sum(1), rtol=1e-5)
    by_label = strategies.score("influence_function_by_label", context)
    tracin_rule = strategies.tracin_by_label(strategies.SelectionContext(**{**context.__dict__,
                                                                           "influence": {"dot": matrix}}))
    np.testing.assert_array_equal(by_label, tracin_rule)


@pytest.fixture(scope="module")
def float64_toy():
    """The float64 toy model, its checkpoints, and brute-force gradients [C] x (train, test) computed once."""
    with jax.enable_x64(True):
        model = toy_model(np.float64)
        checkpoints = toy_checkpoints(model, dtype=np.float64)
        grads = [(brute_force_grads(model, c, TRAIN), brute_force_grads(model, c, TEST)) for c in checkpoints]
        probabilities = [(label_probabilities(model, c, TRAIN), label_probabilities(model, c, TEST))
                         for c in checkpoints]
    return model, checkpoints, grads, probabilities


def label_probabilities(model, checkpoint, dataset):
    """p(given label) from an explicit softmax of the logits, in float64."""
    batch = model.featurize(dataset.texts)
    logits = np.asarray(model.logits_fn(model.params, checkpoint.prompt, batch), np.float64)
    softmax = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return softmax[np.arange(len(dataset)), dataset.labels]


def check_against(scorer, expected, expected_self):
    """influence, aggregate influence, top-k and self-influence of `scorer` against naive values."""
    atol = 1e-9 * np.abs(expected).max()
    np.testing.assert_allclose(scorer.influence(TRAIN, TEST), expected, rtol=1e-6, atol=atol)
    np.testing.assert_allclose(scorer.aggregate_influence(TRAIN, TEST), expected.sum(1), rtol=1e-6, atol=atol)
    top = scorer.top_k(TRAIN, TEST, 5)
    np.testing.assert_array_equal(top.indices, np.argsort(-expected, axis=0)[:5].T)
    np.testing.assert_allclose(top.scores, -np.sort(-expected, axis=0)[:5].T, rtol=1e-6, atol=atol)
    np.testing.assert_allclose(scorer.self_influence(TRAIN), expected_self, rtol=1e-6)


def naive_datainf(checkpoints, grads, width, damping, test_side=1):
    """Per block: lambda_l = damping mean |g_l|^2 / min(n, d_l) and the explicit matrix
    sum_i (I - g_il g_il^T / (lambda_l + |g_il|^2)) / (n lambda_l), placed on a block diagonal; loops."""
    total, lambdas = 0.0, []
    for c, (g_train, *g_tests) in zip(checkpoints, grads):
        n, dim = g_train.shape
        inverse, lams = np.zeros((dim, dim)), []
        for start in range(0, dim, width):
            block = slice(start, start + width)
            lam = damping * np.mean([g[block] @ g[block] for g in g_train]) / min(n, width)
            inverse[block, block] = sum(np.eye(width) - np.outer(g[block], g[block]) / (lam + g[block] @ g[block])
                                        for g in g_train) / (n * lam)
            lams.append(lam)
        g_test = g_tests[test_side - 1] if g_tests else g_train
        scores = np.zeros((n, len(g_test)))
        for i in range(n):
            for j in range(len(g_test)):
                scores[i, j] = c.learning_rate * g_test[j] @ inverse @ g_train[i]
        total, lambdas = total + scores, lambdas + [lams]
    return total, np.array(lambdas)


@pytest.mark.parametrize("blocks", ["token", "prompt"])
def test_float64_datainf_matches_its_formula(float64_toy, blocks):
    model, checkpoints, grads, _ = float64_toy
    width = model.prompt_shape[1] if blocks == "token" else int(np.prod(model.prompt_shape))
    expected, lambdas = naive_datainf(checkpoints, grads, width, 0.1)
    square, _ = naive_datainf(checkpoints, [(g_train,) for g_train, _ in grads], width, 0.1)
    with jax.enable_x64(True):
        scorer = DataInf(model, checkpoints, TRAIN, blocks=blocks, batch_size=4)
        np.testing.assert_allclose(scorer.lambdas, lambdas, rtol=1e-10)
        check_against(scorer, expected, np.diag(square))


def test_datainf_with_one_block_and_large_damping_gives_tracin_up_to_scale(float64_toy):
    model, checkpoints, _, _ = float64_toy
    with jax.enable_x64(True):
        scorer = DataInf(model, checkpoints, TRAIN, damping=1e9, blocks="prompt", batch_size=4)
        rescaled = [dataclasses.replace(c, learning_rate=c.learning_rate / lam)  # sum_c lr_c / lambda_c g.g
                    for c, [lam] in zip(checkpoints, scorer.lambdas)]
        np.testing.assert_allclose(scorer.influence(TRAIN, TEST), TracIn(model, rescaled).influence(TRAIN, TEST),
                                   rtol=1e-6)
        one = checkpoints[:1]
        large = DataInf(model, one, TRAIN, damping=1e9, blocks="prompt", batch_size=4)
        tracin = TracIn(model, one, batch_size=4).influence(TRAIN, TEST)
        np.testing.assert_allclose(large.lambdas[0, 0] * large.influence(TRAIN, TEST), tracin, rtol=1e-6)
        np.testing.assert_array_equal(np.argsort(large.influence(TRAIN, TEST), axis=0), np.argsort(tracin, axis=0))
        small = DataInf(model, one, TRAIN, damping=1e-3, blocks="prompt", batch_size=4).influence(TRAIN, TEST)
        assert not np.array_equal(np.argsort(small, axis=0), np.argsort(tracin, axis=0))  # curvature matters


def test_datainf_refuses_projection_and_bad_arguments():
    model = toy_model()
    checkpoints = toy_checkpoints(model)
    with pytest.raises(ValueError, match="projection_dim=6, expected None"):
        DataInf(model, checkpoints, TRAIN, projection_dim=6)
    with pytest.raises(ValueError, match="blocks='layer'"):
        DataInf(model, checkpoints, TRAIN, blocks="layer")
    with pytest.raises(ValueError, match="damping=0"):
        DataInf(model, checkpoints, TRAIN, damping=0)
    with pytest.raises(ValueError, match="no cosine variant"):
        DataInf(model, checkpoints, TRAIN).influence_dot_and_cosine(TRAIN, TEST)


def naive_trak(checkpoints, grads, probabilities, damping, projection=None, square=False):
    """TRAK's own form per checkpoint, phi(v)^T (Phi^T Phi + lambda I)^{-1} phi(z) (1 - p(z)) with
    phi = -g / (1 - p), p from an explicit softmax, lambda = damping trace / min(N, d); explicit inverse, loops,
    then the mean over checkpoints."""
    total, lambdas = 0.0, []
    for (g_train, g_test), (p_train, p_test) in zip(grads, probabilities):
        if square:
            g_test, p_test = g_train, p_train
        if projection is not None:
            g_train, g_test = g_train @ projection, g_test @ projection
        phi_train, phi_test = -g_train / (1 - p_train[:, None]), -g_test / (1 - p_test[:, None])
        kernel = phi_train.T @ phi_train
        lam = damping * np.trace(kernel) / min(len(g_train), len(kernel))
        inverse = np.linalg.inv(kernel + lam * np.eye(len(kernel)))
        scores = np.zeros((len(g_train), len(g_test)))
        for i in range(len(g_train)):
            for j in range(len(g_test)):
                scores[i, j] = phi_test[j] @ inverse @ phi_train[i] * (1 - p_train[i]) / len(checkpoints)
        total, lambdas = total + scores, lambdas + [lam]
    return total, np.array(lambdas)


@pytest.mark.parametrize("damping, method", [(1e-3, "tiled"), (0.1, "vmap")])
def test_float64_trak_matches_its_formula(float64_toy, damping, method):
    model, checkpoints, grads, probabilities = float64_toy
    expected, lambdas = naive_trak(checkpoints, grads, probabilities, damping)
    square, _ = naive_trak(checkpoints, grads, probabilities, damping, square=True)
    with jax.enable_x64(True):
        scorer = TRAK(model, checkpoints, TRAIN, damping=damping, batch_size=4, method=method)
        np.testing.assert_allclose(scorer.lambdas, lambdas, rtol=1e-10)
        check_against(scorer, expected, np.diag(square))


def test_projected_trak_matches_its_formula_on_projected_gradients(float64_toy):
    model, checkpoints, grads, probabilities = float64_toy
    projection = np.asarray(projection_matrix(int(np.prod(model.prompt_shape)), 6, seed=3), np.float64)
    expected, _ = naive_trak(checkpoints, grads, probabilities, 1e-3, projection=projection)
    square, _ = naive_trak(checkpoints, grads, probabilities, 1e-3, projection=projection, square=True)
    with jax.enable_x64(True):
        scorer = TRAK(model, checkpoints, TRAIN, projection_dim=6, projection_seed=3, batch_size=4)
        assert scorer._inverses[0].factor[0].shape == (6, 6)  # the solve happens in the projected space
        check_against(scorer, expected, np.diag(square))
    with pytest.raises(ValueError, match="damping=-1"):
        TRAK(model, checkpoints, TRAIN, damping=-1)


@pytest.mark.parametrize("name, scorer", [("datainf", DataInf), ("trak", TRAK)])
def test_datainf_and_trak_strategies_are_minus_the_weighted_sum_over_v(name, scorer):
    from gbair.recovery import strategies  # pylint: disable=import-outside-toplevel

    model = toy_model()
    checkpoints = toy_checkpoints(model)
    train, wrong = TRAIN, TEST.with_labels(np.array([0, 0, 1, 2]))
    context = strategies.SelectionContext(model=model, train=train, prompt=None, misclassified=wrong,
                                          corrupted=np.zeros(len(train), bool), seed=0, fit=None, balance_classes=True,
                                          influence=InfluenceMatrices(model, checkpoints, train, wrong, batch_size=4))
    matrix = scorer(model, checkpoints, train, batch_size=4).influence(train, wrong)
    weights = np.array([0.5, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(strategies.score(name, context), -matrix @ weights, rtol=1e-5)
    precomputed = dataclasses.replace(context, influence={name: 2 * matrix})  # the rule reads context.influence
    np.testing.assert_allclose(strategies.score(name, precomputed), -2 * matrix @ weights, rtol=1e-6)


# ---- the class probability TRAK reads: T5's rank classifier, MiniLM's head ----------------------

def tiny_t5_classifier():
    config = t5.T5Config(vocab_size=64, d_model=16, num_heads=2, head_dim=8, d_ff=32, num_encoder_layers=1,
                         num_decoder_layers=1)
    params = jax.tree.map(lambda x: 0.5 * x, t5.init_params(config, jax.random.key(0)))
    tokenize = lambda texts: [[3 + ord(ch) % 61 for ch in text] for text in texts]  # noqa: E731
    return t5.t5_classifier(params, config, tokenize, ("ok", "no"), prompt_length=3, max_length=12)


def margins_by_hand(model, checkpoint, dataset):
    """Per example, in float64: p = softmax(logits_fn)[label] and the gradient of TRAK's margin
    f = log p - log(1 - p), each from its own jax.grad call on logits_fn (no batching)."""
    features = model.featurize(dataset.texts)
    probabilities, grads = [], []
    for i in range(len(dataset)):
        example, label = {k: v[i:i + 1] for k, v in features.items()}, int(dataset.labels[i])

        def margin(prompt):
            log_p = jax.nn.log_softmax(model.logits_fn(model.params, prompt, example)[0])
            return log_p[label] - jax.nn.logsumexp(jnp.delete(log_p, label, assume_unique_indices=True))

        logits = np.asarray(model.logits_fn(model.params, checkpoint.prompt, example)[0], np.float64)
        probabilities.append(np.exp(logits[label]) / np.exp(logits).sum())
        grads.append(np.asarray(jax.grad(margin)(jnp.asarray(checkpoint.prompt)), np.float64).ravel())
    return np.array(probabilities), np.stack(grads)


def test_trak_on_t5_reads_the_rank_classifiers_class_probability_not_the_sequence_likelihood():
    model = tiny_t5_classifier()
    data = toy_dataset(6, seed=3, num_classes=2)
    rng = np.random.default_rng(0)
    checkpoints = [PromptCheckpoint(step, 0.3, rng.standard_normal(model.prompt_shape).astype(np.float32))
                   for step in (1, 2)]
    scorer = TRAK(model, checkpoints, data, batch_size=4)
    probabilities = scorer.class_probabilities(data)
    grads = scorer.gradient_features(data)  # -(1 - p) phi, TRAK's g
    scale = 1.0 / (1.0 - probabilities)
    features = model.featurize(data.texts)
    batch = dict(features, label=data.labels.astype(np.int32))
    for c, checkpoint in enumerate(checkpoints):
        expected_p, expected_phi = margins_by_hand(model, checkpoint, data)
        np.testing.assert_allclose(probabilities[c], expected_p, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(-grads[c] * scale[c][:, None], expected_phi, rtol=1e-3,
                                   atol=1e-5 * np.abs(expected_phi).max())
        sequence_p = np.exp(-np.asarray(model.loss_fn(model.params, checkpoint.prompt, batch), np.float64))
        assert np.abs(sequence_p - expected_p).max() > 0.05  # the verbalizer's likelihood is another number


def test_trak_on_minilm_is_unchanged_its_class_loss_is_its_training_loss(tiny_bert_dir):
    from gbair.classifiers import minilm_classifier  # pylint: disable=import-outside-toplevel

    model = minilm_classifier(["an ordinary email", "spam advertising"], class_names=["ham", "spam"],
                              model_dir=tiny_bert_dir, prompt_length=2, max_length=8)
    data = toy_dataset(7, seed=4, num_classes=2)
    checkpoints = [PromptCheckpoint(step, 0.1, np.asarray(model.init_prompt(jax.random.key(step))))
                   for step in (1, 2)]
    batch = dict(model.featurize(data.texts), label=data.labels.astype(np.int32))
    np.testing.assert_array_equal(model.class_loss_fn(model.params, checkpoints[0].prompt, batch),
                                  model.loss_fn(model.params, checkpoints[0].prompt, batch))

    class TrainingLossTRAK(TRAK):  # TRAK as it was: p = exp(-training loss)
        _loss_fn = property(lambda self: self.model.loss_fn)

    np.testing.assert_array_equal(TRAK(model, checkpoints, data, batch_size=4).influence(data, data),
                                  TrainingLossTRAK(model, checkpoints, data, batch_size=4).influence(data, data))

"""The PyTorch peers in benchmarks/torch_peers.py compute exactly gbair's losses, gradients and TracIn.

Needs torch, transformers and captum (benchmark-only dependencies): skipped without them.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("captum")

import jax  # noqa: E402

from benchmarks import torch_peers  # noqa: E402
from gbair import assets  # noqa: E402
from gbair.classifiers import minilm_classifier  # noqa: E402

TEXTS = ["see you at the 3pm project meeting", "FREE money!!! click here to claim your prize",
         "quarterly report attached, comments welcome", "cheap meds, no prescription, buy now"]
LABELS = [0, 1, 0, 1]
SCALE = 20.0


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def setup():
    model = minilm_classifier(["ordinary work email", "spam advertising"], class_names=["ham", "spam"],
                              prompt_length=4, max_length=16, scale=SCALE)
    batch = dict(model.featurize(TEXTS))
    batch["label"] = np.array(LABELS, np.int32)
    prompt = np.asarray(model.init_prompt(jax.random.PRNGKey(0)))
    module = torch_peers.build_torch_classifier(assets.minilm_dir(), np.asarray(model.params["class_embeddings"]),
                                                SCALE)
    return model, batch, prompt, module


def examples(batch, stop=None):
    return batch["input_ids"][:stop], batch["mask"][:stop], batch["label"][:stop]


def test_module_is_frozen_eval_float32(setup):
    _, _, _, module = setup
    assert not module.training and not module.bert.training
    params = list(module.parameters())
    assert params and all(not p.requires_grad and p.dtype == torch.float32 for p in params)


def test_losses_match_gbair(setup):
    model, batch, prompt, module = setup
    expected = np.asarray(model.loss_fn(model.params, prompt, batch))
    ids, mask, labels = (torch.from_numpy(np.array(x, np.int64)) for x in examples(batch))
    with torch.no_grad():
        shared = module(torch.from_numpy(prompt.copy()), ids, mask, labels).numpy()
        per_example = module(torch.from_numpy(np.stack([prompt] * len(TEXTS))), ids, mask, labels).numpy()
        logits = module(torch.from_numpy(prompt.copy()), ids, mask).numpy()
    np.testing.assert_allclose(shared, expected, atol=1e-4)
    np.testing.assert_allclose(per_example, expected, atol=1e-4)
    np.testing.assert_allclose(logits, np.asarray(model.logits_fn(model.params, prompt, batch)), atol=1e-4)


def test_per_example_grads_match_jax(setup):
    model, batch, prompt, module = setup
    per_example = jax.vmap(
        jax.grad(lambda p, ex: model.loss_fn(model.params, p, {k: v[None] for k, v in ex.items()})[0]),
        in_axes=(None, 0))
    expected = np.asarray(per_example(prompt, batch))
    assert expected.shape == (len(TEXTS),) + model.prompt_shape
    func = torch_peers.torch_func_grads(module, prompt, *examples(batch))
    batched = torch_peers.torch_batched_grads(module, prompt, *examples(batch))
    assert func.shape == expected.shape and func.dtype == np.float32
    assert relative_error(func, expected) < 1e-4
    assert relative_error(batched, expected) < 1e-4
    # repeated calls give the same answer (no state kept between calls)
    np.testing.assert_array_equal(torch_peers.torch_func_grads(module, prompt, *examples(batch)), func)


@pytest.mark.parametrize("sample_wise", [True, False])
def test_captum_tracin_matches_brute_force(setup, sample_wise):
    _, batch, prompt, module = setup
    rng = np.random.default_rng(0)
    checkpoints = [(prompt, 0.5), (prompt + 0.05 * rng.standard_normal(prompt.shape).astype(np.float32), 0.25)]
    train, test = examples(batch), examples(batch, 3)
    expected = sum(
        lr * np.einsum("ipe,jpe->ij", torch_peers.torch_func_grads(module, p, *train),
                       torch_peers.torch_func_grads(module, p, *test))
        for p, lr in checkpoints)
    # batch_size 3 over 4 train examples: a full and a partial train batch
    scores = torch_peers.captum_tracin_scores(module, checkpoints, train, test, batch_size=3, sample_wise=sample_wise)
    assert scores.shape == (4, 3)
    assert relative_error(scores, expected) < 1e-3
    with torch_peers.make_captum_tracin(module, checkpoints, train, batch_size=3, sample_wise=sample_wise) as tracin:
        np.testing.assert_allclose(tracin.influence(test), scores, rtol=1e-5, atol=1e-6 * np.abs(scores).max())
        again = tracin.influence(test)  # callable repeatedly
    np.testing.assert_allclose(again, scores, rtol=1e-5, atol=1e-6 * np.abs(scores).max())
    # the backbone stays frozen after captum's `layers` handling
    assert not any(p.requires_grad for p in module.parameters())

"""T5 1.1 in JAX against PyTorch `transformers` (golden from tests/golden/make_t5_golden.py), and T5 prompt tuning."""

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from gbair.pretrained import hf
from gbair.data.dataset import TextDataset
from gbair.influence.tracin import TracIn
from gbair.models import t5
from gbair.train import trainer
from gbair.models.prompts import PromptCheckpoint

GOLDEN = pathlib.Path(__file__).parent / "golden"
encode = jax.jit(t5.encode, static_argnums=1)  # compiled: op-by-op dispatch is the slow part here
decode = jax.jit(t5.decode, static_argnums=1)


@pytest.fixture(scope="module")
def golden():
    return json.loads((GOLDEN / "t5_tiny_outputs.json").read_text())


@pytest.fixture(scope="module")
def tiny(golden):
    config = t5.T5Config.from_hf(golden["config"])
    return config, hf.params_from_hf(load_file(str(GOLDEN / "t5_tiny.safetensors")), config)


def run_golden(config, params, golden):
    ids, mask = np.array(golden["input_ids"]), np.array(golden["attention_mask"])
    encoded = encode(params, config, t5.embed(params, ids), mask)
    return encoded, decode(params, config, encoded, mask, np.array(golden["decoder_input_ids"]))


def test_encoder_and_decoder_match_transformers(tiny, golden):
    config, params = tiny
    assert config.num_heads * config.head_dim != config.d_model
    encoded, logits = run_golden(config, params, golden)
    assert logits.dtype == jnp.float32 and logits.shape == (2, 20, 64)
    assert np.abs(np.asarray(encoded) - np.array(golden["encoder_last_hidden_state"])).max() < 1e-4
    assert np.abs(np.asarray(logits) - np.array(golden["logits"])).max() < 1e-4


def test_bfloat16_activations_stay_close_with_float32_logits(tiny, golden):
    config, params = tiny
    encoded, logits = run_golden(dataclasses.replace(config, dtype="bfloat16"), params, golden)
    assert encoded.dtype == jnp.bfloat16 and logits.dtype == jnp.float32
    assert np.abs(np.asarray(logits) - np.array(golden["logits"])).max() < 0.25


def test_dot_product_attention_path_matches_the_reference(tiny, golden):
    config, params = tiny
    encoded, logits = run_golden(dataclasses.replace(config, attention_implementation="xla"), params, golden)
    assert np.abs(np.asarray(encoded) - np.array(golden["encoder_last_hidden_state"])).max() < 1e-4
    assert np.abs(np.asarray(logits) - np.array(golden["logits"])).max() < 1e-4
    with pytest.raises(ValueError, match="attention_implementation='flash'"):
        dataclasses.replace(config, attention_implementation="flash")


def reference_bucket(relative: int, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128) -> int:
    """Exact integer version: the largest k with exact * (max_distance / exact) ** (k / span) <= distance."""
    offset = 0
    if bidirectional:
        num_buckets //= 2
        offset = num_buckets if relative > 0 else 0
        distance = abs(relative)
    else:
        distance = max(-relative, 0)
    exact = num_buckets // 2
    if distance < exact:
        return offset + distance
    span = num_buckets - exact
    k = max(k for k in range(span) if distance ** span * exact ** k >= max_distance ** k * exact ** span)
    return offset + exact + k


def test_relative_position_bucket_matches_reference():
    relative = np.array(list(range(-300, 301)) + [-5000, 5000])
    for bidirectional in (True, False):
        got = t5.relative_position_bucket(relative, bidirectional=bidirectional)
        expected = [reference_bucket(int(r), bidirectional) for r in relative]
        np.testing.assert_array_equal(got, expected)
    assert t5.relative_position_bucket(np.array([-128, -1000]), bidirectional=False).tolist() == [31, 31]
    assert t5.relative_position_bucket(np.array([128, 1000]), bidirectional=True).tolist() == [31, 31]


def test_params_from_hf_names_every_mismatch(tiny):
    config, _ = tiny
    tensors = load_file(str(GOLDEN / "t5_tiny.safetensors"))
    del tensors["decoder.block.1.layer.2.DenseReluDense.wo.weight"]
    tensors["decoder.block.2.layer.0.SelfAttention.q.weight"] = np.zeros((24, 16), np.float32)
    bias = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    tensors[bias] = tensors[bias].T
    with pytest.raises(ValueError) as error:
        hf.params_from_hf(tensors, config)
    message = str(error.value)
    assert "\n" not in message
    assert "missing ['decoder.block.1.layer.2.DenseReluDense.wo.weight']" in message
    assert "unexpected ['decoder.block.2.layer.0.SelfAttention.q.weight']" in message
    assert f"wrong shape ['{bias} (4, 32) (expected (32, 4))']" in message


def test_init_params_has_the_t5x_tree_and_presets_have_t5_sizes(tiny):
    config, loaded = tiny
    fresh = t5.init_params(config, jax.random.key(0))
    shape = lambda tree: jax.tree.map(np.shape, tree)  # noqa: E731
    assert shape(fresh) == shape(loaded)
    assert fresh["encoder"]["layers_1"]["attention"]["query"]["kernel"].shape == (16, 24)
    assert fresh["decoder"]["layers_0"]["encoder_decoder_attention"]["out"]["kernel"].shape == (24, 16)
    counts = {name: sum(int(np.prod(s)) for s in jax.tree.leaves(t5.param_shapes(c), is_leaf=t5._is_shape))
              for name, c in t5.SIZES.items()}
    published = {"small": 77.0e6, "base": 247.6e6, "large": 783.2e6, "xl": 2.85e9, "xxl": 11.14e9}
    for name, count in counts.items():
        assert abs(count / published[name] - 1) < 0.01, (name, count)


# ---- the rank classifier ----------------------------------------------------------------------------

def tokenize(texts: list[str]) -> list[list[int]]:
    return [[3 + ord(ch) % 61 for ch in text] for text in texts]  # ids 3..63 of the tiny vocabulary


@pytest.fixture(scope="module")
def model(tiny):
    config, params = tiny
    return t5.t5_classifier(params, config, tokenize, ("ham", "spam!"), prompt_length=4, max_length=16)


def toy_dataset(n: int = 12) -> TextDataset:
    ham = ["meeting notes tuesday", "review my parser patch", "lunch at noon"]
    spam = ["win a free cruise now", "cheap pills no prescription", "claim your cash prize"]
    texts = [f"{(spam if i % 2 else ham)[i % 3]} {i}" for i in range(n)]
    return TextDataset(tuple(f"t5/{i}" for i in range(n)), tuple(texts), np.arange(n) % 2,
                       ("t5",) * n, ("ham", "spam"))


def batch_of(model, dataset):
    return dict(model.featurize(dataset.texts), label=dataset.labels.astype(np.int32))


def test_loss_is_negative_log_likelihood_of_true_verbalizer(tiny, model):
    config, params = tiny
    batch = batch_of(model, toy_dataset(4))
    prompt = model.init_prompt(jax.random.key(1))
    targets = np.array([(tokenize([word])[0] + [1, 0, 0])[:6] for word in ("ham", "spam!")])
    assert targets.shape == (2, 6) and targets[0, 3:].tolist() == [1, 0, 0]
    embeds = np.concatenate([np.broadcast_to(prompt, (4, 4, 16)), t5.embed(params, batch["input_ids"])], 1)
    mask = np.concatenate([np.ones((4, 4), np.int32), batch["mask"]], 1)
    encoded = encode(params, config, embeds, mask)
    by_hand = np.zeros((4, 2))
    for c in range(2):
        inputs = np.broadcast_to(np.concatenate([[0], targets[c, :-1]]), (4, 6))
        log_probs = np.asarray(jax.nn.log_softmax(decode(params, config, encoded, mask, inputs)), np.float64)
        token = log_probs[:, np.arange(6), targets[c]]
        by_hand[:, c] = (token * (np.arange(6) < (4 if c == 0 else 6))).sum(1)
    logits, loss = jax.jit(lambda p: (model.logits_fn(params, p, batch), model.loss_fn(params, p, batch)))(prompt)
    np.testing.assert_allclose(logits, by_hand, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loss, -by_hand[np.arange(4), batch["label"]], rtol=1e-5, atol=1e-5)


def test_shared_prompt_equals_per_example_prompt(model):
    batch = batch_of(model, toy_dataset(3))
    prompt = model.init_prompt(jax.random.key(2))
    tiled = jnp.broadcast_to(prompt, (3,) + prompt.shape)
    both = jax.jit(lambda p: (model.logits_fn(model.params, p, batch), model.loss_fn(model.params, p, batch)))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), both(prompt), both(tiled))


def test_prompt_tuning_lowers_loss_and_leaves_backbone_bit_identical(model):
    data = toy_dataset()
    before = jax.tree.map(np.array, model.params)
    config = trainer.TrainConfig(optimizer="adam", learning_rate=0.1, batch_size=6, num_epochs=4, log_every=100)
    result = trainer.train(model, data, config)
    initial = model.init_prompt(jax.random.key(config.seed))
    batch = batch_of(model, data)
    losses = jax.jit(lambda prompt: jnp.mean(model.loss_fn(model.params, prompt, batch)))
    assert losses(result.prompt) < losses(initial) - 0.1
    jax.tree.map(np.testing.assert_array_equal, before, model.params)
    assert result.prompt.shape == model.prompt_shape == (4, 16)


def test_tracin_self_influence_is_the_influence_diagonal(model):
    data = toy_dataset(5)
    checkpoints = [PromptCheckpoint(step, lr, np.asarray(model.init_prompt(jax.random.key(step))))
                   for step, lr in ((1, 0.1), (2, 0.05))]
    tracin = TracIn(model, checkpoints, batch_size=4)
    influence = tracin.influence(data, data)
    assert influence.shape == (5, 5)
    np.testing.assert_allclose(tracin.self_influence(data), np.diag(influence), rtol=1e-4)
    assert (np.diag(influence) > 0).all()

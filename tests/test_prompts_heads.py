"""Soft prompt initialisers and splicing (under jit), the cosine head and cross-entropy vs float64 numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gbair.models import heads, prompts


def test_insert_prompt_prefix_and_after_first_under_jit():
    embeds = jnp.arange(2 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 3)
    mask = jnp.array([[1, 1, 1, 0], [1, 1, 0, 0]], jnp.int32)
    prompt = -jnp.ones((2, 3), jnp.float32)
    insert = jax.jit(prompts.insert_prompt, static_argnums=3)

    out, out_mask = insert(prompt, embeds, mask, "prefix")
    np.testing.assert_array_equal(out[:, :2], -1.0)
    np.testing.assert_array_equal(out[:, 2:], embeds)
    np.testing.assert_array_equal(out_mask, [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]])

    out, out_mask = insert(prompt, embeds, mask, "after_first")
    np.testing.assert_array_equal(out[:, 0], embeds[:, 0])
    np.testing.assert_array_equal(out[:, 1:3], -1.0)
    np.testing.assert_array_equal(out[:, 3:], embeds[:, 1:])
    np.testing.assert_array_equal(out_mask, [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]])


def test_per_example_prompt_copies_are_used_per_example():
    embeds, mask = jnp.zeros((2, 3, 4)), jnp.ones((2, 3), jnp.int32)
    tiled = jnp.stack([jnp.full((2, 4), 1.0), jnp.full((2, 4), 2.0)])
    out, _ = prompts.insert_prompt(tiled, embeds, mask, "prefix")
    np.testing.assert_array_equal(out[0, :2], 1.0)
    np.testing.assert_array_equal(out[1, :2], 2.0)
    with pytest.raises(ValueError, match="prompt position 'suffix'"):
        prompts.insert_prompt(tiled, embeds, mask, "suffix")


def test_initialisers():
    table = jnp.asarray(np.random.default_rng(0).standard_normal((50, 8)), jnp.float32)
    rng = jax.random.key(3)
    sampled = np.asarray(prompts.sampled_vocab_init(rng, table, 6, num_candidates=20, skip=10))
    rows = [int(np.flatnonzero((np.asarray(table) == r).all(1))[0]) for r in sampled]
    assert len(set(rows)) == 6 and all(10 <= r < 30 for r in rows)
    np.testing.assert_array_equal(sampled, prompts.sampled_vocab_init(rng, table, 6, num_candidates=20, skip=10))

    labelled = np.asarray(prompts.class_label_init(rng, table, 5, [[1, 2], [7]], skip=10))
    np.testing.assert_allclose(labelled[0], (table[1] + table[2]) / 2, rtol=1e-6)
    np.testing.assert_array_equal(labelled[1], table[7])
    assert labelled.shape == (5, 8) and labelled.dtype == np.float32

    uniform = np.asarray(prompts.uniform_init(rng, 4, 8, scale=0.5))
    assert uniform.shape == (4, 8) and np.abs(uniform).max() <= 0.5 and uniform.std() > 0.1
    with pytest.raises(ValueError, match="cannot sample 30 distinct tokens"):
        prompts.sampled_vocab_init(rng, table, 30, num_candidates=20)


def test_save_prompt_round_trip(tmp_path):
    prompt = np.random.default_rng(0).standard_normal((4, 6))
    prompts.save_prompt(tmp_path / "prompt.npy", prompt)
    loaded = np.load(tmp_path / "prompt.npy", allow_pickle=False)
    assert loaded.dtype == np.float32 and loaded.shape == (4, 6)
    np.testing.assert_array_equal(loaded, prompt.astype(np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["prompt.npy"]  # no temp file left behind
    with pytest.raises(ValueError, match=r"must be \[P, E\]"):
        prompts.save_prompt(tmp_path / "bad.npy", prompt[None])


def test_cosine_logits_and_cross_entropy_match_float64():
    rng = np.random.default_rng(1)
    pooled, classes, labels = rng.standard_normal((5, 7)), rng.standard_normal((3, 7)), rng.integers(0, 3, 5)
    cos = (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)) @ (
        classes / np.linalg.norm(classes, axis=1, keepdims=True)).T
    logits = heads.cosine_logits(jnp.asarray(pooled, jnp.float32), jnp.asarray(classes, jnp.float32), 20.0)
    np.testing.assert_allclose(logits, 20.0 * cos, rtol=1e-5, atol=1e-5)
    z = 20.0 * cos
    expected = np.log(np.exp(z).sum(1)) - z[np.arange(5), labels]
    np.testing.assert_allclose(heads.cross_entropy(logits, jnp.asarray(labels)), expected, rtol=1e-5)


def test_initializer_dispatch_and_unknown_kind():
    table = jnp.asarray(np.random.default_rng(0).standard_normal((40, 4)), jnp.float32)
    rng = jax.random.key(1)
    np.testing.assert_array_equal(prompts.initializer("sampled_vocab", table, 3, skip=5)(rng),
                                  prompts.sampled_vocab_init(rng, table, 3, skip=5))
    np.testing.assert_array_equal(prompts.initializer("class_label", table, 3, class_token_ids=[[1], [2]])(rng)[:2],
                                  table[1:3])
    with pytest.raises(ValueError, match="prompt_init='zeros'"):
        prompts.initializer("zeros", table, 3)

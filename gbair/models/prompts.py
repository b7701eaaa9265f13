"""The soft prompt: a trainable float32 [prompt_length, d_model] array, how it starts, how it joins the input.

Pure functions, so each is testable under `jax.jit` and the same code serves MiniLM and T5.
"""

import os
from typing import Callable, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gbair import atomic

Position = Literal["prefix", "after_first"]


def sampled_vocab_init(
    rng: jax.Array, embeddings: jax.Array, length: int, *, num_candidates: int = 5000, skip: int = 0
) -> jax.Array:
    """Rows drawn without replacement from the embeddings of tokens [skip, skip + num_candidates).

    Prompt tuning samples from the most frequent tokens; in WordPiece/SentencePiece vocabularies
    low ids are roughly the frequent ones (after `skip` special/unused ids).
    """
    vocab_size = embeddings.shape[0]
    stop = min(vocab_size, skip + num_candidates)
    if stop - skip < length:
        raise ValueError(f"cannot sample {length} distinct tokens from ids [{skip}, {stop})")
    ids = jax.random.choice(rng, jnp.arange(skip, stop), (length,), replace=False)
    return jnp.asarray(embeddings, jnp.float32)[ids]


def class_label_init(
    rng: jax.Array, embeddings: jax.Array, length: int, class_token_ids: Sequence[Sequence[int]], **sample_kw
) -> jax.Array:
    """First rows = mean embedding of each class label's tokens; the rest sampled from the vocabulary."""
    if len(class_token_ids) > length:
        raise ValueError(f"{len(class_token_ids)} class labels do not fit in a prompt of length {length}")
    table = jnp.asarray(embeddings, jnp.float32)
    labels = jnp.stack([table[jnp.asarray(ids)].mean(0) for ids in class_token_ids])
    rest = sampled_vocab_init(rng, table, length - len(class_token_ids), **sample_kw)
    return jnp.concatenate([labels, rest])


def uniform_init(rng: jax.Array, length: int, d_model: int, *, scale: float = 0.5) -> jax.Array:
    """U(-scale, scale), the prompt-tuning paper's random baseline."""
    return jax.random.uniform(rng, (length, d_model), jnp.float32, -scale, scale)


def initializer(kind: str, embeddings: jax.Array, length: int, *, class_token_ids: Sequence[Sequence[int]] = (),
                skip: int = 0) -> Callable[[jax.Array], jax.Array]:
    """rng -> [length, E] prompt for `kind`: sampled_vocab | class_label | uniform.

    skip: ids below it (special tokens) are never sampled.
    """
    if kind == "sampled_vocab":
        return lambda rng: sampled_vocab_init(rng, embeddings, length, skip=skip)
    if kind == "class_label":
        return lambda rng: class_label_init(rng, embeddings, length, class_token_ids, skip=skip)
    if kind == "uniform":
        return lambda rng: uniform_init(rng, length, embeddings.shape[1])
    raise ValueError(f"prompt_init={kind!r}, expected sampled_vocab, class_label or uniform")


def insert_prompt(
    prompt: jax.Array, embeds: jax.Array, mask: jax.Array, position: Position = "prefix"
) -> tuple[jax.Array, jax.Array]:
    """Splices the prompt into input embeddings [B, L, E] and extends the mask [B, L] with ones.

    `prompt` is [P, E] (shared) or [B, P, E] (one copy per example, for per-example gradients).
    `prefix` puts it first (T5); `after_first` after the first token ([CLS] for BERT).
    """
    batch = embeds.shape[0]
    if prompt.ndim == 2:
        prompt = jnp.broadcast_to(prompt, (batch,) + prompt.shape)
    prompt = prompt.astype(embeds.dtype)
    ones = jnp.ones(prompt.shape[:2], mask.dtype)
    if position == "prefix":
        return jnp.concatenate([prompt, embeds], 1), jnp.concatenate([ones, mask], 1)
    if position == "after_first":
        return (
            jnp.concatenate([embeds[:, :1], prompt, embeds[:, 1:]], 1),
            jnp.concatenate([mask[:, :1], ones, mask[:, 1:]], 1),
        )
    raise ValueError(f"prompt position {position!r}, expected 'prefix' or 'after_first'")


def save_prompt(path: os.PathLike, prompt: jax.Array) -> None:
    """Writes the prompt as a float32 [P, E] .npy (the prompt-tuning export format), atomically."""
    array = np.asarray(prompt, np.float32)
    if array.ndim != 2:
        raise ValueError(f"prompt must be [P, E], got shape {array.shape}")
    atomic.write_npy(path, array)

"""Turn backbone outputs into class scores and per-example losses."""

import jax
import jax.numpy as jnp


def cosine_logits(pooled: jax.Array, class_embeddings: jax.Array, scale: float) -> jax.Array:
    """scale * cos(pooled [B, E], class_embeddings [C, E]) -> [B, C].

    The class embeddings are frozen embeddings of class descriptions, so only the prompt can
    move an example towards a class; the fixed scale sets how peaked the softmax can get.
    """
    unit = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)  # noqa: E731
    return scale * unit(pooled) @ unit(class_embeddings).T


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy [B] of integer labels [B]."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
    return -jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]

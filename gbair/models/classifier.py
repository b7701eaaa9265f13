"""A prompt-tuned classifier: a frozen backbone as pure functions of (params, prompt, batch).

`PromptModel` is the one interface the trainer and the TracIn engine see, so a backbone (MiniLM
now, T5 later) plugs in without either of them changing. Frozen params are passed as arguments,
not closed over, so jit does not bake hundreds of MB of constants into every compiled function.
"""

import dataclasses
import os
from typing import Any, Callable, Literal, Mapping, Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np

from gbair import assets
from gbair.models import bert, heads, prompts

Params = Any
Batch = Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class PromptModel:
    """Everything needed to train, evaluate and differentiate one prompt-tuned classifier.

    batch keys: the ones `featurize` returns (fixed shapes), plus "label" [B] int32.
    """

    params: Params  # frozen backbone and head; never updated
    init_prompt: Callable[[jax.Array], jax.Array]  # rng -> [P, E] float32
    logits_fn: Callable[[Params, jax.Array, Batch], jax.Array]  # (params, prompt, batch) -> [B, C]
    loss_fn: Callable[[Params, jax.Array, Batch], jax.Array]  # (params, prompt, batch) -> [B]
    featurize: Callable[[Sequence[str]], dict[str, np.ndarray]]  # texts -> fixed-shape arrays
    class_names: tuple[str, ...]
    prompt_shape: tuple[int, int]


@gin.configurable
def minilm_classifier(
    class_descriptions: Sequence[str],
    *,
    class_names: Sequence[str] | None = None,
    prompt_length: int = 16,
    max_length: int = 64,
    scale: float = 20.0,
    prompt_init: Literal["sampled_vocab", "class_label", "uniform"] = "sampled_vocab",
    model_dir: str | os.PathLike | None = None,
    dtype: str = "float32",
) -> PromptModel:
    """MiniLM (or any BERT) + soft prompt after [CLS] + cosine head against class descriptions.

    Args:
      class_descriptions: one text per class; their frozen mean-pooled embeddings are the head.
      class_names: short label words for `class_label` init (default: the descriptions).
      prompt_length: P, soft prompt tokens.
      max_length: text tokens per example (P + max_length <= 512).
      scale: cosine similarity multiplier (softmax temperature).
      prompt_init: `sampled_vocab` | `class_label` | `uniform`.
      model_dir: a BERT dir (config.json, model.safetensors, tokenizer.json); default the
        embedded MiniLM package, whose weights are verified against the pinned SHA-256.
      dtype: compute dtype of the encoder (`float32` or `bfloat16`); scores stay float32.
    """
    if model_dir is None:
        model_dir, weights = assets.minilm_dir(), assets.verified_minilm_weights()
    else:
        weights = None
    config, backbone = bert.load_bert(model_dir, weights)
    tokenizer = bert.Tokenizer(os.path.join(model_dir, "tokenizer.json"), max_length)
    if prompt_length + max_length > config.max_positions:
        raise ValueError(f"prompt_length + max_length = {prompt_length + max_length} > {config.max_positions}")
    encoder = bert.BertEncoder(config, jnp.dtype(dtype))

    descriptions = tokenizer(list(class_descriptions))
    params = {
        "word_embeddings": backbone["word_embeddings"],
        "encoder": backbone["encoder"],
        "class_embeddings": np.asarray(bert.embed_sentences(config, backbone, descriptions)),
    }

    def logits_fn(params: Params, prompt: jax.Array, batch: Batch) -> jax.Array:
        word = jnp.take(params["word_embeddings"], batch["input_ids"], axis=0)
        embeds, mask = prompts.insert_prompt(prompt, word, batch["mask"], "after_first")
        hidden = encoder.apply({"params": params["encoder"]}, embeds, mask)
        return heads.cosine_logits(bert.mean_pool(hidden, mask), params["class_embeddings"], scale)

    def loss_fn(params: Params, prompt: jax.Array, batch: Batch) -> jax.Array:
        return heads.cross_entropy(logits_fn(params, prompt, batch), batch["label"])

    names = tuple(class_names or class_descriptions)
    table = backbone["word_embeddings"]

    # BERT's first 1000 ids are [PAD], [unusedN], [CLS], [SEP], [MASK]: never sample those.
    init_prompt = prompts.initializer(prompt_init, table, prompt_length, skip=1000,
                                      class_token_ids=[tokenizer.word_ids(name) for name in names])

    return PromptModel(
        params=params,
        init_prompt=init_prompt,
        logits_fn=logits_fn,
        loss_fn=loss_fn,
        featurize=tokenizer,
        class_names=names,
        prompt_shape=(prompt_length, config.hidden_size),
    )

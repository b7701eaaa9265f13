"""The soft prompt: a trainable float32 [prompt_length, d_model] array, how it starts, how it joins the input.

Pure functions, so each is testable under `jax.jit` and the same code serves MiniLM and T5.
`PromptModel` is the one interface the trainer and the TracIn engine see, so a backbone (MiniLM
or T5) plugs in without either of them changing. Frozen params are passed as arguments, not
closed over, so jit does not bake hundreds of MB of constants into every compiled function.
"""

import dataclasses
import functools
import os
from typing import Any, Callable, Literal, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gbair import files
from gbair.models import heads

Position = Literal["prefix", "after_first"]
Params = Any
Batch = Mapping[str, jax.Array]
DATA, MODEL = "data", "model"  # mesh axes: examples are split over DATA, big kernels over MODEL


def device_mesh(model_parallel: int = 1) -> Mesh:
    """All devices (of all processes) as a [data, model] mesh with `model_parallel` devices per model copy."""
    devices = np.array(jax.devices())
    if model_parallel < 1 or devices.size % model_parallel:
        raise ValueError(f"model_parallel={model_parallel} does not divide the {devices.size} devices")
    return Mesh(devices.reshape(-1, model_parallel), (DATA, MODEL))


def place(tree: Any, mesh: Mesh, specs: Any = None) -> Any:
    """Host arrays -> global arrays on `mesh`, each leaf sharded by its PartitionSpec in `specs`
    (default: replicated). Works with several processes: each fills only its own shards."""
    specs = jax.tree.map(lambda _: PartitionSpec(), tree) if specs is None else specs
    return jax.tree.map(lambda x, spec: jax.make_array_from_callback(
        np.shape(x), NamedSharding(mesh, spec), lambda index: np.asarray(x)[index]), tree, specs)


@dataclasses.dataclass(frozen=True)
class PromptModel:
    """Everything needed to train, evaluate and differentiate one prompt-tuned classifier: the contract
    the trainer, TracIn and `gbair.find_label_issues` rely on, for gbair's backbones and a user's own.

    featurize(texts) -> {name: np.ndarray [N, ...]}: one row per text, the same trailing shape for
      any texts (pad or truncate; e.g. int32 token ids [N, L] and a mask), so every batch has one
      shape and each function compiles once. Rows are batched by indexing; a batch is those arrays
      [B, ...] plus "label" [B] int32 and "weight" [B] float32 (0 for padding rows, which repeat row 0).
    init_prompt(rng) -> [P, E] float32, P, E = prompt_shape; the trainer optimises only this.
    logits_fn(params, prompt, batch) -> [B, C] class scores (any float dtype; softmax is taken in
      float32); loss_fn(params, prompt, batch) -> [B] per-example loss (unweighted; the trainer and
      TracIn apply "weight"). `prompt` is what training and evaluation pass, [P, E], shared by the
      batch. Per-example gradients (gbair.influence.gradients) pass, under method="tiled" (TracIn's
      default), a [B, P, E] prompt, one copy per example: the model must then use prompt[b] for example
      b (gbair.models.prompts.insert_prompt takes both); under method="vmap" every call sees one
      example, batch [1, ...] and prompt [P, E], so any [P, E] model works. TracIn refuses a model
      that cannot take [B, P, E] under "tiled", naming method="vmap", before any work.
    params: any pytree of arrays, frozen (passed as an argument, never closed over, never updated).
    """

    params: Params  # frozen backbone and head; never updated
    init_prompt: Callable[[jax.Array], jax.Array]  # rng -> [P, E] float32
    logits_fn: Callable[[Params, jax.Array, Batch], jax.Array]  # (params, prompt, batch) -> [B, C]
    loss_fn: Callable[[Params, jax.Array, Batch], jax.Array]  # (params, prompt, batch) -> [B]
    featurize: Callable[[Sequence[str]], dict[str, np.ndarray]]  # texts -> fixed-shape arrays
    class_names: tuple[str, ...]
    prompt_shape: tuple[int, int]
    # The mesh `params` already live on (sharded over MODEL where big); the trainer and TracIn then
    # split batches over its DATA axis. None: host arrays, placed by whoever runs the model.
    mesh: Mesh | None = None

    # The classifier's class probabilities, derived from `logits_fn` once per model (stable functions,
    # so whatever jit-compiles them compiles once). For MiniLM `class_loss_fn` is `loss_fn`; for T5 it
    # is not: T5 trains on the verbalizer's sequence loss over the whole vocabulary, while its class
    # probability is the rank classifier's softmax over the verbalizers' log-likelihoods.

    @functools.cached_property
    def probabilities_fn(self) -> Callable[[Params, jax.Array, Batch], jax.Array]:
        """(params, prompt, batch) -> [B, C] float32 class probabilities: softmax of `logits_fn` over classes."""
        def probabilities(params: Params, prompt: jax.Array, batch: Batch) -> jax.Array:
            logits = self.logits_fn(params, prompt, batch)
            return jax.nn.softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)

        return probabilities

    @functools.cached_property
    def class_loss_fn(self) -> Callable[[Params, jax.Array, Batch], jax.Array]:
        """(params, prompt, batch) -> [B] -log p(label) under `probabilities_fn` (the classifier's
        cross-entropy; what a probability of the given label, p = exp(-class loss), is read from)."""
        def class_loss(params: Params, prompt: jax.Array, batch: Batch) -> jax.Array:
            return heads.cross_entropy(self.logits_fn(params, prompt, batch), batch["label"])

        return class_loss


@dataclasses.dataclass(frozen=True)
class PromptCheckpoint:
    """A prompt saved during training, with the learning rate it stands for (TracIn's inputs)."""

    step: int
    learning_rate: float
    prompt: np.ndarray  # [P, E] float32
    validation: dict | None = None  # validation metrics at this step, when training recorded them
    validation_probabilities: np.ndarray | None = None  # [N_validation, C] float32 class probabilities, likewise


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
    files.write_npy(path, array)

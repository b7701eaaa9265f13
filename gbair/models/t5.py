"""T5 1.1 encoder-decoder as pure JAX functions over a T5X-named param tree, and a rank classifier.

Params keep T5X's names and 2-D kernel layouts (`encoder/layers_0/attention/query/kernel` [E, H*D],
...), so T5X checkpoints map one-to-one and Hugging Face ones by transposing. `encode` takes input
*embeddings*, so a soft prompt can be prefixed before the first layer (see `gbair.models.prompts`).
Numerics follow T5X: RMS norm in float32 (scale only), gated GELU (tanh), no 1/sqrt(D) on attention
logits, no sqrt(E) on embeddings, untied float32 logits. With dtype="bfloat16" activations and
matmuls run in bfloat16 while norms, softmax, logits and losses stay float32.
"""

import dataclasses
import math
from typing import Any, Callable, Literal, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from gbair import UserError
from gbair.models import prompts
from gbair.models.prompts import PromptModel

Params = Mapping[str, Any]
PAD_ID, EOS_ID = 0, 1
_NEG = -1e9  # additive attention bias of a masked key (float32)


@dataclasses.dataclass(frozen=True)
class T5Config:
    vocab_size: int  # V
    d_model: int  # E
    num_heads: int  # H
    head_dim: int  # D
    d_ff: int  # F
    num_encoder_layers: int
    num_decoder_layers: int
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_eps: float = 1e-6
    dtype: str = "float32"  # compute dtype of activations: float32 or bfloat16
    # None: einsum + float32 softmax (the reference). "xla" / "cudnn": jax.nn.dot_product_attention;
    # "cudnn" is the fused GPU kernel (bf16 only), reported ~25% faster for T5-base-shaped encoders.
    attention_implementation: str | None = None

    def __post_init__(self):
        if self.dtype not in ("float32", "bfloat16"):
            raise UserError(f"T5Config.dtype={self.dtype!r}, expected 'float32' or 'bfloat16'")
        if self.attention_implementation not in (None, "xla", "cudnn"):
            raise UserError(f"T5Config.attention_implementation={self.attention_implementation!r}, "
                             f"expected None, 'xla' or 'cudnn'")

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @classmethod
    def from_hf(cls, raw: Mapping[str, Any], dtype: str = "float32") -> "T5Config":
        """From a Hugging Face T5 `config.json` dict; only T5 1.1 (gated-gelu) is supported."""
        if raw.get("feed_forward_proj") != "gated-gelu":
            raise UserError(f"T5 config: feed_forward_proj={raw.get('feed_forward_proj')!r}, expected "
                             f"'gated-gelu' (T5 1.1)")
        return cls(vocab_size=raw["vocab_size"], d_model=raw["d_model"], num_heads=raw["num_heads"],
                   head_dim=raw["d_kv"], d_ff=raw["d_ff"], num_encoder_layers=raw["num_layers"],
                   num_decoder_layers=raw.get("num_decoder_layers") or raw["num_layers"],
                   relative_attention_num_buckets=raw.get("relative_attention_num_buckets", 32),
                   relative_attention_max_distance=raw.get("relative_attention_max_distance", 128),
                   layer_norm_eps=raw.get("layer_norm_epsilon", 1e-6), dtype=dtype)


def _size(d_model: int, num_heads: int, layers: int, d_ff: int) -> T5Config:
    return T5Config(32128, d_model, num_heads, 64, d_ff, layers, layers)


SIZES: dict[str, T5Config] = {
    "small": _size(512, 6, 8, 1024),
    "base": _size(768, 12, 12, 2048),
    "large": _size(1024, 16, 24, 2816),
    "xl": _size(2048, 32, 24, 5120),
    "xxl": _size(4096, 64, 24, 10240),
}


# ---- parameters ---------------------------------------------------------------------------------

def param_shapes(config: T5Config) -> dict:
    """The T5X param tree with shape tuples as leaves (what `init_params` and the checkpoint readers build)."""
    e, h, d, f, v = config.d_model, config.num_heads, config.head_dim, config.d_ff, config.vocab_size
    attention = {"query": {"kernel": (e, h * d)}, "key": {"kernel": (e, h * d)},
                 "value": {"kernel": (e, h * d)}, "out": {"kernel": (h * d, e)}}
    mlp = {"wi_0": {"kernel": (e, f)}, "wi_1": {"kernel": (e, f)}, "wo": {"kernel": (f, e)}}
    norm = {"scale": (e,)}
    relpos = {"rel_embedding": (h, config.relative_attention_num_buckets)}
    encoder = {f"layers_{i}": {"pre_attention_layer_norm": norm, "attention": attention,
                               "pre_mlp_layer_norm": norm, "mlp": mlp}
               for i in range(config.num_encoder_layers)}
    decoder = {f"layers_{i}": {"pre_self_attention_layer_norm": norm, "self_attention": attention,
                               "pre_cross_attention_layer_norm": norm, "encoder_decoder_attention": attention,
                               "pre_mlp_layer_norm": norm, "mlp": mlp}
               for i in range(config.num_decoder_layers)}
    return {
        "token_embedder": {"embedding": (v, e)},
        "encoder": {"relpos_bias": relpos, **encoder, "encoder_norm": norm},
        "decoder": {"relpos_bias": relpos, **decoder, "decoder_norm": norm, "logits_dense": {"kernel": (e, v)}},
    }


def partition_specs(config: T5Config, model_parallel: int) -> dict:
    """PartitionSpecs of the param tree over the mesh's MODEL axis (Megatron-style, as T5X's rules).

    Q/K/V, wi_0/wi_1 and the logits split their output dim (heads, F, V); attention-out and wo their
    input dim, so each layer needs one all-reduce; the embedding splits its vocab rows. Norms and
    position tables are small and replicated. With model_parallel=1 everything is replicated.
    """
    for name, size in (("num_heads*head_dim", config.num_heads * config.head_dim), ("d_ff", config.d_ff),
                       ("vocab_size", config.vocab_size)):
        if size % model_parallel:
            raise UserError(f"T5 {name}={size} is not divisible by model_parallel={model_parallel}")
    split_out, split_in = PartitionSpec(None, prompts.MODEL), PartitionSpec(prompts.MODEL, None)

    def spec(path, shape):
        name = jax.tree_util.keystr(path)
        if model_parallel == 1 or len(shape) != 2 or "rel_embedding" in name:
            return PartitionSpec()
        if "'embedding'" in name or "'out'" in name or "'wo'" in name:
            return split_in
        return split_out

    return jax.tree_util.tree_map_with_path(spec, param_shapes(config), is_leaf=_is_shape)


def _is_shape(x: Any) -> bool:
    return isinstance(x, tuple) and all(isinstance(n, int) for n in x)


def init_params(config: T5Config, rng: jax.Array) -> dict:
    """Random float32 params (for tests and benchmarks): N(0, 1/fan_in) kernels, N(0, 1) tables, unit norms."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(param_shapes(config), is_leaf=_is_shape)
    sizes = [math.prod(shape) for _, shape in paths]
    noise = np.split(np.asarray(jax.random.normal(rng, (sum(sizes),), jnp.float32)), np.cumsum(sizes)[:-1])

    def draw(path, shape, z):  # one normal draw for the whole tree: one compile, not one per shape
        name = jax.tree_util.keystr(path)
        if "scale" in name:
            return np.ones(shape, np.float32)
        std = 1.0 if "embedding" in name else 1.0 / math.sqrt(shape[0])
        return (std * z).reshape(shape)

    return jax.tree.unflatten(treedef, [draw(p, s, z) for (p, s), z in zip(paths, noise)])


# ---- the network --------------------------------------------------------------------------------

def relative_position_bucket(relative_position: np.ndarray, *, bidirectional: bool, num_buckets: int = 32,
                             max_distance: int = 128) -> np.ndarray:
    """T5's bucket of (key position - query position): exact for small distances, log-spaced up to max_distance.

    Bidirectional (encoder) spends half the buckets on keys after the query; causal (decoder)
    maps every future key to bucket 0. Same as T5X, eps included.
    """
    n = -np.asarray(relative_position)
    bucket = np.zeros_like(n)
    if bidirectional:
        num_buckets //= 2
        bucket += (n < 0).astype(n.dtype) * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    max_exact = num_buckets // 2
    large = max_exact + (np.log(n.astype(np.float32) / max_exact + np.finfo(np.float32).eps)
                         / np.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(n.dtype)
    return bucket + np.where(n < max_exact, n, np.minimum(large, num_buckets - 1))


def _position_bias(table: jax.Array, q_len: int, k_len: int, bidirectional: bool, config: T5Config) -> jax.Array:
    """[1, H, Q, K] float32 relative position bias (buckets are static numpy)."""
    buckets = relative_position_bucket(np.arange(k_len)[None] - np.arange(q_len)[:, None], bidirectional=bidirectional,
                                       num_buckets=config.relative_attention_num_buckets,
                                       max_distance=config.relative_attention_max_distance)
    return jnp.asarray(table, jnp.float32)[:, buckets][None]


def _mask_bias(mask: jax.Array) -> jax.Array:
    """[B, 1, 1, K] additive bias: 0 for keys to attend to, -1e9 for padding."""
    return jnp.where(mask[:, None, None, :] > 0, 0.0, _NEG).astype(jnp.float32)


def _rms_norm(x: jax.Array, scale: jax.Array, config: T5Config) -> jax.Array:
    """T5 layer norm: no mean, no bias, computed in float32."""
    x = x.astype(jnp.float32)
    y = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + config.layer_norm_eps)
    return y * jnp.asarray(scale, jnp.float32)


def _dense(x: jax.Array, p: Params, dtype: jnp.dtype) -> jax.Array:
    return jnp.dot(x.astype(dtype), jnp.asarray(p["kernel"], dtype))


def _attention(p: Params, x: jax.Array, memory: jax.Array, bias: jax.Array, config: T5Config) -> jax.Array:
    """Multi-head attention of x [B, Q, E] over memory [B, K, E]; logits unscaled, softmax in float32."""
    dtype, heads = config.compute_dtype, (config.num_heads, config.head_dim)
    q = _dense(x, p["query"], dtype).reshape(x.shape[:2] + heads)
    k = _dense(memory, p["key"], dtype).reshape(memory.shape[:2] + heads)
    v = _dense(memory, p["value"], dtype).reshape(memory.shape[:2] + heads)
    if config.attention_implementation:
        bias = jnp.broadcast_to(bias, (x.shape[0], config.num_heads, x.shape[1], memory.shape[1])).astype(dtype)
        attended = jax.nn.dot_product_attention(q, k, v, bias=bias, scale=1.0,
                                                implementation=config.attention_implementation)
        return _dense(attended.reshape(x.shape[:2] + (-1,)), p["out"], dtype)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) + bias
    weights = jax.nn.softmax(logits, axis=-1).astype(dtype)
    attended = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(x.shape[:2] + (-1,))
    return _dense(attended, p["out"], dtype)


def _mlp(p: Params, x: jax.Array, config: T5Config) -> jax.Array:
    """Gated GELU: wo(gelu_tanh(x wi_0) * (x wi_1))."""
    dtype = config.compute_dtype
    hidden = jax.nn.gelu(_dense(x, p["wi_0"], dtype), approximate=True) * _dense(x, p["wi_1"], dtype)
    return _dense(hidden, p["wo"], dtype)


def embed(params: Params, token_ids: jax.Array) -> jax.Array:
    """Token embeddings [..., E] (float32), unscaled as in T5."""
    return jnp.take(jnp.asarray(params["token_embedder"]["embedding"], jnp.float32), token_ids, axis=0)


def encode(params: Params, config: T5Config, input_embeds: jax.Array, mask: jax.Array) -> jax.Array:
    """Input embeddings [B, S, E] + mask [B, S] -> encoder outputs [B, S, E] in the compute dtype.

    Padding is masked as a key only (like Hugging Face); outputs at padded positions are unused.
    """
    dtype, enc = config.compute_dtype, params["encoder"]
    length = input_embeds.shape[1]
    bias = _position_bias(enc["relpos_bias"]["rel_embedding"], length, length, True, config) + _mask_bias(mask)
    x = input_embeds.astype(dtype)
    for i in range(config.num_encoder_layers):
        layer = enc[f"layers_{i}"]
        h = _rms_norm(x, layer["pre_attention_layer_norm"]["scale"], config)
        x = x + _attention(layer["attention"], h, h, bias, config)
        h = _rms_norm(x, layer["pre_mlp_layer_norm"]["scale"], config)
        x = x + _mlp(layer["mlp"], h, config)
    return _rms_norm(x, enc["encoder_norm"]["scale"], config).astype(dtype)


def decode(params: Params, config: T5Config, encoded: jax.Array, encoder_mask: jax.Array,
           decoder_input_ids: jax.Array) -> jax.Array:
    """Teacher-forced decoder: ids [B, T] (starting with pad id 0) -> next-token logits [B, T, V] float32."""
    dtype, dec = config.compute_dtype, params["decoder"]
    length = decoder_input_ids.shape[1]
    causal = np.where(np.tril(np.ones((length, length), bool)), 0.0, _NEG).astype(np.float32)
    self_bias = _position_bias(dec["relpos_bias"]["rel_embedding"], length, length, False, config) + causal
    cross_bias = _mask_bias(encoder_mask)
    encoded = encoded.astype(dtype)
    x = embed(params, decoder_input_ids).astype(dtype)
    for i in range(config.num_decoder_layers):
        layer = dec[f"layers_{i}"]
        h = _rms_norm(x, layer["pre_self_attention_layer_norm"]["scale"], config)
        x = x + _attention(layer["self_attention"], h, h, self_bias, config)
        h = _rms_norm(x, layer["pre_cross_attention_layer_norm"]["scale"], config)
        x = x + _attention(layer["encoder_decoder_attention"], h, encoded, cross_bias, config)
        h = _rms_norm(x, layer["pre_mlp_layer_norm"]["scale"], config)
        x = x + _mlp(layer["mlp"], h, config)
    y = _rms_norm(x, dec["decoder_norm"]["scale"], config)
    return jnp.dot(y, jnp.asarray(dec["logits_dense"]["kernel"], jnp.float32))


def sequence_log_likelihood(logits: jax.Array, targets: jax.Array, target_mask: jax.Array) -> jax.Array:
    """sum_t mask_t log p(target_t) of logits [..., T, V] -> [...] (float32)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    token = jnp.take_along_axis(log_probs, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return jnp.sum(token * target_mask, axis=-1)


# ---- rank classification ------------------------------------------------------------------------

def encode_targets(tokenize: Callable[[list[str]], list[list[int]]], verbalizers: Sequence[str],
                   target_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Verbalizer targets (token ids + EOS, padded with 0) [C, T] int32 and their mask [C, T] float32."""
    ids = [list(t) + [EOS_ID] for t in tokenize(list(verbalizers))]
    length = target_length or max(map(len, ids))
    too_long = [v for v, t in zip(verbalizers, ids) if len(t) > length]
    if too_long:
        raise UserError(f"verbalizers {too_long} need more than target_length={length} tokens (EOS included)")
    targets, mask = np.zeros((len(ids), length), np.int32), np.zeros((len(ids), length), np.float32)
    for c, t in enumerate(ids):
        targets[c, :len(t)], mask[c, :len(t)] = t, 1.0
    return targets, mask


def shift_right(targets: jax.Array) -> jax.Array:
    """Decoder inputs: pad id 0, then the targets without their last position."""
    start = jnp.full(targets.shape[:-1] + (1,), PAD_ID, targets.dtype)
    return jnp.concatenate([start, targets[..., :-1]], axis=-1)


def t5_classifier(
    params: Params,
    config: T5Config,
    tokenize: Callable[[list[str]], list[list[int]]],
    verbalizers: Sequence[str],
    *,
    prompt_length: int = 100,
    max_length: int = 256,
    target_length: int | None = None,
    class_names: Sequence[str] | None = None,
    prompt_init: Literal["sampled_vocab", "class_label", "uniform"] = "sampled_vocab",
    mesh: Mesh | None = None,
) -> PromptModel:
    """T5 1.1 + soft prompt prefixed to the encoder input; a class's score is the log-likelihood of its verbalizer.

    Args:
      params: T5X-named backbone params (e.g. from `params_from_hf`); frozen.
      tokenize: texts -> token ids without EOS or padding (e.g. SentencePiece).
      verbalizers: one target text per class, e.g. ("ham", "spam").
      prompt_length: P, soft prompt tokens (prompt tuning's default 100).
      max_length: text tokens per example, EOS included (the encoder sees P + max_length).
      target_length: decoder length; default the longest verbalizer + EOS.
      class_names: short label words for `class_label` init and reports (default: the verbalizers).
      prompt_init: `sampled_vocab` | `class_label` | `uniform`.
      mesh: the mesh `params` were placed on (see `partition_specs`), if any.
    """
    targets, target_mask = encode_targets(tokenize, verbalizers, target_length)
    decoder_inputs = np.asarray(shift_right(targets))
    names = tuple(class_names or verbalizers)
    if len(names) != len(verbalizers):
        raise UserError(f"{len(names)} class_names for {len(verbalizers)} verbalizers")

    def featurize(texts: Sequence[str]) -> dict[str, np.ndarray]:
        ids, mask = np.zeros((len(texts), max_length), np.int32), np.zeros((len(texts), max_length), np.int32)
        for i, tokens in enumerate(tokenize(list(texts))):
            tokens = list(tokens)[:max_length - 1] + [EOS_ID]
            ids[i, :len(tokens)], mask[i, :len(tokens)] = tokens, 1
        return {"input_ids": ids, "mask": mask}

    def encode_batch(params: Params, prompt: jax.Array, batch: Mapping[str, jax.Array]):
        embeds = embed(params, batch["input_ids"])
        embeds, mask = prompts.insert_prompt(prompt, embeds, batch["mask"], "prefix")
        return encode(params, config, embeds, mask), mask

    def logits_fn(params: Params, prompt: jax.Array, batch: Mapping[str, jax.Array]) -> jax.Array:
        """[B, C] log-likelihood of every verbalizer; the encoder runs once, the decoder once per class."""
        encoded, mask = encode_batch(params, prompt, batch)
        batch_size = encoded.shape[0]

        def score(inputs, target, target_mask):  # one class: vmap keeps the cross-attention K/V unbatched
            tile = lambda x: jnp.broadcast_to(x, (batch_size,) + x.shape)  # noqa: E731
            logits = decode(params, config, encoded, mask, tile(inputs))
            return sequence_log_likelihood(logits, tile(target), tile(target_mask))

        return jax.vmap(score, out_axes=1)(decoder_inputs, targets, target_mask)

    def loss_fn(params: Params, prompt: jax.Array, batch: Mapping[str, jax.Array]) -> jax.Array:
        """[B] -log p(true verbalizer): the decoder runs only on each example's own target."""
        encoded, mask = encode_batch(params, prompt, batch)
        label = batch["label"].astype(jnp.int32)
        logits = decode(params, config, encoded, mask, jnp.asarray(decoder_inputs)[label])
        return -sequence_log_likelihood(logits, jnp.asarray(targets)[label], jnp.asarray(target_mask)[label])

    table = params["token_embedder"]["embedding"]

    # SentencePiece ids 0-2 are pad, EOS, unk; the rest are roughly in frequency order.
    init_prompt = prompts.initializer(prompt_init, table, prompt_length, skip=3,
                                      class_token_ids=tokenize(list(names)))

    return PromptModel(
        params=params,
        init_prompt=init_prompt,
        logits_fn=logits_fn,
        loss_fn=loss_fn,
        featurize=featurize,
        class_names=names,
        prompt_shape=(prompt_length, config.d_model),
        mesh=mesh,
    )

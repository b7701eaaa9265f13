"""BERT / MiniLM encoder in Flax, loading Hugging Face `model.safetensors` weights.

The encoder takes *word embeddings* rather than token ids, so a soft prompt can be spliced in
before position and token-type embeddings are added (see `gbair.models.prompts`). The word
embedding table lives outside the module, in `params["word_embeddings"]`.
"""

import dataclasses
import json
import os
import pathlib
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import tokenizers
from safetensors.numpy import load_file

Params = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_positions: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_json(cls, path: os.PathLike) -> "BertConfig":
        """Reads a Hugging Face BERT `config.json`."""
        raw = json.loads(pathlib.Path(path).read_text())
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{path}: hidden_act={raw['hidden_act']!r}, expected 'gelu'")
        return cls(
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            num_layers=raw["num_hidden_layers"],
            num_heads=raw["num_attention_heads"],
            intermediate_size=raw["intermediate_size"],
            max_positions=raw["max_position_embeddings"],
            type_vocab_size=raw["type_vocab_size"],
            layer_norm_eps=raw["layer_norm_eps"],
        )


def attend(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array, dtype: Any) -> jax.Array:
    """Softmax attention of q, k, v [B, S, H, D] under an additive bias [B, 1, 1, S] -> [B, S, H, D]
    (its own function so that benchmarks/kernel_profile.py can time another layout of the same maths)."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    weights = jax.nn.softmax(logits.astype(jnp.float32) + bias, axis=-1).astype(dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


class BertLayer(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        cfg = self.config
        heads, head_dim = cfg.num_heads, cfg.hidden_size // cfg.num_heads
        dense = lambda n, name: nn.Dense(n, dtype=self.dtype, name=name)  # noqa: E731
        norm = lambda name: nn.LayerNorm(cfg.layer_norm_eps, dtype=jnp.float32, name=name)  # noqa: E731
        split = lambda t: t.reshape(t.shape[:-1] + (heads, head_dim))  # noqa: E731
        q, k, v = (split(dense(cfg.hidden_size, n)(x)) for n in ("query", "key", "value"))
        attended = attend(q, k, v, bias, self.dtype).reshape(x.shape)
        x = norm("attention_norm")(x + dense(cfg.hidden_size, "attention_out")(attended))
        h = nn.gelu(dense(cfg.intermediate_size, "intermediate")(x), approximate=False)
        return norm("output_norm")(x + dense(cfg.hidden_size, "output")(h)).astype(self.dtype)


class BertEncoder(nn.Module):
    """Word embeddings [B, S, E] + mask [B, S] -> hidden states [B, S, E] (float32)."""

    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, word_embeddings: jax.Array, mask: jax.Array) -> jax.Array:
        cfg = self.config
        seq_len = word_embeddings.shape[1]
        if seq_len > cfg.max_positions:
            raise ValueError(f"sequence length {seq_len} exceeds max_positions={cfg.max_positions}")
        positions = nn.Embed(cfg.max_positions, cfg.hidden_size, name="position_embeddings")
        token_types = nn.Embed(cfg.type_vocab_size, cfg.hidden_size, name="token_type_embeddings")
        x = word_embeddings + positions(jnp.arange(seq_len))[None] + token_types(jnp.zeros((), jnp.int32))
        x = nn.LayerNorm(cfg.layer_norm_eps, name="embeddings_norm")(x).astype(self.dtype)
        bias = jnp.where(mask[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min)
        for i in range(cfg.num_layers):
            x = BertLayer(cfg, self.dtype, name=f"layer_{i}")(x, bias)
        return x.astype(jnp.float32)


def params_from_hf(tensors: Mapping[str, np.ndarray], config: BertConfig) -> dict:
    """Maps Hugging Face BertModel tensor names to {"word_embeddings", "encoder"} (pooler unused)."""
    used = set()

    def take(name: str) -> np.ndarray:
        if name not in tensors:
            raise KeyError(f"BERT weights: missing tensor {name!r}")
        used.add(name)
        return np.asarray(tensors[name], np.float32)

    def dense(prefix: str) -> dict:
        return {"kernel": take(prefix + ".weight").T, "bias": take(prefix + ".bias")}

    def norm(prefix: str) -> dict:
        return {"scale": take(prefix + ".weight"), "bias": take(prefix + ".bias")}

    encoder = {
        "position_embeddings": {"embedding": take("embeddings.position_embeddings.weight")},
        "token_type_embeddings": {"embedding": take("embeddings.token_type_embeddings.weight")},
        "embeddings_norm": norm("embeddings.LayerNorm"),
    }
    for i in range(config.num_layers):
        p = f"encoder.layer.{i}."
        encoder[f"layer_{i}"] = {
            "query": dense(p + "attention.self.query"),
            "key": dense(p + "attention.self.key"),
            "value": dense(p + "attention.self.value"),
            "attention_out": dense(p + "attention.output.dense"),
            "attention_norm": norm(p + "attention.output.LayerNorm"),
            "intermediate": dense(p + "intermediate.dense"),
            "output": dense(p + "output.dense"),
            "output_norm": norm(p + "output.LayerNorm"),
        }
    params = {"word_embeddings": take("embeddings.word_embeddings.weight"), "encoder": encoder}
    expected = (config.vocab_size, config.hidden_size)
    if params["word_embeddings"].shape != expected:
        raise ValueError(f"BERT weights: word embeddings {params['word_embeddings'].shape}, expected {expected}")
    unused = {n for n in tensors if n not in used and not n.startswith("pooler.") and n != "embeddings.position_ids"}
    if unused:
        raise ValueError(f"BERT weights: unexpected tensors {sorted(unused)}")
    return params


def load_bert(model_dir: os.PathLike, weights: os.PathLike | None = None) -> tuple[BertConfig, dict]:
    """Config and params from a directory with `config.json` and `model.safetensors`."""
    model_dir = pathlib.Path(model_dir)
    config = BertConfig.from_json(model_dir / "config.json")
    tensors = load_file(str(weights or model_dir / "model.safetensors"))
    tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
    return config, params_from_hf(tensors, config)


class Tokenizer:
    """WordPiece tokenizer from `tokenizer.json`, padded/truncated to a fixed length."""

    def __init__(self, path: os.PathLike, max_length: int):
        self._tokenizer = tokenizers.Tokenizer.from_file(str(path))
        self._tokenizer.enable_truncation(max_length)
        self._tokenizer.enable_padding(length=max_length)
        self.max_length = max_length

    def __call__(self, texts: list[str] | tuple[str, ...], chunk: int = 512) -> dict[str, np.ndarray]:
        """Token ids and mask [N, max_length]. Encodes `chunk` texts at a time: an Encoding keeps
        the truncated-away tokens too, which for long emails is ~50 KB each."""
        ids = np.zeros((len(texts), self.max_length), np.int32)
        mask = np.zeros((len(texts), self.max_length), np.int32)
        for begin in range(0, len(texts), chunk):
            encodings = self._tokenizer.encode_batch(list(texts[begin:begin + chunk]))
            ids[begin:begin + len(encodings)] = [e.ids for e in encodings]
            mask[begin:begin + len(encodings)] = [e.attention_mask for e in encodings]
        return {"input_ids": ids, "mask": mask}

    def word_ids(self, text: str) -> list[int]:
        """Token ids of `text` without special tokens or padding."""
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        return [i for i, keep in zip(encoding.ids, encoding.attention_mask) if keep]


def mean_pool(hidden: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of the hidden states over unmasked positions (sentence-transformers' pooling)."""
    weights = mask.astype(hidden.dtype)[..., None]
    return (hidden * weights).sum(-2) / jnp.maximum(weights.sum(-2), 1e-9)


def embed_sentences(config: BertConfig, params: Params, batch: Mapping[str, np.ndarray]) -> jax.Array:
    """Mean-pooled sentence embeddings [B, E] of a tokenised batch (no prompt)."""
    word = jnp.take(params["word_embeddings"], batch["input_ids"], axis=0)
    hidden = BertEncoder(config).apply({"params": params["encoder"]}, word, batch["mask"])
    return mean_pool(hidden, batch["mask"])

"""Hugging Face T5 1.1 weights (`model.safetensors`) -> the T5X param tree: same tensors, transposed."""

from typing import Any, Mapping, Sequence

import numpy as np

from gbair import UserError
from gbair.models.t5 import T5Config, param_shapes


def _hf_names(config: T5Config) -> dict[str, tuple[tuple[str, ...], bool]]:
    """Hugging Face tensor name -> (T5X param path, transpose?)."""
    names: dict[str, tuple[tuple[str, ...], bool]] = {
        "shared.weight": (("token_embedder", "embedding"), False),
        "encoder.final_layer_norm.weight": (("encoder", "encoder_norm", "scale"), False),
        "decoder.final_layer_norm.weight": (("decoder", "decoder_norm", "scale"), False),
        "lm_head.weight": (("decoder", "logits_dense", "kernel"), True),
    }
    for stack in ("encoder", "decoder"):
        names[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (
            (stack, "relpos_bias", "rel_embedding"), True)

    def attention(hf: str, path: tuple[str, ...]) -> None:
        for ours, theirs in (("query", "q"), ("key", "k"), ("value", "v"), ("out", "o")):
            names[f"{hf}.{theirs}.weight"] = (path + (ours, "kernel"), True)

    def mlp(hf: str, path: tuple[str, ...]) -> None:
        for name in ("wi_0", "wi_1", "wo"):
            names[f"{hf}.DenseReluDense.{name}.weight"] = (path + ("mlp", name, "kernel"), True)
        names[f"{hf}.layer_norm.weight"] = (path + ("pre_mlp_layer_norm", "scale"), False)

    for i in range(config.num_encoder_layers):
        hf, path = f"encoder.block.{i}.layer.", ("encoder", f"layers_{i}")
        attention(hf + "0.SelfAttention", path + ("attention",))
        names[hf + "0.layer_norm.weight"] = (path + ("pre_attention_layer_norm", "scale"), False)
        mlp(hf + "1", path)
    for i in range(config.num_decoder_layers):
        hf, path = f"decoder.block.{i}.layer.", ("decoder", f"layers_{i}")
        attention(hf + "0.SelfAttention", path + ("self_attention",))
        names[hf + "0.layer_norm.weight"] = (path + ("pre_self_attention_layer_norm", "scale"), False)
        attention(hf + "1.EncDecAttention", path + ("encoder_decoder_attention",))
        names[hf + "1.layer_norm.weight"] = (path + ("pre_cross_attention_layer_norm", "scale"), False)
        mlp(hf + "2", path)
    return names


# Aliases of `shared.weight` that some exports repeat, and a never-used tensor HF itself ignores.
IGNORED = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
               "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight")


def expected_shapes(config: T5Config) -> dict[str, tuple[int, ...]]:
    """Hugging Face tensor name -> its shape (the Hugging Face layout) for `config`."""
    shapes = param_shapes(config)
    return {name: _get(shapes, path)[::-1] if transpose else _get(shapes, path)
            for name, (path, transpose) in _hf_names(config).items()}


def params_from_hf(tensors: Mapping[str, np.ndarray], config: T5Config) -> dict:
    """Maps Hugging Face T5 1.1 tensors into the T5X tree (kernel = weight.T), as float32.

    Checks everything before failing, so one error names every missing, unexpected and
    wrong-shape tensor (shapes in the Hugging Face layout).
    """
    shapes = param_shapes(config)
    missing, wrong, params = [], [], {}
    for name, (path, transpose) in _hf_names(config).items():
        expected = _get(shapes, path)
        expected_hf = expected[::-1] if transpose else expected
        if name not in tensors:
            missing.append(name)
        elif tuple(np.shape(tensors[name])) != expected_hf:
            wrong.append(f"{name} {tuple(np.shape(tensors[name]))} (expected {expected_hf})")
        else:
            array = np.asarray(tensors[name], np.float32)
            _set(params, path, np.ascontiguousarray(array.T) if transpose else array)
    known = set(_hf_names(config)) | set(IGNORED)
    unexpected = sorted(n for n in tensors if n not in known)
    problems = [f"{what} {items}" for what, items in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if items]
    if problems:
        raise UserError(f"T5 weights do not fit {config}: " + "; ".join(problems))
    return params


def _get(tree: Mapping, path: Sequence[str]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _set(tree: dict, path: Sequence[str], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value

"""Pretrained T5 weights from T5X (legacy or Orbax) or Hugging Face checkpoints, in one T5X-named tree.

`load_t5_params(path, config)` works out the format from what is at `path`, reads it, and checks the
result against the param tree the config implies, naming every missing, unexpected and wrong-shape
parameter in one error. `read_shapes` + `shape_problems` answer whether a checkpoint fits a config
from its metadata alone, before any weights are read. Nothing is unpickled: msgpack, TensorStore,
Orbax and safetensors only.
"""

import os
import re
import time
from typing import Any, Literal, NamedTuple

import jax
import numpy as np
from absl import logging
from safetensors import safe_open
from safetensors.numpy import load_file

from gbair import UserError
from gbair.pretrained import hf, t5x
from gbair.models.t5 import T5Config, param_shapes

Format = Literal["t5x_legacy", "t5x_orbax", "hf_safetensors"]
HF_WEIGHTS = "model.safetensors"


def detect_format(path: str) -> tuple[Format, str]:
    """(format, the file or step dir to read) for a T5X step dir, its `checkpoint` file or `state/` dir,
    a safetensors file or a Hugging Face model dir."""
    path = os.fspath(path).rstrip("/")
    if path.endswith(".safetensors"):
        return "hf_safetensors", path
    if os.path.basename(path) == t5x.LEGACY_FILE:
        return "t5x_legacy", os.path.dirname(path)
    if os.path.basename(path) == t5x.ORBAX_ITEM:
        return "t5x_orbax", os.path.dirname(path)
    if path.startswith("gs://"):  # not listed (no probing the network here): legacy unless .../state is given
        return "t5x_legacy", path
    candidates: list[tuple[Format, str]] = [
        ("t5x_orbax", os.path.join(path, t5x.ORBAX_ITEM)),
        ("t5x_legacy", os.path.join(path, t5x.LEGACY_FILE)),
        ("hf_safetensors", os.path.join(path, HF_WEIGHTS)),
    ]
    for fmt, candidate in candidates:
        if os.path.exists(candidate):
            return fmt, (candidate if fmt == "hf_safetensors" else path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint path {path} does not exist")
    steps = sorted((n for n in os.listdir(path) if re.fullmatch(r"checkpoint_\d+", n)), key=lambda n: int(n[11:]))
    if steps:
        raise UserError(f"checkpoint {path} is a T5X model dir: pass one of its step dirs, e.g. "
                         f"{os.path.join(path, steps[-1])} (found {', '.join(steps)})")
    raise UserError(f"checkpoint {path}: not a T5X step dir (no {t5x.ORBAX_ITEM}/ or {t5x.LEGACY_FILE}) "
                     f"and no {HF_WEIGHTS}; expected e.g. .../checkpoint_1100000 or a safetensors file")


class CheckpointShapes(NamedTuple):
    """A checkpoint's parameter shapes, read from its metadata (no weights)."""

    format: Format
    location: str  # the file or step dir read
    shapes: dict[str, tuple[int, ...]]  # T5X param path ("encoder/layers_0/...") or Hugging Face tensor name


def read_shapes(path: str) -> CheckpointShapes:
    """The shapes in the checkpoint at `path` (any supported format), from its metadata alone: the
    safetensors header, the legacy msgpack index and each TensorStore array's .zarray, or Orbax's metadata."""
    fmt, location = detect_format(path)
    if fmt == "hf_safetensors":
        with safe_open(location, framework="numpy") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    else:
        shapes = _shapes(t5x.legacy_shapes(location) if fmt == "t5x_legacy" else t5x.orbax_shapes(location))
    return CheckpointShapes(fmt, location, shapes)


def shape_problems(found: CheckpointShapes, config: T5Config) -> list[str]:
    """One line per parameter of `found` that does not fit `config` (missing, unexpected or of another
    shape), in the checkpoint's own names and layout; empty when it fits."""
    if found.format == "hf_safetensors":
        expected, ignored = hf.expected_shapes(config), set(hf.IGNORED)
    else:
        expected, ignored = _shapes(param_shapes(config)), set()
    got = found.shapes
    return ([f"{name} missing" for name in sorted(set(expected) - set(got))]
            + [f"{name} unexpected" for name in sorted(set(got) - set(expected) - ignored)]
            + [f"{name} {got[name]} (expected {shape})" for name, shape in sorted(expected.items())
               if name in got and tuple(got[name]) != tuple(shape)])


def load_t5_params(path: str, config: T5Config) -> dict:
    """Reads T5 1.1 weights from any supported checkpoint into the T5X tree (float32 numpy arrays)."""
    start = time.time()
    fmt, location = detect_format(path)
    logging.info("Reading T5 weights from %s (%s)", location, fmt)
    if fmt == "hf_safetensors":
        params = hf.params_from_hf(load_file(location), config)
    else:
        target = t5x.read_legacy(location) if fmt == "t5x_legacy" else t5x.read_orbax(location)
        check_params(target, config, f"{path} ({fmt})")
        params = jax.tree.map(lambda x: np.asarray(x, np.float32), target)
    count = sum(x.size for x in jax.tree.leaves(params))
    logging.info("Read %.1fM T5 params in %.1f s", count / 1e6, time.time() - start)
    return params


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """{"encoder/layers_0/.../kernel": shape} of a tree of arrays or of shape tuples."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, tuple))
    return {"/".join(str(k.key) for k in path): leaf if isinstance(leaf, tuple) else tuple(np.shape(leaf))
            for path, leaf in leaves}


def check_params(params: Any, config: T5Config, source: str) -> None:
    """Raises one ValueError naming every missing, unexpected and wrong-shape param of `params`."""
    expected, got = _shapes(param_shapes(config)), _shapes(params)
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = [f"{name} {got[name]} (expected {shape})" for name, shape in sorted(expected.items())
             if name in got and got[name] != shape]
    problems = [f"{what} {items}" for what, items in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if items]
    if problems:
        raise UserError(f"{source} does not fit T5 {_describe(config)}: " + "; ".join(problems))


def _describe(config: T5Config) -> str:
    return (f"E={config.d_model} H={config.num_heads} D={config.head_dim} F={config.d_ff} V={config.vocab_size} "
            f"layers={config.num_encoder_layers}+{config.num_decoder_layers}")

"""T5X checkpoints, read without t5x: the legacy msgpack + TensorStore layout and the Orbax one.

Legacy (`checkpoint_<step>/checkpoint`): a flax-msgpack dict `{version, optimizer: {target, state}}`.
A leaf is an inline array (msgpack ext type 1) or a TensorStore zarr spec whose kvstore path is
relative to the step dir (the param path with `/` -> `.`, gzip chunks). As T5X does, the stored
spec's chunking and compressor are dropped before opening (the array's own .zarray says them), so
arrays rewritten with other chunks still open. Format version 2 and older (before mid-2021) stored
bfloat16 arrays as uint16 bit patterns; those are reinterpreted as bfloat16. Checkpoints written to GCS
carry a dummy bucket; the real one comes from the path the user gives, and `gs://` paths are handed
to TensorStore's gcs driver as they are. Orbax (`checkpoint_<step>/state/`): a PyTree checkpoint of
`{target, state}`. Only `target` (the model params) is read; optimizer slots are skipped.
"""

import os
import re
from typing import Any, Mapping

import jax
import ml_dtypes
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from flax import serialization

from gbair import UserError

LEGACY_FILE = "checkpoint"
ORBAX_ITEM = "state"
_GCS = re.compile(r"gs://([^/]+)/?(.*)", re.DOTALL)


def _is_spec(leaf: Any) -> bool:
    return isinstance(leaf, Mapping) and {"driver", "kvstore"} <= set(leaf)


def absolute_spec(spec: Mapping[str, Any], step_dir: str) -> dict:
    """A legacy leaf's TensorStore spec with its relative path resolved against `step_dir` (local or gs://)."""
    spec = dict(spec)
    if isinstance(spec.get("metadata"), Mapping):
        spec["metadata"] = {k: v for k, v in spec["metadata"].items() if k not in ("chunks", "compressor")}
    kvstore = dict(spec.pop("kvstore"))
    relative = kvstore.get("path") or spec.pop("path", None)  # tensorstore < 0.1.14 kept it at the top
    spec.pop("path", None)
    if not relative:
        raise UserError(f"{step_dir}: TensorStore spec without a path: {spec}")
    gcs = _GCS.fullmatch(step_dir)
    if gcs:
        kvstore = {"driver": "gcs", "bucket": gcs.group(1), "path": f"{gcs.group(2).rstrip('/')}/{relative}".lstrip("/")}
    elif kvstore.get("driver") in ("file", "gfile", "gcs"):
        kvstore = {"driver": "file", "path": os.path.join(step_dir, relative)}
    else:
        raise UserError(f"{step_dir}: unsupported TensorStore kvstore driver {kvstore.get('driver')!r} "
                         f"(expected file, gfile or gcs)")
    return {**spec, "kvstore": kvstore}


def _read_bytes(path: str) -> bytes:
    gcs = _GCS.fullmatch(path)
    if not gcs:
        with open(path, "rb") as f:
            return f.read()
    store = ts.KvStore.open({"driver": "gcs", "bucket": gcs.group(1)}).result()
    result = store.read(gcs.group(2)).result()
    if result.state != "value":
        raise FileNotFoundError(f"{path}: not found")
    return result.value


def _legacy_target(step_dir: str) -> tuple[int, dict]:
    """(format version, the `target` tree of the msgpack index: inline arrays and TensorStore specs)."""
    contents = serialization.msgpack_restore(_read_bytes(os.path.join(step_dir, LEGACY_FILE)))
    if not isinstance(contents, Mapping):
        raise UserError(f"{step_dir}/{LEGACY_FILE}: expected a msgpack dict, got {type(contents).__name__}")
    version = contents.get("version", 0)
    optimizer = contents.get("optimizer") if version else contents
    if not isinstance(optimizer, Mapping) or "target" not in optimizer:
        raise UserError(f"{step_dir}/{LEGACY_FILE}: no optimizer/target params (version {version}, "
                         f"keys {sorted(contents)})")
    return version, dict(optimizer["target"])


def legacy_shapes(step_dir: str) -> dict:
    """The `target` tree of a legacy T5X checkpoint with each param's shape as its leaf, from the msgpack
    index and each TensorStore array's metadata (.zarray): no array data is read."""
    _, target = _legacy_target(step_dir)
    tree = jax.tree.map(lambda leaf: ts.open(absolute_spec(leaf, step_dir), open=True) if _is_spec(leaf)
                        else tuple(np.shape(leaf)), target, is_leaf=_is_spec)
    is_future = lambda x: isinstance(x, ts.Future)  # noqa: E731
    return jax.tree.map(lambda x: tuple(x.result().shape) if is_future(x) else x, tree, is_leaf=is_future)


def read_legacy(step_dir: str) -> dict:
    """The `target` params of a legacy T5X checkpoint dir, as a nested dict of numpy arrays (stored dtype)."""
    version, target = _legacy_target(step_dir)

    # All TensorStore opens, then all reads, are issued before waiting on any: concurrent I/O.
    tree = jax.tree.map(lambda leaf: ts.open(absolute_spec(leaf, step_dir), open=True, read=True)
                        if _is_spec(leaf) else np.asarray(leaf), target, is_leaf=_is_spec)
    is_future = lambda x: isinstance(x, ts.Future)  # noqa: E731
    tree = jax.tree.map(lambda x: x.result().read() if is_future(x) else x, tree, is_leaf=is_future)
    tree = jax.tree.map(lambda x: x.result() if is_future(x) else x, tree, is_leaf=is_future)
    if version <= 2:  # bfloat16 was written as its uint16 bit pattern; no T5 parameter is an integer
        tree = jax.tree.map(lambda x: x.view(ml_dtypes.bfloat16) if x.dtype == np.uint16 else x, tree)
    return tree


def _orbax_target(step_dir: str) -> tuple[str, bool, dict]:
    """(the Orbax item dir, whether the tree keeps the legacy `optimizer` level, the `target` metadata tree)."""
    item = os.path.join(step_dir, ORBAX_ITEM)
    tree = ocp.PyTreeCheckpointer().metadata(item).item_metadata.tree
    wrapped = "optimizer" in tree  # some writers keep the legacy `optimizer` level
    if "target" not in (tree["optimizer"] if wrapped else tree):
        raise UserError(f"{item}: no `target` params in the Orbax tree (keys {sorted(tree)})")
    return item, wrapped, (tree["optimizer"] if wrapped else tree)["target"]


def orbax_shapes(step_dir: str) -> dict:
    """The `target` tree of an Orbax T5X checkpoint with each param's shape as its leaf (metadata only)."""
    _, _, target = _orbax_target(step_dir)
    return jax.tree.map(lambda leaf: tuple(leaf.shape), target)


def read_orbax(step_dir: str) -> dict:
    """The `target` params of an Orbax T5X checkpoint (`step_dir/state/`), without the optimizer state."""
    item, wrapped, target = _orbax_target(step_dir)
    checkpointer = ocp.PyTreeCheckpointer()
    wanted = {"optimizer": {"target": target}} if wrapped else {"target": target}
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
    restored = checkpointer.restore(item, args=ocp.args.PyTreeRestore(wanted, as_numpy, partial_restore=True))
    return (restored["optimizer"] if wrapped else restored)["target"]

"""Orbax checkpoints of prompt-tuning state, with the learning rate in force (TracIn needs it).

Each checkpoint holds the prompt, the optimizer state and a small JSON record
{step, learning_rate, fingerprint, validation metrics if a validation split was given}; the learning
rate is the mean rate of the updates since the previous checkpoint (gbair.train.trainer.
interval_learning_rate). Only the prompt is trained, so checkpoints are tiny and we keep all of them.
"""

import dataclasses
import os
import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


@dataclasses.dataclass(frozen=True)
class PromptCheckpoint:
    step: int
    learning_rate: float
    prompt: np.ndarray  # [P, E] float32
    validation: dict | None = None  # validation metrics at this step, when training recorded them


def manager(directory: os.PathLike) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=None, enable_async_checkpointing=False, create=True)
    handlers = {"state": ocp.StandardCheckpointHandler(), "record": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(pathlib.Path(directory).absolute(), options=options, item_handlers=handlers)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, record: dict) -> None:
    """Saves `state` (a pytree with "prompt" and "opt_state") and the JSON `record` at `step`."""
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)))
    mngr.wait_until_finished()


def read_record(mngr: ocp.CheckpointManager, step: int) -> dict:
    return mngr.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore())).record


def restore_state(mngr: ocp.CheckpointManager, step: int, abstract_state: Any) -> Any:
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))).state


def load_prompt_checkpoints(directory: os.PathLike) -> list[PromptCheckpoint]:
    """All checkpoints under `directory`, oldest first: the TracIn inputs (prompt, learning rate)."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no checkpoint directory at {directory}")
    mngr = manager(directory)
    out = []
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    for step in mngr.all_steps():
        stored = mngr.item_metadata(step)["state"]
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), stored)
        state = restore_state(mngr, step, target)
        record = read_record(mngr, step)
        out.append(PromptCheckpoint(step, float(record["learning_rate"]), np.asarray(state["prompt"], np.float32),
                                    record.get("validation")))
    if not out:
        raise FileNotFoundError(f"{directory} holds no checkpoints")
    return out

"""Orbax checkpoints of prompt-tuning state, with the learning rate in force (TracIn needs it).

Each checkpoint holds the prompt, the optimizer state and a small JSON record
{step, learning_rate, fingerprint, and, if a validation split was given, its metrics and class probabilities}; the learning
rate is the mean rate of the updates since the previous checkpoint (gbair.train.trainer.
interval_learning_rate). Only the prompt is trained, so checkpoints are tiny and we keep all of them.

A damaged step (a truncated array file, a garbage record, a deleted folder: what a crash or a full
disk leaves) is reported as `DamagedCheckpoint`, naming the step folder and what to delete.
"""

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from gbair import UserError, files
from gbair.models.prompts import PromptCheckpoint


class DamagedCheckpoint(UserError):
    """A checkpoint step that cannot be read back."""


def _damaged(directory: os.PathLike, step: int, error: Exception, delete: os.PathLike | None) -> DamagedCheckpoint:
    reason = (str(error).strip().splitlines() or [""])[0][:200]
    return DamagedCheckpoint(f"{files.path(directory) / str(step)}: damaged checkpoint ({type(error).__name__}: "
                             f"{reason}); delete {delete or directory} to redo that training run")


def manager(directory: os.PathLike) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=None, enable_async_checkpointing=False, create=True)
    handlers = {"state": ocp.StandardCheckpointHandler(), "record": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(files.path(directory), options=options, item_handlers=handlers)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, record: dict) -> None:
    """Saves `state` (a pytree with "prompt" and "opt_state") and the JSON `record` at `step`."""
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)))
    mngr.wait_until_finished()


def read_record(mngr: ocp.CheckpointManager, step: int) -> dict:
    """The step's JSON record; DamagedCheckpoint if it is missing or not a JSON object."""
    try:
        record = mngr.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore())).record
    except Exception as e:  # pylint: disable=broad-except  (Orbax, the file system and JSON raise many kinds)
        raise _damaged(mngr.directory, step, e, None) from e
    if not isinstance(record, dict):
        raise _damaged(mngr.directory, step, ValueError(f"record is {type(record).__name__}, not an object"), None)
    return record


def restore_state(mngr: ocp.CheckpointManager, step: int, abstract_state: Any) -> Any:
    """The step's state, shaped like `abstract_state`; DamagedCheckpoint if it cannot be read."""
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    try:
        return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))).state
    except Exception as e:  # pylint: disable=broad-except  (Orbax and TensorStore raise many kinds)
        raise _damaged(mngr.directory, step, e, None) from e


def load_prompt_checkpoints(directory: os.PathLike, delete_hint: os.PathLike | None = None) -> list[PromptCheckpoint]:
    """All checkpoints under `directory`, oldest first: the TracIn inputs (prompt, learning rate).

    DamagedCheckpoint if any step is unreadable (TracIn needs the whole trajectory): its message says
    to delete `delete_hint` (default `directory`), the folder whose run must then be redone."""
    directory = files.path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no checkpoint directory at {directory}")
    mngr = manager(directory)
    out = []
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    for step in mngr.all_steps():
        try:
            stored = mngr.item_metadata(step)["state"]
            target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), stored)
            state = restore_state(mngr, step, target)
            record = read_record(mngr, step)
            learning_rate = float(record["learning_rate"])
        except Exception as e:  # pylint: disable=broad-except
            raise _damaged(directory, step, e.__cause__ or e, delete_hint) from e
        probabilities = record.get("validation_probabilities")
        out.append(PromptCheckpoint(step, learning_rate, np.asarray(state["prompt"], np.float32),
                                    record.get("validation"),
                                    None if probabilities is None else np.asarray(probabilities, np.float32)))
    if not out:
        raise FileNotFoundError(f"{directory} holds no checkpoints")
    return out

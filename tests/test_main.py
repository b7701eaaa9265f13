"""`python -m gbair.main` end to end on a tiny random BERT and the SpamAssassin fixtures."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
from absl import flags

from gbair import cli, main, scalars

REPO = pathlib.Path(__file__).resolve().parent.parent


def run_main(workdir, *extra, model_dir, data_dir):
    args = [sys.executable, "-m", "gbair.main", "--gin_file=configs/runs/train.gin", f"--workdir={workdir}",
            f"--gin.minilm_classifier.model_dir='{model_dir}'",
            "--gin.minilm_classifier.prompt_length=4", "--gin.minilm_classifier.max_length=16",
            f"--gin.spam_assassin_splits.data_dir='{data_dir}'",
            "--gin.spam_assassin_splits.sizes={'train': 4, 'validation': 2, 'test': 2}",
            "--gin.TrainConfig.batch_size=2", "--gin.TrainConfig.num_epochs=2", *extra]
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_train_run_writes_metrics_prompt_and_checkpoints_then_resumes(tmp_path, tiny_bert_dir, spam_fixture_dir):
    first = run_main(tmp_path, model_dir=tiny_bert_dir, data_dir=spam_fixture_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test_accuracy", "test_f1", "test_auc", "validation_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["steps"] == 4 and metrics["checkpoint_steps"] == [2, 4] and metrics["wall_time_s"] > 0
    prompt = np.load(tmp_path / "prompt.npy", allow_pickle=False)
    assert prompt.shape == (4, 32) and prompt.dtype == np.float32
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "4"]
    assert "step 4/4" in first.stderr
    scalars = read_scalars(tmp_path / "tensorboard")
    assert sorted(scalars["train/loss"]) == [4]  # log_every 5; no validation during training (select_by last)
    assert all(v > 0 for v in scalars["train/examples_per_s"].values())
    assert "checkpoint_manager.py" not in first.stderr  # library INFO chatter is filtered out
    record = json.loads((tmp_path / "gin_config.json").read_text())  # what was typed, handed to the job
    assert record["gin_files"] == [str(REPO / "configs/runs/train.gin")]
    assert "TrainConfig.num_epochs = 2" in record["gin_bindings"] and len(record["gin_bindings"]) == 7

    again = run_main(tmp_path, model_dir=tiny_bert_dir, data_dir=spam_fixture_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resuming from step 4 of 4" in again.stderr
    resumed = json.loads((tmp_path / "metrics.json").read_text())
    assert {k: v for k, v in resumed.items() if k != "wall_time_s"} == {
        k: v for k, v in metrics.items() if k != "wall_time_s"}
    np.testing.assert_array_equal(np.load(tmp_path / "prompt.npy"), prompt)


def read_scalars(logdir) -> dict[str, dict[int, float]]:
    """tag -> {step: value} of every event file under `logdir`, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    events = EventAccumulator(str(logdir))
    events.Reload()
    return {tag: {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)}
            for tag in events.Tags()["tensors"]}


def test_missing_data_says_how_to_install(tmp_path, tiny_bert_dir):
    result = run_main(tmp_path, model_dir=tiny_bert_dir, data_dir=tmp_path / "nowhere")
    assert result.returncode != 0
    assert "nowhere" in result.stderr and "python -m gbair.assets" in result.stderr
    assert not (tmp_path / "metrics.json").exists()


def test_missing_gin_file_is_a_usage_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "gbair.main", "--gin_file=configs/runs/nope.gin",
                             f"--workdir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "--gin_file=configs/runs/nope.gin: no such file" in result.stderr


def test_every_entry_point_lists_debug_in_its_helpshort(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["some_entry_point.py"])
    monkeypatch.setattr(cli.app, "run", lambda *args, **kwargs: None)  # only cli.run's flag set-up
    cli.run(lambda argv: None, sys.argv)
    assert "--[no]debug: Show the full traceback" in flags.FLAGS.module_help("some_entry_point.py")


def test_tensorflow_start_up_noise_is_held_back_and_every_other_line_passes(capfd):
    with scalars._without_startup_noise():  # pylint: disable=protected-access
        os.write(2, b"I0000 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n")
        os.write(2, b"E0000 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n")
        os.write(2, b"E0000 something else went wrong\n")
    err = capfd.readouterr().err
    assert err == "E0000 something else went wrong\n"


def test_gin_dot_flags_become_bindings():
    assert main.rewrite_gin_args(["prog", "--gin.TrainConfig.seed=3", "--workdir=x", "--gin_file=a.gin"]) == [
        "prog", "--gin_bindings=TrainConfig.seed = 3", "--workdir=x", "--gin_file=a.gin"]

"""Prompt tuning on a tiny random BERT: loss goes down, backbone stays bit-identical, resume is exact."""

import dataclasses
import math
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gbair import UserError
from gbair.data.dataset import TextDataset
from gbair.models.prompts import PromptCheckpoint
from gbair.classifiers import minilm_classifier
from gbair.train import prompt_checkpoints, trainer
from tests.toy_model import toy_model


def toy_dataset(n: int = 36) -> TextDataset:
    ham = ["notes from the project meeting on tuesday", "can you review my patch to the parser",
           "lunch with the team tomorrow at noon"]
    spam = ["win a free cruise now click here", "cheap pills no prescription needed",
            "you have won cash prize claim today"]
    texts = [f"{(spam if i % 2 else ham)[i % 3]} {i}" for i in range(n)]
    return TextDataset(tuple(f"toy/{i}" for i in range(n)), tuple(texts), np.arange(n) % 2,
                       ("toy",) * n, ("ham", "spam"))


@pytest.fixture(scope="module")
def model(tiny_bert_dir):
    return minilm_classifier(["ordinary work email", "spam advertising"], class_names=["ham", "spam"],
                             prompt_length=4, max_length=16, model_dir=tiny_bert_dir)


CONFIG = trainer.TrainConfig(optimizer="adam", learning_rate=0.05, batch_size=8, num_epochs=2,
                             checkpoint_every=2, eval_batch_size=16, log_every=100, seed=0)


def mean_loss(model, prompt, dataset):
    batch = dict(model.featurize(dataset.texts), label=dataset.labels)
    return float(np.mean(model.loss_fn(model.params, prompt, batch)))


@pytest.mark.parametrize("optimizer,lr", [("adam", 0.05), ("adafactor", 0.3)])
def test_training_lowers_loss_and_leaves_backbone_bit_identical(model, optimizer, lr):
    data = toy_dataset()
    before = jax.tree.map(np.array, model.params)
    config = dataclasses.replace(CONFIG, optimizer=optimizer, learning_rate=lr, num_epochs=4)
    result = trainer.train(model, data, config)
    initial = model.init_prompt(jax.random.key(config.seed))
    trained = mean_loss(model, result.prompt, data)
    assert trained < mean_loss(model, initial, data) - 0.1 and trained < np.log(2) - 0.04  # beats chance
    jax.tree.map(np.testing.assert_array_equal, before, model.params)
    assert result.prompt.shape == model.prompt_shape and result.prompt.dtype == np.float32


def test_ragged_last_batch_compiles_once(model):
    traces = []

    def counting_loss(params, prompt, batch):
        traces.append(batch["input_ids"].shape)
        return model.loss_fn(params, prompt, batch)

    data = toy_dataset(21)  # 8 + 8 + 5: the last batch is padded, not a new shape
    trainer.train(dataclasses.replace(model, loss_fn=counting_loss), data, CONFIG)
    assert traces == [(8, 16)]


def test_each_epoch_visits_every_example_once():
    config = dataclasses.replace(CONFIG, batch_size=8)
    for epoch in range(2):
        seen = []
        for step in range(epoch * 3, epoch * 3 + 3):
            indices, weights = trainer.batch_indices(21, config, step)
            seen.extend(indices[weights > 0])
            assert len(indices) == 8
        assert sorted(seen) == list(range(21))


def test_resume_after_crash_equals_uninterrupted_run(model, tmp_path, monkeypatch):
    data = toy_dataset()
    reference = trainer.train(model, data, CONFIG, tmp_path / "reference")

    real_save = prompt_checkpoints.save

    def crash_after_step_4(mngr, step, state, record):
        real_save(mngr, step, state, record)
        if step == 4:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(prompt_checkpoints, "save", crash_after_step_4)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(model, data, CONFIG, tmp_path / "resumed")
    monkeypatch.setattr(prompt_checkpoints, "save", real_save)
    resumed = trainer.train(model, data, CONFIG, tmp_path / "resumed")

    np.testing.assert_array_equal(resumed.prompt, reference.prompt)
    assert reference.checkpoint_steps == resumed.checkpoint_steps == (2, 4, 6, 8, 10)
    saved = prompt_checkpoints.load_prompt_checkpoints(tmp_path / "resumed")
    assert [c.step for c in saved] == [2, 4, 6, 8, 10]
    assert all(c.learning_rate == CONFIG.learning_rate for c in saved)
    np.testing.assert_array_equal(saved[-1].prompt, reference.prompt)


def test_resume_refuses_checkpoints_of_another_run(model, tmp_path):
    data = toy_dataset()
    trainer.train(model, data, dataclasses.replace(CONFIG, num_epochs=1), tmp_path)
    with pytest.raises(ValueError, match="different run"):
        trainer.train(model, data, dataclasses.replace(CONFIG, num_epochs=1, seed=1), tmp_path)


def test_predict_does_not_depend_on_batch_size(model):
    data = toy_dataset(13)
    prompt = model.init_prompt(jax.random.key(0))
    small = trainer.predict(model, prompt, data, batch_size=4)
    large = trainer.predict(model, prompt, data, batch_size=32)
    np.testing.assert_allclose(small, large, atol=1e-6)
    np.testing.assert_allclose(small.sum(1), 1.0, atol=1e-6)
    assert small.shape == (13, 2)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="TrainConfig.optimizer='sgd'"):
        trainer.TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="TrainConfig.schedule='linear'"):
        trainer.TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="TrainConfig.select_by='val'"):
        trainer.TrainConfig(select_by="val")
    with pytest.raises(ValueError, match="TrainConfig.num_steps=-1"):
        trainer.TrainConfig(num_steps=-1)
    with pytest.raises(ValueError, match="TrainConfig.batch_size=0"):
        trainer.TrainConfig(batch_size=0)


def warmup_cosine_by_hand(peak: float, warmup: int, total: int):
    """The schedule's definition written out: linear 0 -> peak over `warmup` steps, cosine to 0 at `total`."""
    def rate(t):
        if t < warmup:
            return peak * t / warmup
        return peak * 0.5 * (1.0 + math.cos(math.pi * (t - warmup) / (total - warmup)))
    return rate


def test_checkpoint_learning_rate_is_the_mean_rate_of_the_updates_it_stands_for(model, tmp_path):
    config = dataclasses.replace(CONFIG, schedule="warmup_cosine", learning_rate=0.05, warmup_fraction=0.2,
                                 num_steps=10, checkpoint_every=3)
    trainer.train(model, toy_dataset(), config, tmp_path)
    saved = prompt_checkpoints.load_prompt_checkpoints(tmp_path)
    rate = warmup_cosine_by_hand(0.05, warmup=2, total=10)
    bounds = [0, 3, 6, 9, 10]
    assert [c.step for c in saved] == bounds[1:]
    for checkpoint, begin, end in zip(saved, bounds, bounds[1:]):
        assert checkpoint.learning_rate == pytest.approx(np.mean([rate(t) for t in range(begin, end)]), rel=1e-5)


def test_the_optimizer_follows_the_schedule(model, tmp_path):
    """Warmup starts at rate 0: the first update leaves the prompt as initialised, the second moves it."""
    config = dataclasses.replace(CONFIG, schedule="warmup_cosine", warmup_fraction=0.5, num_steps=4, checkpoint_every=1)
    trainer.train(model, toy_dataset(), config, tmp_path)
    first, second = prompt_checkpoints.load_prompt_checkpoints(tmp_path)[:2]
    initial = np.asarray(model.init_prompt(jax.random.key(config.seed)))
    np.testing.assert_array_equal(first.prompt, initial)
    assert first.learning_rate == 0.0 and np.abs(second.prompt - initial).max() > 1e-4


def test_training_steps_do_not_shrink_when_examples_are_removed(model):
    config = dataclasses.replace(CONFIG, num_steps=7, checkpoint_every=3)
    full, reduced = trainer.train(model, toy_dataset(36), config), trainer.train(model, toy_dataset(20), config)
    assert full.steps == reduced.steps == 7
    epochs = trainer.train(model, toy_dataset(20), dataclasses.replace(CONFIG, num_steps=0))
    assert epochs.steps == 3 * CONFIG.num_epochs  # without num_steps: ceil(20 / 8) steps per epoch


def test_checkpoints_record_validation_metrics_and_selection_picks_the_best(model, tmp_path):
    data, validation = toy_dataset(36), toy_dataset(12)
    config = dataclasses.replace(CONFIG, num_steps=8, checkpoint_every=2, select_by="loss")
    trainer.train(model, data, config, tmp_path, validation=validation)
    saved = prompt_checkpoints.load_prompt_checkpoints(tmp_path)
    for checkpoint in saved:  # the recorded numbers are the checkpoint's own
        fresh = trainer.evaluate(model, checkpoint.prompt, validation)
        assert checkpoint.validation == pytest.approx(fresh)
        fresh_probabilities = trainer.predict(model, checkpoint.prompt, validation)  # bit-identical: same pass
        np.testing.assert_array_equal(checkpoint.validation_probabilities, fresh_probabilities)
        np.testing.assert_array_equal(trainer.validation_probabilities(model, checkpoint, validation),
                                      fresh_probabilities)
        unrecorded = dataclasses.replace(checkpoint, validation_probabilities=None)  # an older gbair's checkpoint
        np.testing.assert_array_equal(trainer.validation_probabilities(model, unrecorded, validation),
                                      fresh_probabilities)
    assert trainer.select_checkpoint(saved, "loss").validation["loss"] == min(c.validation["loss"] for c in saved)
    assert trainer.select_checkpoint(saved, "last") is saved[-1]
    with pytest.raises(ValueError, match="TrainConfig.select_by='auc' needs a validation split"):
        trainer.train(model, data, dataclasses.replace(config, select_by="auc"))


def test_selection_rules_and_ties():
    def at(step, **validation):
        return PromptCheckpoint(step, 0.1, np.zeros((1, 1), np.float32), validation)
    saved = [at(1, auc=0.9, loss=0.5), at(2, auc=0.95, loss=0.4), at(3, auc=0.95, loss=0.45)]
    assert trainer.select_checkpoint(saved, "auc").step == 2  # tie: the earlier step
    assert trainer.select_checkpoint(saved, "loss").step == 2
    assert trainer.select_checkpoint(saved, "last").step == 3
    with pytest.raises(ValueError, match="steps \\[1, 2, 3\\] have no validation f1"):
        trainer.select_checkpoint(saved, "f1")


def truncate_array_files(step_dir):
    for path in (step_dir / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(path.read_bytes()[:7])


DAMAGES = {  # what a crash or a full disk leaves in a step folder
    "truncated arrays": truncate_array_files,
    "garbage record": lambda step_dir: (step_dir / "record" / "metadata").write_text("{not json"),
    "deleted state": lambda step_dir: shutil.rmtree(step_dir / "state"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_readable_one(model, tmp_path, damage, caplog):
    data = toy_dataset()
    reference = trainer.train(model, data, CONFIG, tmp_path / "reference")
    trainer.train(model, data, CONFIG, tmp_path / "run")
    DAMAGES[damage](tmp_path / "run" / "10")
    with pytest.raises(prompt_checkpoints.DamagedCheckpoint, match=r"run/10: damaged checkpoint .*delete"):
        prompt_checkpoints.load_prompt_checkpoints(tmp_path / "run")
    resumed = trainer.train(model, data, CONFIG, tmp_path / "run")  # redoes steps 9-10 from step 8
    assert "resuming from step 8" in caplog.text
    np.testing.assert_array_equal(resumed.prompt, reference.prompt)
    assert [c.step for c in prompt_checkpoints.load_prompt_checkpoints(tmp_path / "run")] == [2, 4, 6, 8, 10]


def test_no_readable_checkpoint_names_the_directory_to_delete(model, tmp_path):
    data = toy_dataset()
    config = dataclasses.replace(CONFIG, num_epochs=1, checkpoint_every=0)  # a single checkpoint, step 5
    trainer.train(model, data, config, tmp_path)
    DAMAGES["garbage record"](tmp_path / "5")
    with pytest.raises(UserError, match=f"no readable checkpoint .*delete {tmp_path}"):
        trainer.train(model, data, config, tmp_path)


def test_a_diverging_run_stops_naming_the_run_and_the_step_and_saves_no_diverged_checkpoint(tmp_path):
    model = toy_model(num_classes=2)
    initial = model.init_prompt(jax.random.key(CONFIG.seed))

    def exploding(params, prompt, batch):  # NaN once the prompt has moved away from its start
        return jnp.where(jnp.abs(prompt - initial).max() > 0.5, jnp.nan, model.loss_fn(params, prompt, batch))

    config = dataclasses.replace(CONFIG, learning_rate=0.3, num_steps=8, checkpoint_every=1)
    with pytest.raises(UserError) as diverged:
        trainer.train(dataclasses.replace(model, loss_fn=exploding), toy_dataset(), config, tmp_path / "run" / "ckpt")
    message = str(diverged.value)
    step = int(re.search(r"became nan at step (\d+) ", message).group(1))
    assert message.startswith(f"{tmp_path / 'run'}: the training loss became nan at step {step} ")
    assert "learning_rate=0.3" in message and "try a lower TrainConfig.learning_rate" in message
    saved = prompt_checkpoints.load_prompt_checkpoints(tmp_path / "run" / "ckpt")  # every step before it, all finite
    assert step > 1 and [c.step for c in saved] == list(range(1, step))
    assert all(np.isfinite(c.prompt).all() for c in saved)

    def nan_gradient(params, prompt, batch):  # a finite loss whose gradient is NaN: the prompt becomes NaN
        return jnp.where(True, model.loss_fn(params, prompt, batch), jnp.sqrt(-1.0 - jnp.sum(prompt ** 2)))

    with pytest.raises(UserError, match=r"^training: the prompt became NaN or infinite at step 1 "):
        trainer.train(dataclasses.replace(model, loss_fn=nan_gradient), toy_dataset(), dataclasses.replace(
            config, num_steps=1))
    with pytest.raises(UserError, match="TrainConfig.learning_rate=inf, expected a finite number > 0"):
        trainer.TrainConfig(learning_rate=float("inf"))


def test_a_prompt_that_predicts_one_class_for_all_of_validation_is_warned_and_marked(model, caplog):
    forced = dataclasses.replace(model, logits_fn=lambda p, prompt, b: model.logits_fn(p, prompt, b) + jnp.array(
        [0.0, 1e4]))
    checkpoint, data = PromptCheckpoint(1, 0.1, np.asarray(model.init_prompt(jax.random.key(0)))), toy_dataset(6)
    with caplog.at_level("WARNING"):
        assert trainer.warn_if_one_class(forced, checkpoint, data, "cells/x/corrupted") == 1
    assert "cells/x/corrupted: the trained prompt predicts 'spam' for every validation example" in caplog.text
    caplog.clear()
    assert trainer.warn_if_one_class(forced, checkpoint, data.subset([1, 3, 5]), "run") == 0  # all spam: right
    assert not caplog.text

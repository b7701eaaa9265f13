"""The paper configs: clear one-line failures without paths, and one full G-BAIR iteration end to end
with a tiny random T5 1.1 (a legacy T5X checkpoint), a SentencePiece model trained here, and the
ParlAI safety fixtures read through seqio."""

import csv
import dataclasses
import io
import pathlib
import re
import subprocess
import sys

import gin
import jax
import numpy as np
import pytest
import sentencepiece

from gbair import UserError, config
from gbair.data import safety
from gbair.explain import RunExplainer
from gbair.models import t5
from gbair.train import prompt_checkpoints
from tests.test_pretrained import write_legacy

REPO = pathlib.Path(__file__).parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "safety"
TINY = t5.T5Config(vocab_size=128, d_model=16, num_heads=2, head_dim=8, d_ff=32, num_encoder_layers=1,
                   num_decoder_layers=1)


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def run(experiment: str, workdir: pathlib.Path, bindings: list[str]) -> None:
    config.execute(str(workdir), config.parse([f"configs/experiments/{experiment}"], bindings))


def test_paper_config_without_paths_names_the_missing_setting(tmp_path):
    with pytest.raises(UserError, match=r"--gin\.(CHECKPOINT|DATA_DIR)="):
        run("paper_bad.gin", tmp_path, [])
    with pytest.raises(UserError, match=r"--gin\.DATA_DIR="):
        run("paper_bad.gin", tmp_path, [f"CHECKPOINT = '{tmp_path}/nowhere'"])
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/nowhere"):
        run("paper_bad.gin", tmp_path, [f"CHECKPOINT = '{tmp_path}/nowhere'", f"DATA_DIR = '{FIXTURES}'",
                                        f"VOCABULARY = '{tmp_path}/nowhere'"])


def test_main_prints_one_line_for_a_missing_checkpoint(tmp_path):
    command = [sys.executable, "-m", "gbair.main", "--gin_file=configs/experiments/paper_bad.gin",
               f"--workdir={tmp_path}/run", f"--gin.DATA_DIR='{FIXTURES}'", f"--gin.CHECKPOINT='{tmp_path}/nope'",
               f"--gin.VOCABULARY='{tmp_path}/nope.model'"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("gbair: error: SentencePiece model") and f"{tmp_path}/nope.model" in last


def tiny_vocabulary(path: pathlib.Path) -> None:
    """A unigram SentencePiece model with T5's special ids (pad 0, EOS 1, unk 2), trained on the fixtures."""
    texts = [text for kind in safety.PARLAI_KINDS
             for split in safety.load_parlai_single_turn(FIXTURES, kind=kind).values() for text in split.texts]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(texts + ["ok", "not ok"]), model_writer=model,
                                             vocab_size=100, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                             hard_vocab_limit=False, minloglevel=2)
    path.write_bytes(model.getvalue())


def test_one_gbair_iteration_end_to_end_with_tiny_t5_on_the_paper_recipe(tmp_path):
    """The paper config's own recipe (constant Adafactor, fixed steps, a checkpoint per epoch, the best
    validation F1) at tiny scale: 3 epochs of the fixtures' 12 training examples at batch 4."""
    write_legacy(str(tmp_path / "t5" / "checkpoint_1000"), t5.init_params(TINY, jax.random.key(0)))
    tiny_vocabulary(tmp_path / "tiny.model")
    run("paper_parlai_safety.gin", tmp_path / "run", size_bindings(TINY) + [
        f"CHECKPOINT = '{tmp_path}/t5/checkpoint_1000'", f"VOCABULARY = '{tmp_path}/tiny.model'",
        f"DATA_DIR = '{FIXTURES}'", "t5_1_1_classifier.prompt_length = 4", "t5_1_1_classifier.max_length = 32",
        "Experiment.corruption_rates = [0.25]", "Experiment.seeds = [0]", "Experiment.strategy_names = ['tracin']",
        "TrainConfig.batch_size = 4", "TRAIN_STEPS = 9", "STEPS_PER_CHECKPOINT = 3",
        "RecoveryConfig.iterations = 1", "RecoveryConfig.flag_count = 2"])
    gin.clear_config()
    explainer = RunExplainer(tmp_path / "run")  # rebuilt from config.gin: T5's operative config parses back
    recipe = explainer.experiment.train_config
    assert (recipe.optimizer, recipe.learning_rate, recipe.schedule, recipe.num_steps, recipe.checkpoint_every,
            recipe.select_by) == ("adafactor", 0.3, "constant", 9, 3, "f1")
    with open(tmp_path / "run" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    for dataset in ("parlai_standard", "parlai_adversarial"):
        mine = {int(r["iteration"]): r for r in rows if r["dataset"] == dataset and r["strategy"] == "tracin"}
        assert sorted(mine) == [0, 1], rows
        assert int(mine[0]["n_train"]) == 12 and int(mine[0]["n_corrupted_remaining"]) == 3
        assert int(mine[1]["n_train"]) == 10  # two flagged and removed
        assert 0.0 <= float(mine[1]["test_accuracy"]) <= 1.0
        assert {int(r["selected_step"]) for r in mine.values()} <= {3, 6, 9}
        saved = prompt_checkpoints.load_prompt_checkpoints(
            tmp_path / "run" / "cells" / dataset / "rate=0.25" / "seed=0" / "corrupted" / "checkpoints")
        assert [(c.step, c.learning_rate) for c in saved] == [(3, 0.3), (6, 0.3), (9, 0.3)]
        assert all("f1" in c.validation for c in saved)

    cell = explainer.cell("parlai_standard", None, None)
    stored = explainer.stored(cell, "tracin", 1)
    fresh = explainer.compute(cell, "tracin", 1, list(stored.queries.ids))
    np.testing.assert_allclose(fresh.dot, stored.dot, rtol=1e-3, atol=1e-6 * np.abs(stored.dot).max())


def test_sentencepiece_tokenizer_is_seqio_over_the_model_without_eos(tmp_path):
    from gbair.classifiers import sentencepiece_tokenizer

    tiny_vocabulary(tmp_path / "tiny.model")
    reference = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / "tiny.model"))
    texts = ["not ok", "Dogs are dumb and so are you.", ""]
    ids = sentencepiece_tokenizer(tmp_path / "tiny.model")(texts)
    assert ids == [reference.encode(text) for text in texts] and ids[2] == []
    assert reference.pad_id() == 0 and reference.eos_id() == 1 and all(1 not in row for row in ids)
    with pytest.raises(FileNotFoundError, match="nope.model does not exist"):
        sentencepiece_tokenizer(tmp_path / "nope.model")


# ---- the vocabulary and the size file: one line each, before any weights are read -----------------

def first_line(error: pytest.ExceptionInfo) -> str:
    """What the command line prints of an error (gin adds lines naming the configurables it was in)."""
    return str(error.value).splitlines()[0]


def size_bindings(config: t5.T5Config) -> list[str]:
    return [f"T5Config.{field} = {getattr(config, field)}" for field in
            ("vocab_size", "d_model", "num_heads", "head_dim", "d_ff", "num_encoder_layers", "num_decoder_layers")
            ] + ["t5_1_1_classifier.size = @T5Config()"]


@pytest.fixture
def weights_never_read(monkeypatch):
    from gbair import pretrained  # pylint: disable=import-outside-toplevel

    def refuse(*args, **kwargs):
        raise AssertionError("the weights were read before the mistake was found")

    monkeypatch.setattr(pretrained, "load_t5_params", refuse)


def default_sentencepiece(path: pathlib.Path) -> None:
    """SentencePiece's own defaults: no pad id (-1), EOS 2: not a T5 vocabulary."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(["ok", "not ok", "hello there"] * 20),
                                             model_writer=model, vocab_size=20, hard_vocab_limit=False,
                                             minloglevel=2)
    path.write_bytes(model.getvalue())


VOCABULARY_CASES = [  # (name, how to write VOCABULARY, embedding rows of the checkpoint, message pattern)
    ("not a model", lambda path: path.write_bytes(b"not a SentencePiece model"), TINY.vocab_size,
     r"SentencePiece model \S+/v.model \(VOCABULARY \(t5_1_1_classifier.vocabulary\)\) cannot be read as a "
     r"SentencePiece model"),
    ("not T5's ids", default_sentencepiece, TINY.vocab_size, r"v.model .* has pad id -1 and EOS id 2, expected T5's 0 and 1"),
    ("more pieces than rows", tiny_vocabulary, 32, r"v.model .* has \d+ pieces, more than the checkpoint's 32 embedding rows"),
]


@pytest.mark.parametrize("name, write, rows, pattern", VOCABULARY_CASES, ids=[c[0] for c in VOCABULARY_CASES])
def test_a_wrong_vocabulary_is_one_line_naming_file_and_setting(tmp_path, weights_never_read, name, write, rows,
                                                                 pattern):
    config = dataclasses.replace(TINY, vocab_size=rows)
    write_legacy(str(tmp_path / "t5" / "checkpoint_1000"), t5.init_params(config, jax.random.key(0)))
    write(tmp_path / "v.model")
    with pytest.raises(UserError) as error:
        run("paper_bad.gin", tmp_path / "run", size_bindings(config) + [
            f"CHECKPOINT = '{tmp_path}/t5/checkpoint_1000'", f"VOCABULARY = '{tmp_path}/v.model'",
            f"DATA_DIR = '{FIXTURES}'"])
    assert re.search(pattern, first_line(error)) and len(first_line(error)) < 400, first_line(error)


def test_a_checkpoint_of_another_size_names_the_size_file_to_add(tmp_path, weights_never_read, monkeypatch):
    write_legacy(str(tmp_path / "t5" / "checkpoint_1000"), t5.init_params(TINY, jax.random.key(0)))
    tiny_vocabulary(tmp_path / "tiny.model")
    paths = [f"CHECKPOINT = '{tmp_path}/t5/checkpoint_1000'", f"VOCABULARY = '{tmp_path}/tiny.model'",
             f"DATA_DIR = '{FIXTURES}'"]
    monkeypatch.setitem(t5.SIZES, "small", TINY)  # a preset the checkpoint fits, without a 300 MB checkpoint
    with pytest.raises(UserError) as error:
        run("paper_bad.gin", tmp_path / "run", paths)
    assert re.fullmatch(r"CHECKPOINT \S+checkpoint_1000 is T5 1.1 small, not t5_1_1_classifier.size='base': add "
                        r"--gin_file=configs/models/t5_1_1_small.gin after the experiment file", first_line(error))
    monkeypatch.delitem(t5.SIZES, "small")
    with pytest.raises(UserError) as error:
        run("paper_bad.gin", tmp_path / "run", size_bindings(dataclasses.replace(TINY, d_ff=48)) + paths)
    assert re.fullmatch(r"CHECKPOINT \S+ \(t5x_legacy\) fits neither t5_1_1_classifier.size \(a T5Config\) nor any "
                        r"configs/models/t5_1_1_<size>.gin \(base, large, xl, xxl\): decoder/layers_0/mlp/wi_0/kernel "
                        r"\(16, 32\) \(expected \(16, 48\)\); .*; and \d+ more", first_line(error)), first_line(error)


def test_main_prints_one_short_line_for_a_checkpoint_that_fits_no_size_file(tmp_path):
    write_legacy(str(tmp_path / "t5" / "checkpoint_1000"), t5.init_params(TINY, jax.random.key(0)))
    tiny_vocabulary(tmp_path / "tiny.model")
    command = [sys.executable, "-m", "gbair.main", "--gin_file=configs/experiments/paper_bad.gin",
               f"--workdir={tmp_path}/run", f"--gin.DATA_DIR='{FIXTURES}'",
               f"--gin.CHECKPOINT='{tmp_path}/t5/checkpoint_1000'", f"--gin.VOCABULARY='{tmp_path}/tiny.model'"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("gbair: error: CHECKPOINT ") and "fits neither t5_1_1_classifier.size='base'" in last
    assert len(last) < 500 and "Traceback" not in done.stderr

"""The paper configs: clear one-line failures without paths, and one full G-BAIR iteration end to end
with a tiny random T5 1.1 (a legacy T5X checkpoint), a SentencePiece model trained here, and the
ParlAI safety fixtures read through seqio."""

import csv
import io
import pathlib
import subprocess
import sys

import gin
import jax
import pytest
import sentencepiece

from gbair import UserError, config
from gbair.data import safety
from gbair.models import t5
from tests.test_checkpoints import write_legacy

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
    config.parse([f"configs/experiments/{experiment}"], bindings)
    config.execute(str(workdir))


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


def test_one_gbair_iteration_end_to_end_with_tiny_t5(tmp_path):
    write_legacy(str(tmp_path / "t5" / "checkpoint_1000"), t5.init_params(TINY, jax.random.key(0)))
    tiny_vocabulary(tmp_path / "tiny.model")
    size = [f"T5Config.{field} = {getattr(TINY, field)}" for field in
            ("vocab_size", "d_model", "num_heads", "head_dim", "d_ff", "num_encoder_layers", "num_decoder_layers")]
    run("paper_parlai_safety.gin", tmp_path / "run", size + [
        f"CHECKPOINT = '{tmp_path}/t5/checkpoint_1000'", f"VOCABULARY = '{tmp_path}/tiny.model'",
        f"DATA_DIR = '{FIXTURES}'", "t5_1_1_classifier.size = @T5Config()", "t5_1_1_classifier.prompt_length = 4",
        "t5_1_1_classifier.max_length = 32", "Experiment.corruption_rates = [0.25]", "Experiment.seeds = [0]",
        "Experiment.strategy_names = ['tracin']", "TrainConfig.batch_size = 4", "TrainConfig.num_epochs = 2",
        "RecoveryConfig.iterations = 1", "RecoveryConfig.flag_count = 2"])
    with open(tmp_path / "run" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    for dataset in ("parlai_standard", "parlai_adversarial"):
        mine = {int(r["iteration"]): r for r in rows if r["dataset"] == dataset and r["strategy"] == "tracin"}
        assert sorted(mine) == [0, 1], rows
        assert int(mine[0]["n_train"]) == 12 and int(mine[0]["n_corrupted_remaining"]) == 3
        assert int(mine[1]["n_train"]) == 10  # two flagged and removed
        assert 0.0 <= float(mine[1]["test_accuracy"]) <= 1.0


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

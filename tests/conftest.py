"""Shared fixtures: a tiny random BERT in the real on-disk format, and the SpamAssassin fixtures."""

import json
import os
import pathlib
import shutil

import numpy as np
import pytest
from safetensors.numpy import save_file

from gbair import assets

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
TINY_BERT = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
             "intermediate_size": 64, "max_position_embeddings": 128, "type_vocab_size": 2,
             "layer_norm_eps": 1e-12, "hidden_act": "gelu"}


def hf_bert_tensors(config: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights under Hugging Face BertModel names (what model.safetensors holds)."""
    rng = np.random.default_rng(seed)
    e, f = config["hidden_size"], config["intermediate_size"]
    normal = lambda *shape: (0.05 * rng.standard_normal(shape)).astype(np.float32)  # noqa: E731
    t = {
        "embeddings.word_embeddings.weight": normal(config["vocab_size"], e),
        "embeddings.position_embeddings.weight": normal(config["max_position_embeddings"], e),
        "embeddings.token_type_embeddings.weight": normal(config["type_vocab_size"], e),
        "embeddings.LayerNorm.weight": 1 + normal(e), "embeddings.LayerNorm.bias": normal(e),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for name, (n_out, n_in) in {"attention.self.query": (e, e), "attention.self.key": (e, e),
                                    "attention.self.value": (e, e), "attention.output.dense": (e, e),
                                    "intermediate.dense": (f, e), "output.dense": (e, f)}.items():
            t[p + name + ".weight"], t[p + name + ".bias"] = normal(n_out, n_in), normal(n_out)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[p + name + ".weight"], t[p + name + ".bias"] = 1 + normal(e), normal(e)
    return t


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> pathlib.Path:
    """config.json + model.safetensors (random, 2 layers, d_model 32) + MiniLM's tokenizer.json."""
    path = tmp_path_factory.mktemp("tiny_bert")
    (path / "config.json").write_text(json.dumps(TINY_BERT))
    save_file(hf_bert_tensors(TINY_BERT), str(path / "model.safetensors"))
    shutil.copy(assets.minilm_dir() / "tokenizer.json", path / "tokenizer.json")
    return path


@pytest.fixture(scope="session")
def spam_fixture_dir() -> pathlib.Path:
    """Group folders of SpamAssassin records in the npm package's exact format."""
    return FIXTURES / "spam_assassin"


@pytest.fixture(scope="session")
def compile_cache_env(tmp_path_factory) -> dict[str, str]:
    """The environment for gbair.main subprocesses that rerun one sweep: JAX's persistent compilation
    cache in a session folder, so each rerun costs its work rather than compiling everything again."""
    return {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax_cache")),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


CLEANING_FIXTURES = FIXTURES / "cleaning"
JSONL_COLUMNS = {"id_column": "uid", "text_column": "body", "label_column": "category"}
CSV_COLUMNS = {"text_column": "message", "label_column": "tag"}  # no id column: ids are line numbers


@pytest.fixture(scope="session")
def tiny_classifier(tiny_bert_dir):
    """The tiny random BERT as a ham/spam prompt classifier (4 prompt tokens, 12 text tokens)."""
    from gbair.classifiers import minilm_classifier

    return minilm_classifier(["ordinary work email", "spam advertising"], class_names=["ham", "spam"],
                             model_dir=tiny_bert_dir, prompt_length=4, max_length=12)


def clean(workdir, model, data_file, **settings):
    """The cleaning job (configs/runs/clean.gin's gbair.jobs.clean) in this process, with a few training
    steps; the columns of the fixture file `data_file`."""
    from gbair import jobs
    from gbair.recovery.experiment import RecoveryConfig
    from gbair.train.trainer import TrainConfig

    columns = JSONL_COLUMNS if str(data_file).endswith(".jsonl") else CSV_COLUMNS
    settings.setdefault("recovery", RecoveryConfig(iterations=2, flag_count=3, tracin_batch_size=8))
    jobs.clean(str(workdir), model=model, data_file=str(data_file), **{**columns, **settings},
               train_config=TrainConfig(optimizer="adam", learning_rate=0.05, batch_size=8, num_steps=6,
                                        checkpoint_every=3, select_by="last"))
    return workdir


@pytest.fixture(scope="session")
def cleaned_by_loss(tmp_path_factory, tiny_classifier):
    """The fixture JSONL cleaned by `loss` (remove, 2 iterations of 3 flags): its workdir."""
    return clean(tmp_path_factory.mktemp("clean_loss"), tiny_classifier, CLEANING_FIXTURES / "emails.jsonl",
                 strategy="loss")


@pytest.fixture(scope="session")
def cleaned_by_tracin_by_label(tmp_path_factory, tiny_classifier):
    """The fixture CSV cleaned by `tracin_by_label` (relabel, V held out of the data): its workdir."""
    from gbair.recovery.experiment import RecoveryConfig

    return clean(tmp_path_factory.mktemp("clean_tracin"), tiny_classifier, CLEANING_FIXTURES / "emails.csv",
                 strategy="tracin_by_label", holdout_fraction=0.25,
                 recovery=RecoveryConfig(iterations=1, flag_count=3, action="relabel", tracin_batch_size=8))

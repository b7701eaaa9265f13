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

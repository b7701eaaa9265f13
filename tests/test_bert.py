"""MiniLM in Flax against PyTorch `transformers` (golden file from tests/golden/make_minilm_golden.py)."""

import json
import pathlib

import numpy as np
import pytest

from gbair import assets
from gbair.models import bert
from tests.conftest import TINY_BERT, hf_bert_tensors

GOLDEN = pathlib.Path(__file__).parent / "golden" / "minilm_embeddings.json"


@pytest.fixture(scope="module")
def minilm():
    config, params = bert.load_bert(assets.verified_minilm_dir(), assets.minilm_dir() / "model.safetensors")
    return config, params


def test_sentence_embeddings_match_transformers(minilm):
    golden = json.loads(GOLDEN.read_text())
    config, params = minilm
    tokenizer = bert.Tokenizer(assets.minilm_dir() / "tokenizer.json", golden["max_length"])
    batch = tokenizer(golden["sentences"])
    reference_ids = np.array(golden["input_ids"])
    np.testing.assert_array_equal(batch["input_ids"][:, : reference_ids.shape[1]], reference_ids)
    embeddings = np.asarray(bert.embed_sentences(config, params, batch))
    assert len(golden["sentences"]) >= 8
    assert np.abs(embeddings - np.array(golden["embeddings"])).max() < 1e-4


def test_embeddings_do_not_depend_on_padding_length(minilm):
    config, params = minilm
    path = assets.minilm_dir() / "tokenizer.json"
    texts = ["a short one", "free money now, click here"]
    short = bert.embed_sentences(config, params, bert.Tokenizer(path, 16)(texts))
    long = bert.embed_sentences(config, params, bert.Tokenizer(path, 64)(texts))
    np.testing.assert_allclose(short, long, atol=1e-5)


def test_weights_checksum_is_verified(tmp_path):
    copy = tmp_path / "model.safetensors"
    copy.write_bytes((assets.verified_minilm_dir() / "model.safetensors").read_bytes()[:-1] + b"\0")
    with pytest.raises(ValueError, match="SHA-256 is .* expected " + assets.MINILM_FILES["model.safetensors"]):
        assets.verify_sha256(copy, assets.MINILM_FILES["model.safetensors"])


def test_missing_and_unexpected_tensors_are_named():
    tensors = hf_bert_tensors(TINY_BERT)
    cfg = bert.BertConfig(vocab_size=TINY_BERT["vocab_size"], hidden_size=32, num_layers=2, num_heads=4,
                          intermediate_size=64, max_positions=128)
    missing = dict(tensors)
    del missing["encoder.layer.1.output.dense.bias"]
    with pytest.raises(KeyError, match="encoder.layer.1.output.dense.bias"):
        bert.params_from_hf(missing, cfg)
    extra = dict(tensors, **{"encoder.layer.2.output.dense.bias": np.zeros(32, np.float32)})
    with pytest.raises(ValueError, match="unexpected tensors.*encoder.layer.2.output.dense.bias"):
        bert.params_from_hf(extra, cfg)

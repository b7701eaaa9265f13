"""Writes t5_tiny.safetensors + t5_tiny_outputs.json: a random tiny T5 1.1 run by PyTorch `transformers`.

An independent implementation of the same weights, for tests/test_t5.py. Needs the [bench] extra
(torch, transformers); run from the repository root:

    python tests/golden/make_t5_golden.py

H*D = 24 != E = 16, so a transposed kernel or a head-split bug cannot cancel out. The encoder input
is 140 long (distances past max_distance=128) and the decoder input 20 (past the causal side's 16
exact buckets). Weights are re-drawn with large variances so that a missing or extra scaling
(1/sqrt(D), sqrt(E), the tied-embedding 1/sqrt(E) on decoder outputs) moves outputs by far more
than the test tolerance. transformers 5 always ties `lm_head` to `shared` in a freshly built model
(it unties only when a loaded checkpoint has both), so we untie it by hand, as in real T5 1.1.
"""

import json
import pathlib

import numpy as np
import torch
import transformers
from safetensors.torch import save_file

HERE = pathlib.Path(__file__).parent
CONFIG = dict(vocab_size=64, d_model=16, num_heads=4, d_kv=6, d_ff=20, num_layers=2, num_decoder_layers=2,
              relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
              feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0)
ENCODER_LENGTH, DECODER_LENGTH, SEED = 140, 20, 0


def random_weights(model: torch.nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Redraws every parameter: norms 1 + N(0, 0.2), embeddings / relative biases N(0, 1), kernels N(0, 1/fan_in)."""
    weights = {}
    for name, param in model.named_parameters():  # `shared` once; encoder/decoder embed_tokens alias it
        noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
        if name.endswith("layer_norm.weight"):
            value = 1 + 0.2 * noise
        elif name == "shared.weight" or "relative_attention_bias" in name:
            value = noise
        else:
            value = noise / param.shape[1] ** 0.5
        weights[name] = value.contiguous()
    if "lm_head.weight" not in weights:  # tied in a fresh transformers 5 model; T5 1.1 is untied
        weights["lm_head.weight"] = (torch.randn(model.lm_head.weight.shape, generator=generator)
                                     / CONFIG["d_model"] ** 0.5).contiguous()
    return weights


def main() -> None:
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**CONFIG)).eval()
    assert model.config.dense_act_fn == "gelu_new" and not model.config.scale_decoder_outputs
    weights = random_weights(model, generator)
    model.lm_head.weight = torch.nn.Parameter(weights["lm_head.weight"].clone())
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(weights[name])
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    for attention in (m for m in model.modules() if isinstance(m, transformers.models.t5.modeling_t5.T5Attention)):
        assert attention.scaling == 1.0  # T5 (like T5X) does not scale q.k by 1/sqrt(d_kv)

    rng = np.random.default_rng(SEED)
    lengths = [ENCODER_LENGTH, 57]
    input_ids = np.zeros((2, ENCODER_LENGTH), np.int64)
    for i, n in enumerate(lengths):
        input_ids[i, :n - 1] = rng.integers(2, CONFIG["vocab_size"], n - 1)
        input_ids[i, n - 1] = 1  # EOS
    mask = (np.arange(ENCODER_LENGTH)[None] < np.array(lengths)[:, None]).astype(np.int64)
    decoder_ids = np.zeros((2, DECODER_LENGTH), np.int64)  # starts with pad id 0
    decoder_ids[0, 1:] = rng.integers(2, CONFIG["vocab_size"], DECODER_LENGTH - 1)
    decoder_ids[1, 1:6] = rng.integers(2, CONFIG["vocab_size"], 5)  # then padding

    model = model.double()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(mask),
                    decoder_input_ids=torch.tensor(decoder_ids))
    save_file(weights, str(HERE / "t5_tiny.safetensors"))
    config = {k: v for k, v in CONFIG.items() if k != "dropout_rate"}
    round7 = lambda t: np.vectorize(lambda x: float(f"{x:.7g}"))(t.numpy()).tolist()  # noqa: E731
    (HERE / "t5_tiny_outputs.json").write_text(json.dumps({
        "generator": f"transformers {transformers.__version__}, torch {torch.__version__} (float64)",
        "config": config,
        "input_ids": input_ids.tolist(),
        "attention_mask": mask.tolist(),
        "decoder_input_ids": decoder_ids.tolist(),
        "encoder_last_hidden_state": round7(out.encoder_last_hidden_state),
        "logits": round7(out.logits),
    }))
    print(f"wrote {HERE / 't5_tiny.safetensors'} ({len(weights)} tensors) and {HERE / 't5_tiny_outputs.json'}")


if __name__ == "__main__":
    main()

"""T5 1.1 prompt tuning: train-step time and per-example prompt-gradient throughput, with FLOP utilisation.

    python benchmarks/t5_bench.py --json OUT.json                                    # T5 1.1 small, CPU
    python benchmarks/t5_bench.py --size base --dtype bfloat16 --batch 64 --no-torch [--attention cudnn]  # GPU

Random-initialised weights (no checkpoint needed), a `--prompt`-token soft prompt before `--length`
text tokens, 2 classes with 2-token verbalizers. Contenders run in one process on the same weights,
prompt and batch, interleaved over --repeats rounds (tracin_bench.interleaved_seconds; medians):
gbair's train step (Adafactor, as in prompt tuning) vs a PyTorch `transformers` T5 step on the same
weights (`[bench]` extra); gbair's per-example-gradient kernel (tiled prompt, `vmap(grad)`) vs a
jitted per-example `jax.grad` loop; a square matmul. Utilisation = XLA's FLOP count of the compiled
kernel / time, over this device's matmul rate in the same dtype, measured in the same rounds.
"""

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from gbair.pretrained import hf
from gbair.influence.gradients import per_example_grads
from gbair.models import t5
from gbair.train.trainer import _train_step_fn, make_optimizer
from tracin_bench import cpu_isa, finish, interleaved_seconds  # benchmarks/ is on sys.path when run as a script

VERBALIZERS = ("ok", "not ok")


def tokenize(texts: list[str]) -> list[list[int]]:
    """Stand-in for SentencePiece: ids of the words of a synthetic text (timing does not depend on them)."""
    return [[3 + (sum(map(ord, word)) % 32000) for word in text.split()] for text in texts]


def build(args) -> tuple[t5.T5Config, dict, dict, np.ndarray]:
    config = dataclasses.replace(t5.SIZES[args.size], dtype=args.dtype, attention_implementation=args.attention)
    params = jax.device_put(t5.init_params(config, jax.random.key(0)))
    model = t5.t5_classifier(params, config, tokenize, VERBALIZERS, prompt_length=args.prompt,
                             max_length=args.length, prompt_init="sampled_vocab")
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 32000, (args.batch, args.length - 1), dtype=np.int32)
    batch = {"input_ids": np.concatenate([ids, np.ones((args.batch, 1), np.int32)], 1),  # every row full: EOS last
             "mask": np.ones((args.batch, args.length), np.int32),
             "label": (np.arange(args.batch) % 2).astype(np.int32), "weight": np.ones(args.batch, np.float32)}
    return config, model, jax.device_put(batch), np.asarray(model.init_prompt(jax.random.key(1)))


def matmul(dtype: str, n: int = 2048):
    """(call, FLOPs per call) of an n x n matmul in `dtype`: the device's attainable rate."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.dtype(dtype))
    f = jax.jit(lambda a: a @ a)
    return (lambda: f(a).block_until_ready()), 2 * n ** 3


def flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis.get("flops", float("nan")))


def gbair_contenders(model, batch, prompt: np.ndarray) -> tuple[dict, dict]:
    """(name -> call, name -> XLA FLOPs per call): gbair's train step, its per-example-gradient kernels
    (tiled, vmap) and a per-example jax.grad loop."""
    optimizer = make_optimizer("adafactor", 0.3)
    step = _train_step_fn(model.loss_fn, optimizer)
    state = {"prompt": jax.device_put(prompt), "opt_state": optimizer.init(jax.device_put(prompt))}
    calls = {"train_step": lambda: jax.block_until_ready(step(model.params, state, batch))}
    counts = {}
    for method in ("tiled", "vmap"):
        kernel = jax.jit(lambda params, prompt, batch, method=method: per_example_grads(
            model.loss_fn, params, prompt, batch, method=method)).lower(model.params, prompt, batch).compile()
        calls[f"grads_{method}"] = lambda kernel=kernel: kernel(model.params, prompt, batch).block_until_ready()
        counts[f"grads_{method}"] = flops(kernel)
    single = jax.jit(jax.grad(lambda prompt, params, example: model.loss_fn(params, prompt, example)[0]))
    examples = [{k: v[i:i + 1] for k, v in batch.items()} for i in range(len(batch["label"]))]

    def naive():
        for example in examples:
            single(prompt, model.params, example).block_until_ready()

    calls["grads_naive"] = naive
    return calls, counts


def torch_contender(config: t5.T5Config, params: dict, batch: dict, prompt: np.ndarray, args) -> dict:
    """The same step in PyTorch: HF T5ForConditionalGeneration (frozen) + prompt on inputs_embeds;
    {} without torch, else {"step": call, "losses": its losses on the batch, versions}."""
    try:
        import torch  # pylint: disable=import-outside-toplevel
        import transformers  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        print(f"PyTorch peer skipped ({e}); install the [bench] extra", file=sys.stderr)
        return {}
    torch.set_num_threads(os.cpu_count() or 1)
    hf_config = transformers.T5Config(vocab_size=config.vocab_size, d_model=config.d_model, d_kv=config.head_dim,
                                      d_ff=config.d_ff, num_layers=config.num_encoder_layers,
                                      num_decoder_layers=config.num_decoder_layers, num_heads=config.num_heads,
                                      feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0)
    module = transformers.T5ForConditionalGeneration(hf_config).eval()
    state = {}
    for name, (path, transpose) in hf._hf_names(config).items():
        value = np.array(hf._get(params, path), np.float32)  # writable copy
        state[name] = torch.from_numpy(np.ascontiguousarray(value.T if transpose else value))
    lm_head = state.pop("lm_head.weight")
    missing, unexpected = module.load_state_dict(state, strict=False)
    # transformers 5 ties lm_head to `shared` in a fresh model; T5 1.1 is untied, so untie by hand.
    module.lm_head.weight = torch.nn.Parameter(lm_head)
    assert not unexpected and not [m for m in missing if "embed_tokens" not in m and m != "lm_head.weight"], missing
    for p in module.parameters():
        p.requires_grad_(False)
    targets, target_mask = t5.encode_targets(tokenize, VERBALIZERS)
    label = np.asarray(batch["label"])
    decoder_targets = torch.from_numpy(targets[label].astype(np.int64))
    decoder_inputs = torch.from_numpy(np.asarray(t5.shift_right(targets[label])).astype(np.int64))
    decoder_mask = torch.from_numpy(target_mask[label])
    ids = torch.from_numpy(np.asarray(batch["input_ids"]).astype(np.int64))
    mask = torch.cat([torch.ones(args.batch, args.prompt), torch.from_numpy(np.asarray(batch["mask"])).float()], 1)
    soft = torch.nn.Parameter(torch.from_numpy(prompt.copy()))
    optimizer = torch.optim.Adam([soft], lr=0.3)

    def loss_value():
        embeds = torch.cat([soft.expand(args.batch, -1, -1), module.shared(ids)], 1)
        logits = module(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=decoder_inputs).logits
        token = torch.log_softmax(logits.float(), -1).gather(-1, decoder_targets[..., None])[..., 0]
        return -(token * decoder_mask).sum(-1)

    def step():
        optimizer.zero_grad()
        loss_value().mean().backward()
        optimizer.step()

    with torch.no_grad():
        losses = loss_value().numpy()
    return {"step": step, "losses": losses, "torch_version": torch.__version__,
            "transformers_version": transformers.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small", choices=sorted(t5.SIZES))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--attention", choices=("xla", "cudnn"), help="jax.nn.dot_product_attention (default: einsum)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=64, help="text tokens (EOS included)")
    parser.add_argument("--prompt", type=int, default=100, help="soft prompt tokens")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    config, model, batch, prompt = build(args)
    device = jax.devices()[0]
    results = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, {device.platform} {device.device_kind}",
               "cpu_isa": cpu_isa(), "date": time.strftime("%Y-%m-%d"), "jax_version": jax.__version__, **vars(args)}
    calls, counts = gbair_contenders(model, batch, prompt)
    calls["matmul"], counts["matmul"] = matmul(args.dtype)
    with_torch = not args.no_torch and args.dtype == "float32"
    peer = torch_contender(config, model.params, batch, prompt, args) if with_torch else {}
    if peer:
        calls["torch_train_step"] = peer.pop("step")
        ours = np.asarray(model.loss_fn(model.params, prompt, batch))
        results["loss_max_rel_diff_vs_torch"] = float(np.abs(ours / peer.pop("losses") - 1).max())
        results.update(peer)
    seconds = {name: statistics.median(times) for name, times in interleaved_seconds(calls, args.repeats).items()}
    results["train_step_s"] = seconds["train_step"]
    results["matmul_flops_per_s"] = counts["matmul"] / seconds["matmul"]
    for name in ("train", "grads_tiled", "grads_vmap", "grads_naive"):
        results[f"{name}_examples_per_s"] = args.batch / seconds["train_step" if name == "train" else name]
    for method in ("tiled", "vmap"):
        results[f"grads_{method}_flops"] = counts[f"grads_{method}"]
        results[f"grads_{method}_flops_per_s"] = counts[f"grads_{method}"] / seconds[f"grads_{method}"]
        results[f"grads_{method}_utilisation"] = results[f"grads_{method}_flops_per_s"] / results["matmul_flops_per_s"]
    best = max(results["grads_tiled_examples_per_s"], results["grads_vmap_examples_per_s"])
    results["grads_speedup_vs_naive"] = best / results["grads_naive_examples_per_s"]
    if peer:
        results["torch_train_step_s"] = seconds["torch_train_step"]
        results["torch_train_examples_per_s"] = args.batch / seconds["torch_train_step"]
        results["train_speedup_vs_torch"] = results["train_examples_per_s"] / results["torch_train_examples_per_s"]
    finish(results, args.json)


if __name__ == "__main__":
    main()

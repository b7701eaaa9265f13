"""A projection, not a measurement: how long TracIn over 1M training examples would take on one H100
and on a TPU v4-8, anchored on XLA's FLOP count of the kernel and on a measured CPU rate.

    python benchmarks/project_1m.py --cpu_examples_per_s 76.3 [--checkpoints 1]

The workload is `tracin_bench.py --scale`'s: MiniLM, 16 text + 16 prompt tokens, one checkpoint,
influence on a set (one per-example prompt gradient per training example, then a dot product). The
accelerator rates are FLOPs / (peak x an assumed model-FLOPs utilisation): the range 10-40% brackets
the 40% XLA reaches on a T5-base-shaped encoder on an H200 (the issue's reference); a 6-layer,
384-wide model at 32 tokens is more likely near the low end. Nothing here ran on an accelerator.
"""

import argparse

import jax
import numpy as np

from gbair.batching import make_batch
from gbair.classifiers import minilm_classifier
from gbair.influence.gradients import per_example_grads

BATCH, TEXT_TOKENS, PROMPT_TOKENS, N = 64, 16, 16, 1_000_000
PEAKS = {"one H100 SXM (bf16 dense, 989 TFLOP/s)": 989e12, "TPU v4-8 (4 chips x 275 TFLOP/s bf16)": 4 * 275e12}
UTILISATION = (0.10, 0.40)


def kernel_flops_per_example() -> float:
    """XLA's cost analysis of the tiled per-example gradient kernel, per example."""
    model = minilm_classifier(class_descriptions=["a normal personal or work email", "spam"], class_names=["ham", "spam"],
                              prompt_length=PROMPT_TOKENS, max_length=TEXT_TOKENS)
    texts = [f"example email number {i} with a few words" for i in range(BATCH)]
    batch = make_batch(model.featurize(texts), np.arange(BATCH) % 2, np.arange(BATCH), np.ones(BATCH))
    prompt = model.init_prompt(jax.random.key(0))
    kernel = jax.jit(lambda params, p, b: per_example_grads(model.loss_fn, params, p, b, method="tiled"))
    cost = kernel.lower(model.params, prompt, batch).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"]) / BATCH


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu_examples_per_s", type=float, required=True,
                        help="measured by `tracin_bench.py --scale` on the CPU (its examples_per_s)")
    parser.add_argument("--checkpoints", type=int, default=1)
    args = parser.parse_args()
    flops = kernel_flops_per_example()
    print(f"kernel: {flops / 1e9:.3f} GFLOP per example per checkpoint (XLA cost analysis, {TEXT_TOKENS} text + "
          f"{PROMPT_TOKENS} prompt tokens); {N:,} examples x {args.checkpoints} checkpoint(s)")
    cpu_hours = N * args.checkpoints / args.cpu_examples_per_s / 3600
    print(f"CPU (measured {args.cpu_examples_per_s:.1f} ex/s): {cpu_hours:.1f} h; it sustains "
          f"{flops * args.cpu_examples_per_s / 1e9:.0f} GFLOP/s")
    for name, peak in PEAKS.items():
        low, high = (u * peak / flops for u in UTILISATION)
        minutes = [N * args.checkpoints / rate / 60 for rate in (high, low)]
        print(f"{name}: {low:,.0f}-{high:,.0f} ex/s at {UTILISATION[0]:.0%}-{UTILISATION[1]:.0%} utilisation, "
              f"{minutes[0]:.1f}-{minutes[1]:.1f} min (projected)")


if __name__ == "__main__":
    main()

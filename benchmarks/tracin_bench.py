"""Per-example prompt-gradient and TracIn throughput: gbair vs a naive loop and PyTorch peers.

    python benchmarks/tracin_bench.py --quick --json OUT.json

All contenders see the same MiniLM weights, prompt and batch (SpamAssassin emails; batch 32,
64 text tokens + 16 prompt tokens, float32, CPU). Results are ratios measured in one process.
Without --quick it also measures how TracIn time scales with N and with the number of (simulated)
devices, and the peak host memory of scoring 20,000 training examples.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import jax
import numpy as np

from gbair import assets
from gbair.data import spam_assassin
from gbair.data.dataset import TextDataset
from gbair.influence.gradients import per_example_grads
from gbair.influence.tracin import TracIn
from gbair.classifiers import minilm_classifier
from gbair.models.prompts import PromptCheckpoint

BATCH, LENGTH, PROMPT = 32, 64, 16
DESCRIPTIONS = ["a normal personal or work email", "spam: an unsolicited advertising or scam email"]


def median_seconds(fn, repeats: int) -> float:
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def memory_mb(field: str = "VmHWM") -> float:
    """VmHWM (peak) or VmRSS (current) of this process from /proc; unlike ru_maxrss, not inherited
    from the parent of a subprocess."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status")


def finish(results: dict, json_path: str | None) -> None:
    """Adds this process's peak RSS, prints the results and writes them (atomically) to `json_path`."""
    results["peak_rss_mb"] = memory_mb("VmHWM")
    text = json.dumps(results, indent=2, sort_keys=True)
    print(text)
    if json_path:
        from gbair import files  # pylint: disable=import-outside-toplevel
        files.write_text(json_path, text + "\n")


def corpus(n: int, seed: int = 0) -> TextDataset:
    """n SpamAssassin emails (sampled with replacement past the corpus size, ids made unique)."""
    data, _ = spam_assassin.load_spam_assassin(assets.verified_spam_assassin_dir())
    index = np.random.default_rng(seed).choice(len(data), n, replace=n > len(data))
    return TextDataset(tuple(f"{data.ids[i]}#{k}" for k, i in enumerate(index)),
                       tuple(data.texts[i] for i in index), data.labels[index],
                       tuple(data.groups[i] for i in index), data.class_names)


def checkpoints_for(model, count: int) -> list[PromptCheckpoint]:
    return [PromptCheckpoint(step=c + 1, learning_rate=0.03, prompt=np.asarray(model.init_prompt(jax.random.key(c))))
            for c in range(count)]


def bench_kernels(model, data: TextDataset, repeats: int) -> dict:
    """Examples/s of per-example gradients for one batch: gbair (tiled, vmap) vs a jax.grad loop."""
    batch = dict(model.featurize(data.texts[:BATCH]), label=data.labels[:BATCH].astype(np.int32))
    batch = jax.device_put(batch)
    prompt = jax.device_put(model.init_prompt(jax.random.key(0)))
    out = {}
    for method in ("tiled", "vmap"):
        kernel = jax.jit(lambda params, prompt, batch, method=method: per_example_grads(
            model.loss_fn, params, prompt, batch, method=method))
        seconds = median_seconds(lambda: kernel(model.params, prompt, batch).block_until_ready(), repeats)
        out[f"kernel_{method}_examples_per_s"] = BATCH / seconds
    single = jax.jit(jax.grad(lambda prompt, params, example: model.loss_fn(params, prompt, example)[0]))
    examples = [{k: v[i:i + 1] for k, v in batch.items()} for i in range(BATCH)]

    def naive():
        for example in examples:
            single(prompt, model.params, example).block_until_ready()

    out["naive_examples_per_s"] = BATCH / median_seconds(naive, max(1, repeats // 2))
    out["kernel_examples_per_s"] = max(out["kernel_tiled_examples_per_s"], out["kernel_vmap_examples_per_s"])
    out["speedup_vs_naive"] = out["kernel_examples_per_s"] / out["naive_examples_per_s"]
    out["_batch"], out["_prompt"] = batch, np.asarray(prompt)
    return out


def bench_torch(model, data: TextDataset, prompt: np.ndarray, repeats: int, captum_train: int) -> dict:
    """torch.func.vmap(grad) per-example gradients and captum TracInCP on the same weights."""
    try:
        import torch  # pylint: disable=import-outside-toplevel
        import torch_peers  # pylint: disable=import-outside-toplevel  (benchmarks/ is on sys.path)
    except ImportError as e:
        print(f"PyTorch peers skipped ({e}); install the [bench] extra", file=sys.stderr)
        return {}
    torch.set_num_threads(os.cpu_count() or 1)
    module = torch_peers.build_torch_classifier(assets.minilm_dir(), np.asarray(model.params["class_embeddings"]),
                                                scale=20.0)
    features = model.featurize(data.texts[:BATCH])
    labels = data.labels[:BATCH]
    seconds = median_seconds(lambda: torch_peers.torch_func_grads(module, prompt, features["input_ids"],
                                                                  features["mask"], labels), repeats)
    out = {"torch_func_examples_per_s": BATCH / seconds, "torch_version": torch.__version__}
    try:
        import captum  # pylint: disable=import-outside-toplevel
    except ImportError:
        print("captum skipped: not installed", file=sys.stderr)
        return out
    checkpoints = checkpoints_for(model, 2)
    train, test = data.subset(range(captum_train)), data.subset(range(captum_train, captum_train + 8))
    tracin = torch_peers.make_captum_tracin(module, [(c.prompt, c.learning_rate) for c in checkpoints],
                                            _arrays(model, train), batch_size=BATCH)
    seconds = median_seconds(lambda: tracin.influence(_arrays(model, test)), 1)
    out.update(captum_examples_per_s=captum_train / seconds, captum_version=captum.__version__)
    # captum's per-example loop (sample_wise_grads_per_batch=False): what it does for layers its
    # batched hooks do not support; 16 training examples are enough to time it.
    loop = torch_peers.make_captum_tracin(module, [(c.prompt, c.learning_rate) for c in checkpoints],
                                          _arrays(model, train.subset(range(16))), batch_size=BATCH,
                                          sample_wise=False)
    out["captum_loop_examples_per_s"] = 16 / median_seconds(lambda: loop.influence(_arrays(model, test)), 1)
    gbair_tracin = TracIn(model, checkpoints, batch_size=BATCH)
    seconds = median_seconds(lambda: gbair_tracin.influence(train, test), 1)
    out["gbair_tracin_examples_per_s"] = captum_train / seconds
    return out


def _arrays(model, dataset: TextDataset):
    features = model.featurize(dataset.texts)
    return features["input_ids"], features["mask"], dataset.labels.astype(np.int64)


def bench_scaling(model, checkpoints) -> dict:
    """TracIn self-influence time for growing N (is it linear?)."""
    out = {}
    for n in (128, 256, 512):
        tracin = TracIn(model, checkpoints, batch_size=BATCH)
        data = corpus(n, seed=n)
        tracin.self_influence(corpus(BATCH))  # compile
        start = time.perf_counter()
        tracin.self_influence(data)
        out[str(n)] = time.perf_counter() - start
    return out


def device_scaling() -> dict:
    """Simulated CPU devices (1, 2) on this machine: examples/s of TracIn self-influence, 256 examples."""
    out = {}
    for devices in (1, 2):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        result = subprocess.run([sys.executable, __file__, "--child", "devices"], env=env, capture_output=True,
                                text=True, check=True)
        out[str(devices)] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def memory_child(n: int) -> dict:
    """Peak RSS while scoring n training examples (aggregate influence; 1 checkpoint, 16 tokens)."""
    model = minilm_classifier(DESCRIPTIONS, prompt_length=PROMPT, max_length=16)
    data = corpus(n)
    tracin = TracIn(model, checkpoints_for(model, 1), batch_size=64, log_every_s=60)
    tracin.aggregate_influence(data.subset(range(64)), data.subset(range(64)))  # compile
    loaded = memory_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM: measure the peak of the scoring alone
    start = time.perf_counter()
    scores = tracin.aggregate_influence(data, data.subset(range(64)))
    return {"n": n, "seconds": time.perf_counter() - start, "rss_before_scoring_mb": loaded,
            "peak_rss_while_scoring_mb": memory_mb("VmHWM"),
            "all_gradients_would_need_mb": n * PROMPT * 384 * 4 / 2**20, "finite": bool(np.isfinite(scores).all())}


def devices_child() -> dict:
    model = minilm_classifier(DESCRIPTIONS, prompt_length=PROMPT, max_length=LENGTH)
    tracin = TracIn(model, checkpoints_for(model, 1), batch_size=16)
    data = corpus(256)
    tracin.self_influence(data.subset(range(32)))
    start = time.perf_counter()
    tracin.self_influence(data)
    return {"devices": jax.device_count(), "examples_per_s": 256 / (time.perf_counter() - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="kernels and peers only (a few minutes)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "devices":
        print(json.dumps(devices_child()))
        return
    if args.child and args.child.startswith("memory"):
        print(json.dumps(memory_child(int(args.child.split(":")[1]))))
        return

    model = minilm_classifier(DESCRIPTIONS, prompt_length=PROMPT, max_length=LENGTH)
    data = corpus(512)
    results = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, {jax.devices()[0].platform}",
               "date": time.strftime("%Y-%m-%d"), "jax_version": jax.__version__,
               "batch": BATCH, "text_tokens": LENGTH, "prompt_tokens": PROMPT}
    kernels = bench_kernels(model, data, args.repeats)
    prompt = kernels.pop("_prompt")
    kernels.pop("_batch")
    results.update(kernels)
    results.update(bench_torch(model, data, prompt, args.repeats, captum_train=64 if args.quick else 256))
    if "torch_func_examples_per_s" in results:
        results["speedup_vs_torch_func"] = results["kernel_examples_per_s"] / results["torch_func_examples_per_s"]
    if "captum_examples_per_s" in results:
        results["speedup_vs_captum"] = results["gbair_tracin_examples_per_s"] / results["captum_examples_per_s"]
        results["speedup_vs_captum_loop"] = (results["gbair_tracin_examples_per_s"]
                                             / results["captum_loop_examples_per_s"])
    if not args.quick:
        results["self_influence_seconds_by_n"] = bench_scaling(model, checkpoints_for(model, 1))
        results["devices"] = device_scaling()
        memory = subprocess.run([sys.executable, __file__, "--child", "memory:20000"], capture_output=True,
                                text=True, check=True)
        results["memory_20000"] = json.loads(memory.stdout.strip().splitlines()[-1])
    finish(results, args.json)


if __name__ == "__main__":
    main()

"""Per-example prompt-gradient and TracIn throughput: gbair vs a naive loop and PyTorch peers.

    python benchmarks/tracin_bench.py --quick --json OUT.json [--rounds 9]

All contenders see the same MiniLM weights, prompt and batch (SpamAssassin emails; batch 32,
64 text tokens + 16 prompt tokens, float32, CPU), in one process, interleaved: every round times
each contender once, in alternating order (`interleaved_seconds`), so the machine's drift lands on
all of them alike. Each rate is the median over rounds; each ratio is computed per round from that
round's pair and reported as its median with min and max. The JSON names the CPU and its ISA
(`cpu_isa`). Without --quick it also measures how TracIn time scales with N and with the number of
(simulated) devices, and the peak host memory of scoring 20,000 training examples.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable

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


def interleaved_seconds(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each contender in each of `rounds` rounds, after one warm-up call each (compilation).

    Every round calls every contender once, in forward order on even rounds and reversed on odd ones,
    so the machine's drift (other load, clocks, caches) falls on all of them alike and each round's
    times compare like with like; a contender must block until its work is done.
    """
    for fn in contenders.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(rounds):
        for name in (list(contenders) if round_ % 2 == 0 else list(reversed(contenders))):
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
    return times


def speedup_summary(name: str, ours: list[float], peer: list[float]) -> dict:
    """{name, name_min, name_max}: median, min and max over rounds of that round's rate ratio ours / peer."""
    ratios = [a / b for a, b in zip(ours, peer)]
    return {name: statistics.median(ratios), f"{name}_min": min(ratios), f"{name}_max": max(ratios)}


def cpu_isa() -> dict:
    """{"model": the CPU's name, "flags": which of avx2 / avx512* / amx* / avx_vnni it has} from
    /proc/cpuinfo; elsewhere (no /proc) the platform's processor name and flags None (unknown)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return {"model": platform.processor() or platform.machine(), "flags": None}
    field = lambda key: next((line.split(":", 1)[1].strip() for line in lines  # noqa: E731
                              if line.split(":", 1)[0].strip() == key), "")
    flags = set(field("flags").split())
    return {"model": field("model name") or platform.processor() or platform.machine(),
            "flags": sorted(f for f in flags if f in ("avx2", "avx_vnni") or f.startswith(("avx512", "amx")))}


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


def kernel_contenders(model, data: TextDataset, prompt: np.ndarray) -> dict[str, tuple[Callable[[], object], int]]:
    """name -> (call, examples per call): per-example gradients of one batch by gbair (tiled, vmap)
    and by a jax.grad loop."""
    batch = jax.device_put(dict(model.featurize(data.texts[:BATCH]), label=data.labels[:BATCH].astype(np.int32)))
    prompt = jax.device_put(prompt)
    out = {}
    for method in ("tiled", "vmap"):
        kernel = jax.jit(lambda params, prompt, batch, method=method: per_example_grads(
            model.loss_fn, params, prompt, batch, method=method))
        out[f"kernel_{method}"] = (lambda kernel=kernel: kernel(model.params, prompt, batch).block_until_ready(), BATCH)
    single = jax.jit(jax.grad(lambda prompt, params, example: model.loss_fn(params, prompt, example)[0]))
    examples = [{k: v[i:i + 1] for k, v in batch.items()} for i in range(BATCH)]

    def naive():
        for example in examples:
            single(prompt, model.params, example).block_until_ready()

    out["naive"] = (naive, BATCH)
    return out


def torch_contenders(model, data: TextDataset, prompt: np.ndarray, captum_train: int):
    """(name -> (call, examples per call), versions): torch.func.vmap(grad) per-example gradients of the
    same batch, and TracInCP (2 checkpoints, `captum_train` x 8) by gbair and by captum, on the same weights."""
    try:
        import torch  # pylint: disable=import-outside-toplevel
        import torch_peers  # pylint: disable=import-outside-toplevel  (benchmarks/ is on sys.path)
    except ImportError as e:
        print(f"PyTorch peers skipped ({e}); install the [bench] extra", file=sys.stderr)
        return {}, {}
    torch.set_num_threads(os.cpu_count() or 1)
    module = torch_peers.build_torch_classifier(assets.minilm_dir(), np.asarray(model.params["class_embeddings"]),
                                                scale=20.0)
    features = model.featurize(data.texts[:BATCH])
    labels = data.labels[:BATCH]
    out = {"torch_func": (lambda: torch_peers.torch_func_grads(module, prompt, features["input_ids"],
                                                               features["mask"], labels), BATCH)}
    versions = {"torch_version": torch.__version__}
    try:
        import captum  # pylint: disable=import-outside-toplevel
    except ImportError:
        print("captum skipped: not installed", file=sys.stderr)
        return out, versions
    versions["captum_version"] = captum.__version__
    checkpoints = checkpoints_for(model, 2)
    train, test = data.subset(range(captum_train)), data.subset(range(captum_train, captum_train + 8))
    trajectory = [(c.prompt, c.learning_rate) for c in checkpoints]
    tracin = torch_peers.make_captum_tracin(module, trajectory, _arrays(model, train), batch_size=BATCH)
    # captum's per-example loop (sample_wise_grads_per_batch=False): what it does for layers its
    # batched hooks do not support; 16 training examples are enough to time it.
    loop = torch_peers.make_captum_tracin(module, trajectory, _arrays(model, train.subset(range(16))),
                                          batch_size=BATCH, sample_wise=False)
    gbair_tracin = TracIn(model, checkpoints, batch_size=BATCH)
    out.update(gbair_tracin=(lambda: gbair_tracin.influence(train, test), captum_train),
               captum=(lambda: tracin.influence(_arrays(model, test)), captum_train),
               captum_loop=(lambda: loop.influence(_arrays(model, test)), 16))
    return out, versions


def bench_interleaved(model, data: TextDataset, rounds: int, captum_train: int) -> dict:
    """Every contender of `kernel_contenders` and `torch_contenders` interleaved over `rounds` rounds:
    NAME_examples_per_s (median over rounds) and the speedups' median, min and max over rounds."""
    prompt = np.asarray(model.init_prompt(jax.random.key(0)))
    peers, versions = torch_contenders(model, data, prompt, captum_train)
    contenders = kernel_contenders(model, data, prompt)
    naive = contenders.pop("naive")
    contenders = {**contenders, **peers, "naive": naive}  # torch.func runs right after gbair's kernels
    times = interleaved_seconds({name: call for name, (call, _) in contenders.items()}, rounds)
    per_s = {name: [n / t for t in times[name]] for name, (_, n) in contenders.items()}  # examples/s per round
    out = {"rounds": rounds, **versions, **{f"{name}_examples_per_s": statistics.median(rates)
                                            for name, rates in per_s.items()}}
    method = max(("tiled", "vmap"), key=lambda m: out[f"kernel_{m}_examples_per_s"])
    out["kernel_method"], out["kernel_examples_per_s"] = method, out[f"kernel_{method}_examples_per_s"]
    kernel = f"kernel_{method}"
    pairs = {"speedup_vs_naive": (kernel, "naive"), "speedup_vs_torch_func": (kernel, "torch_func"),
             "speedup_vs_captum": ("gbair_tracin", "captum"), "speedup_vs_captum_loop": ("gbair_tracin", "captum_loop")}
    for key, (ours, peer) in pairs.items():
        if peer in per_s:
            out.update(speedup_summary(key, per_s[ours], per_s[peer]))
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


def memory_run(n: int) -> dict:
    """memory_child(n) in a fresh process (its peak RSS is its own), with examples/s added."""
    done = subprocess.run([sys.executable, __file__, "--child", f"memory:{n}"], capture_output=True, text=True,
                          check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"N = {n}: {result['seconds']:.1f} s, peak RSS while scoring {result['peak_rss_while_scoring_mb']:.0f} MB "
          f"(before {result['rss_before_scoring_mb']:.0f} MB)", file=sys.stderr)
    return {**result, "examples_per_s": n / result["seconds"]}


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
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (each contender once per round); 9 kept three runs within 8%% of each other here")
    parser.add_argument("--scale", default=None, metavar="N,N,...",
                        help="only TracIn's time and peak memory over these training-set sizes (16 text tokens, "
                             "1 checkpoint, each size in a fresh process), e.g. 10000,30000,100000")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "devices":
        print(json.dumps(devices_child()))
        return
    if args.child and args.child.startswith("memory"):
        print(json.dumps(memory_child(int(args.child.split(":")[1]))))
        return

    if args.scale:
        finish({"command": " ".join([os.path.basename(sys.executable)] + sys.argv), "cpu_isa": cpu_isa(),
                "date": time.strftime("%Y-%m-%d"), "scale": [memory_run(int(n)) for n in args.scale.split(",")]},
               args.json)
        return

    model = minilm_classifier(DESCRIPTIONS, prompt_length=PROMPT, max_length=LENGTH)
    data = corpus(512)
    if args.rounds < 1:
        parser.error(f"--rounds={args.rounds}, expected >= 1")
    results = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, {jax.devices()[0].platform}",
               "cpu_isa": cpu_isa(), "date": time.strftime("%Y-%m-%d"), "jax_version": jax.__version__,
               "batch": BATCH, "text_tokens": LENGTH, "prompt_tokens": PROMPT}
    results.update(bench_interleaved(model, data, args.rounds, captum_train=64 if args.quick else 256))
    if not args.quick:
        results["self_influence_seconds_by_n"] = bench_scaling(model, checkpoints_for(model, 1))
        results["devices"] = device_scaling()
        results["memory_20000"] = memory_run(20000)
    finish(results, args.json)


if __name__ == "__main__":
    main()

"""Which XLA CPU options speed up gbair's per-example prompt-gradient kernel, on this CPU.

XLA options are fixed when a process starts, so each contender is a fresh child process with its own
XLA_FLAGS (or, for `torch_*`, PyTorch's torch.func peer with its own ATEN_CPU_CAPABILITY). The
parent interleaves them: every round runs each contender once, in an order rotated per round, and
each contender's ratio to the baseline is taken within a round, so drift of the machine lands in
the spread (min-max over rounds), not in the median.

    python benchmarks/xla_options.py [--rounds 5] [--contenders baseline,xnnpack,...] [--json OUT]

Each child times the tiled per-example gradient kernel (MiniLM prompt model, batch 32, 64 text +
16 prompt tokens, float32 unless named) over `--repeats` calls after a warm-up, and saves its
gradients, so the parent reports each option's largest deviation from the baseline's gradients
(an option that changes the numbers is a numerics change, not a free speed-up). The children also
report XLA's FLOP count of the kernel and the machine's float32 matmul rate (2048 x 2048), so the
kernel's share of the machine's matmul peak is known.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

# name -> (environment for the child, kind). Unknown or removed flags make the child fail; the parent
# reports that contender as unsupported instead of stopping.
CONTENDERS = {
    "baseline": ({}, "jax"),
    "xnnpack": ({"XLA_FLAGS": "--xla_cpu_use_xnnpack=true"}, "jax"),
    "onednn": ({"XLA_FLAGS": "--xla_cpu_use_onednn=true"}, "jax"),
    "no_thunk_runtime": ({"XLA_FLAGS": "--xla_cpu_use_thunk_runtime=false"}, "jax"),
    "vector_width_512": ({"XLA_FLAGS": "--xla_cpu_prefer_vector_width=512"}, "jax"),
    "fast_math": ({"XLA_FLAGS": "--xla_cpu_enable_fast_math=true"}, "jax"),
    "one_thread_eigen": ({"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}, "jax"),
    "bfloat16": ({"GBAIR_BENCH_DTYPE": "bfloat16"}, "jax"),
    "isa_avx2": ({"XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}, "jax"),
    # Which library XLA hands dots (and their fused epilogues) to: YNNPACK is the default here.
    "ynn_off": ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="}, "jax"),
    "ynn_individual_dot": ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=individual_dot"}, "jax"),
    "xnn_fusion_dot": ({"XLA_FLAGS": "--xla_cpu_experimental_xnn_fusion_type=dot"}, "jax"),
    "onednn_fusion_dot": ({"XLA_FLAGS": "--xla_cpu_experimental_onednn_fusion_type=dot"}, "jax"),
    "torch_func": ({}, "torch"),
    "torch_func_avx2": ({"ATEN_CPU_CAPABILITY": "avx2"}, "torch"),  # ATen's own kernels only: MKL's matmuls stay AVX-512
    # AVX2 as far as each side's switches reach: XLA's code generation and (YNNPACK off) its dots; ATen, MKL and oneDNN.
    "isa_avx2_ynn_off": ({"XLA_FLAGS": "--xla_cpu_max_isa=AVX2 --xla_cpu_experimental_ynn_fusion_type="}, "jax"),
    "torch_func_avx2_all": ({"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                             "ONEDNN_MAX_CPU_ISA": "AVX2"}, "torch"),
}
BATCH, MAX_LENGTH = 32, 64


# ---- the child ---------------------------------------------------------------------------------

def _batch():
    from gbair import assets  # pylint: disable=import-outside-toplevel
    from gbair.data import spam_assassin  # pylint: disable=import-outside-toplevel
    data, _ = spam_assassin.load_spam_assassin(assets.verified_spam_assassin_dir())
    return list(data.texts[:BATCH]), data.labels[:BATCH]


def child_jax(repeats: int, out: str) -> dict:
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    from gbair.batching import make_batch  # pylint: disable=import-outside-toplevel
    from gbair.classifiers import minilm_classifier  # pylint: disable=import-outside-toplevel
    from gbair.influence.gradients import per_example_grads  # pylint: disable=import-outside-toplevel

    dtype = os.environ.get("GBAIR_BENCH_DTYPE", "float32")
    model = minilm_classifier(class_descriptions=["a normal personal or work email", "spam"],
                              class_names=["ham", "spam"], prompt_length=16, max_length=MAX_LENGTH, dtype=dtype)
    texts, labels = _batch()
    batch = jax.device_put(make_batch(model.featurize(texts), np.asarray(labels), np.arange(BATCH), np.ones(BATCH)))
    prompt = jax.device_put(model.init_prompt(jax.random.key(0)))
    kernel = jax.jit(lambda params, prompt, batch: per_example_grads(model.loss_fn, params, prompt, batch,
                                                                     method="tiled"))
    compiled = kernel.lower(model.params, prompt, batch).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    grads = np.asarray(compiled(model.params, prompt, batch), np.float32)  # warm-up
    seconds = []
    for _ in range(repeats):
        begin = time.perf_counter()
        compiled(model.params, prompt, batch).block_until_ready()
        seconds.append(time.perf_counter() - begin)
    np.save(out, grads)
    a = jnp.ones((2048, 2048), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    begin = time.perf_counter()
    for _ in range(5):
        matmul(a).block_until_ready()
    matmul_flops = 2 * 2048 ** 3 * 5 / (time.perf_counter() - begin)
    return {"examples_per_s": BATCH / statistics.median(seconds), "kernel_flops": float(cost.get("flops", 0.0)),
            "matmul_f32_flops_per_s": matmul_flops}


def child_torch(repeats: int, out: str) -> dict:
    import numpy as np  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    import torch_peers  # pylint: disable=import-outside-toplevel
    from gbair import assets  # pylint: disable=import-outside-toplevel
    from gbair.classifiers import minilm_classifier  # pylint: disable=import-outside-toplevel
    import jax  # pylint: disable=import-outside-toplevel

    torch.set_num_threads(os.cpu_count() or 1)
    model = minilm_classifier(class_descriptions=["a normal personal or work email", "spam"],
                              class_names=["ham", "spam"], prompt_length=16, max_length=MAX_LENGTH)
    texts, labels = _batch()
    features = model.featurize(texts)
    prompt = np.asarray(model.init_prompt(jax.random.key(0)))
    module = torch_peers.build_torch_classifier(assets.minilm_dir(), np.asarray(model.params["class_embeddings"]),
                                                scale=20.0)
    run = lambda: torch_peers.torch_func_grads(module, prompt, features["input_ids"], features["mask"], labels)  # noqa: E731
    grads = np.asarray(run(), np.float32)
    seconds = []
    for _ in range(repeats):
        begin = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - begin)
    np.save(out, grads)
    a = torch.ones((2048, 2048), dtype=torch.float32)
    a @ a
    begin = time.perf_counter()
    for _ in range(5):
        a @ a
    return {"examples_per_s": BATCH / statistics.median(seconds), "torch_version": torch.__version__,
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "matmul_f32_flops_per_s": 2 * 2048 ** 3 * 5 / (time.perf_counter() - begin)}


# ---- the parent --------------------------------------------------------------------------------

def run_child(name: str, repeats: int, directory: str) -> dict:
    env, kind = CONTENDERS[name]
    out = os.path.join(directory, f"{name}.npy")
    command = [sys.executable, __file__, "--child", kind, "--repeats", str(repeats), "--grads", out]
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1][:200]
        return {"error": tail}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated names; baseline is added")
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", choices=("jax", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--grads", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps((child_jax if args.child == "jax" else child_torch)(args.repeats, args.grads)))
        return

    import numpy as np  # pylint: disable=import-outside-toplevel
    names = ["baseline"] + [n for n in args.contenders.split(",") if n and n != "baseline"]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        sys.exit(f"--contenders: unknown {unknown}; expected names from {list(CONTENDERS)}")
    rounds = []
    with tempfile.TemporaryDirectory() as directory:
        deviation = {}
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            results = {name: run_child(name, args.repeats, directory) for name in order}
            rounds.append(results)
            if r == 0:
                base = np.load(os.path.join(directory, "baseline.npy"))
                for name in names:
                    path = os.path.join(directory, f"{name}.npy")
                    if os.path.exists(path):
                        deviation[name] = float(np.abs(np.load(path) - base).max() / np.abs(base).max())
            print(f"round {r + 1}/{args.rounds}: " + "  ".join(
                f"{n} {results[n].get('examples_per_s', float('nan')):.1f}" for n in names), file=sys.stderr)
    summary = {}
    for name in names:
        good = [rd for rd in rounds if "examples_per_s" in rd[name] and "examples_per_s" in rd["baseline"]]
        if not good:
            summary[name] = {"error": rounds[0][name].get("error", "failed")}
            continue
        ratios = [rd[name]["examples_per_s"] / rd["baseline"]["examples_per_s"] for rd in good]
        rates = [rd[name]["examples_per_s"] for rd in good]
        summary[name] = {"examples_per_s": statistics.median(rates), "ratio_to_baseline": statistics.median(ratios),
                         "ratio_min": min(ratios), "ratio_max": max(ratios), "rounds": len(good),
                         "max_relative_gradient_deviation": deviation.get(name)}
        first = good[0][name]
        if first.get("matmul_f32_flops_per_s"):  # under this contender's settings: shows which ISA its matmuls use
            matmul = statistics.median(rd[name]["matmul_f32_flops_per_s"] for rd in good)
            summary[name]["matmul_f32_gflop_s"] = matmul / 1e9
            if first.get("kernel_flops"):
                summary[name]["share_of_matmul_rate"] = first["kernel_flops"] * summary[name]["examples_per_s"] / BATCH / matmul
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from tracin_bench import cpu_isa  # pylint: disable=import-outside-toplevel  (the one owner; imports jax)
    result = {"command": "python benchmarks/xla_options.py " + " ".join(sys.argv[1:]), "cpu_isa": cpu_isa(),
              "date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(), "rounds": args.rounds,
              "summary": summary}
    print(f"{'contender':20s} {'ex/s':>7s} {'ratio [min, max]':>22s} {'grad dev':>9s} {'matmul share':>12s} "
          f"{'2048 matmul GFLOP/s':>20s}")
    for name, s in summary.items():
        if "error" in s:
            print(f"{name:20s} unsupported: {s['error']}")
            continue
        dev = s["max_relative_gradient_deviation"]
        share = s.get("share_of_matmul_rate")
        print(f"{name:20s} {s['examples_per_s']:7.1f} {s['ratio_to_baseline']:8.2f} [{s['ratio_min']:.2f}, "
              f"{s['ratio_max']:.2f}]   {'' if dev is None else f'{dev:9.1e}'} "
              f"{'' if share is None else f'{100 * share:11.0f}%':12s} {s.get('matmul_f32_gflop_s', float('nan')):20.0f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

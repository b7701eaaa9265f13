"""Where gbair's per-example prompt-gradient kernel spends its time on this CPU, beside torch.func's.

    python benchmarks/kernel_profile.py [--rounds 5] [--json OUT]

The workload of tracin_bench.py (MiniLM prompt model, batch 32, 64 text + 16 prompt tokens, float32).
In one process:
1. Wall time per batch of each kernel, unprofiled and interleaved (`tracin_bench.interleaved_seconds`).
2. One profiled pass of each: gbair's compiled kernel under jax.profiler (XLA's per-op events, read
   from the trace's XSpace protobuf), torch.func under torch.profiler (self time per aten op). Each
   matmul is binned as *dense* (the projections and the MLP, [B*S, 384 or 1536] rows) or *attention*
   (the per-head [S, S] and [S, 32] products); everything else (elementwise ops, reductions, copies,
   the profiler's own overhead) is the unprofiled wall time minus the matmuls, so both sides are
   measured the same way even though torch.profiler inflates small ops.
3. The float32 matmul rate of jax.jit and torch at the kernel's own matmul shapes, interleaved.
4. A formulation tried against gbair's: attention computed heads-major ([B, H, S, D], q, k and v
   transposed once; `heads_major_attend`), interleaved with the baseline kernel, with its gradients'
   largest relative deviation (a different dot order, so not bitwise equal).

It answers which part bounds the kernel against torch.func: the matmul library XLA calls at these
shapes, or the rest.
"""

import argparse
import collections
import glob
import json
import os
import re
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tracin_bench  # noqa: E402  (benchmarks/)
from gbair.influence.gradients import per_example_grads  # noqa: E402
from gbair.models import bert  # noqa: E402

SEQUENCE = tracin_bench.LENGTH + tracin_bench.PROMPT  # 80 positions: the widest attention matmul dim
# (lhs, rhs) shapes of the kernel's matmuls: MLP in / out, the four projections, attention (QK^T, PV), and a
# square reference.
MATMUL_SHAPES = {"dense 2560x384 @ 384x1536": ((2560, 384), (384, 1536)),
                 "dense 2560x1536 @ 1536x384": ((2560, 1536), (1536, 384)),
                 "dense 2560x384 @ 384x384": ((2560, 384), (384, 384)),
                 "attention 384 x (80x32 @ 32x80)": ((384, 80, 32), (384, 32, 80)),
                 "attention 384 x (80x80 @ 80x32)": ((384, 80, 80), (384, 80, 32)),
                 "square 2048 @ 2048": ((2048, 2048), (2048, 2048))}


def heads_major_attend(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array, dtype) -> jax.Array:
    """`bert.attend` with its batched matmuls over [B, H, S, D] (q, k and v transposed once) instead of
    einsums over [B, S, H, D]: the same maths in another dot order."""
    q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
    logits = jnp.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(q.shape[-1])
    weights = jax.nn.softmax(logits.astype(jnp.float32) + bias, axis=-1).astype(dtype)
    return jnp.einsum("bhqk,bhkd->bhqd", weights, v).transpose(0, 2, 1, 3)


def heads_major_kernel(model, args):
    """The baseline kernel traced with `heads_major_attend` in place of `bert.attend`, compiled."""
    attend, bert.attend = bert.attend, heads_major_attend  # BertLayer looks the name up when traced
    try:
        return jax.jit(lambda params, prompt, batch: per_example_grads(
            model.loss_fn, params, prompt, batch, method="tiled")).lower(*args).compile()
    finally:
        bert.attend = attend


def matmul_kind(shapes: list[tuple[int, ...]]) -> str:
    """'attention' for a batched matmul whose operands' two minor dims are all at most the sequence length
    (the per-head products; their leading dims are batch x heads), else 'dense' (projections, the MLP, the head)."""
    batched = [s for s in shapes if len(s) >= 2]
    small = all(len(s) >= 3 and max(s[-2:]) <= SEQUENCE for s in batched)
    return "attention" if batched and small else "dense"


def _shapes(text: str) -> list[tuple[int, ...]]:
    return [tuple(int(d) for d in dims.split(",") if d) for dims in re.findall(r"f32\[([\d,]*)\]", text)]


def xla_matmul_ops(hlo: str) -> dict[str, str]:
    """Name of each op of the optimised HLO's entry computation (the ops XLA's runtime executes and the
    profiler names) that is or calls a dot -> its matmul kind."""
    bodies, current = collections.defaultdict(list), None
    for line in hlo.splitlines():
        head = re.match(r"^(ENTRY )?%?([\w.\-]+) .*\{$", line)
        if head:
            current = "ENTRY" if head.group(1) else head.group(2)
        elif current:
            bodies[current].append(line)
    kinds = {}
    for line in bodies["ENTRY"]:
        op = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = .*?\b(fusion|dot)\(", line)
        called = re.search(r"calls=%?([\w.\-]+)", line)
        dots = [line] if op and op.group(2) == "dot" else [
            body for body in bodies.get(called.group(1), []) if " dot(" in body] if op and called else []
        if dots:
            kinds[op.group(1)] = matmul_kind(_shapes(dots[0]))
    return kinds


def profile_gbair(kernel, args, calls: int = 3) -> dict[str, float]:
    """Seconds per call in dense and attention matmuls, from XLA's op events under jax.profiler."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=import-outside-toplevel
    kinds = xla_matmul_ops(kernel.lower(*args).compile().as_text())
    with tempfile.TemporaryDirectory() as directory:
        jax.profiler.start_trace(directory)
        for _ in range(calls):
            kernel(*args).block_until_ready()
        jax.profiler.stop_trace()
        space = xplane_pb2.XSpace()
        with open(glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True)[0], "rb") as f:
            space.ParseFromString(f.read())
    seconds = collections.Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                kind = kinds.get(names.get(event.metadata_id, ""))
                if kind:
                    seconds[kind] += event.duration_ps * 1e-12 / calls
    return {"dense": seconds["dense"], "attention": seconds["attention"], "matmul_ops": len(kinds)}


def profile_torch(run, calls: int = 3) -> dict[str, float]:
    """Seconds per call in dense and attention matmuls (aten mm / addmm / bmm self time) under torch.profiler."""
    from torch.profiler import ProfilerActivity, profile  # pylint: disable=import-outside-toplevel
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(calls):
            run()
    seconds, ops = collections.Counter(), 0
    for event in prof.key_averages(group_by_input_shape=True):
        if event.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"):
            shapes = [tuple(s) for s in event.input_shapes if len(s) >= 2]
            seconds[matmul_kind(shapes)] += event.self_cpu_time_total * 1e-6 / calls
            ops += event.count // calls
    return {"dense": seconds["dense"], "attention": seconds["attention"], "matmul_ops": ops}


def matmul_rates(rounds: int) -> dict[str, dict]:
    """GFLOP/s of jax.jit(matmul) and torch.matmul at MATMUL_SHAPES, interleaved; ratio = jax / torch per round."""
    import torch  # pylint: disable=import-outside-toplevel
    out, rng = {}, np.random.default_rng(0)
    for name, (a_shape, b_shape) in MATMUL_SHAPES.items():
        a, b = rng.random(a_shape, np.float32), rng.random(b_shape, np.float32)
        ja, jb, ta, tb = jnp.asarray(a), jnp.asarray(b), torch.from_numpy(a), torch.from_numpy(b)
        matmul, repeats = jax.jit(jnp.matmul), 5
        times = tracin_bench.interleaved_seconds(
            {"jax": lambda: [matmul(ja, jb).block_until_ready() for _ in range(repeats)],
             "torch": lambda: [torch.matmul(ta, tb) for _ in range(repeats)]}, rounds)
        flops = 2 * np.prod(a_shape) * b_shape[-1] * repeats
        rates = {k: [flops / t / 1e9 for t in v] for k, v in times.items()}
        out[name] = {"jax_gflop_s": statistics.median(rates["jax"]), "torch_gflop_s": statistics.median(rates["torch"]),
                     **tracin_bench.speedup_summary("jax_over_torch", rates["jax"], rates["torch"])}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import torch  # pylint: disable=import-outside-toplevel
    import torch_peers  # pylint: disable=import-outside-toplevel
    from gbair import assets  # pylint: disable=import-outside-toplevel
    from gbair.batching import make_batch  # pylint: disable=import-outside-toplevel
    from gbair.classifiers import minilm_classifier  # pylint: disable=import-outside-toplevel

    torch.set_num_threads(os.cpu_count() or 1)
    model = minilm_classifier(class_descriptions=tracin_bench.DESCRIPTIONS, class_names=["ham", "spam"],
                              prompt_length=tracin_bench.PROMPT, max_length=tracin_bench.LENGTH)
    data = tracin_bench.corpus(tracin_bench.BATCH)
    features = model.featurize(data.texts)
    prompt = np.asarray(model.init_prompt(jax.random.key(0)))
    batch = jax.device_put(make_batch(features, data.labels, np.arange(len(data)), np.ones(len(data))))
    kernel = jax.jit(lambda params, prompt, batch: per_example_grads(model.loss_fn, params, prompt, batch,
                                                                     method="tiled"))
    jax_args = (model.params, jax.device_put(prompt), batch)
    module = torch_peers.build_torch_classifier(assets.minilm_dir(), np.asarray(model.params["class_embeddings"]),
                                                scale=20.0)
    torch_run = lambda: torch_peers.torch_func_grads(module, prompt, features["input_ids"],  # noqa: E731
                                                     features["mask"], data.labels)
    variant = heads_major_kernel(model, jax_args)
    base, tried = np.asarray(kernel(*jax_args)), np.asarray(variant(*jax_args))
    wall = tracin_bench.interleaved_seconds({"gbair": lambda: kernel(*jax_args).block_until_ready(),
                                             "torch_func": torch_run,
                                             "heads_major": lambda: variant(*jax_args).block_until_ready()},
                                            args.rounds)
    parts = {"gbair": profile_gbair(kernel, jax_args), "torch_func": profile_torch(torch_run)}
    for name, part in parts.items():
        part["wall"] = statistics.median(wall[name])
        part["rest"] = part["wall"] - part["dense"] - part["attention"]
    result = {"command": "python benchmarks/kernel_profile.py " + " ".join(sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d"), "cpu_isa": tracin_bench.cpu_isa(), "cores": os.cpu_count(),
              "jax_version": jax.__version__, "torch_version": torch.__version__, "rounds": args.rounds,
              "batch": tracin_bench.BATCH, "seconds_per_batch": parts,
              "time_ratio_gbair_over_torch_func": tracin_bench.speedup_summary("ratio", wall["gbair"], wall["torch_func"]),
              "matmul_rates": matmul_rates(args.rounds),
              "heads_major": {"examples_per_s": tracin_bench.BATCH / statistics.median(wall["heads_major"]),
                              **tracin_bench.speedup_summary("speedup", wall["gbair"], wall["heads_major"]),
                              "max_relative_gradient_deviation": float(np.abs(tried - base).max() / np.abs(base).max())}}
    print(f"{'part':28s} {'gbair ms':>9s} {'torch.func ms':>14s} {'gbair / torch':>14s}")
    for part in ("dense", "attention", "rest", "wall"):
        ours, peer = parts["gbair"][part] * 1e3, parts["torch_func"][part] * 1e3
        label = {"dense": "dense matmuls", "attention": "attention matmuls",
                 "rest": "everything else (wall - mm)", "wall": "wall per batch (unprofiled)"}[part]
        print(f"{label:28s} {ours:9.1f} {peer:14.1f} {ours / peer:14.2f}")
    print(f"\n{'matmul (float32)':34s} {'jax GFLOP/s':>12s} {'torch GFLOP/s':>14s} {'jax / torch [min, max]':>24s}")
    for name, rate in result["matmul_rates"].items():
        print(f"{name:34s} {rate['jax_gflop_s']:12.0f} {rate['torch_gflop_s']:14.0f} "
              f"{rate['jax_over_torch']:10.2f} [{rate['jax_over_torch_min']:.2f}, {rate['jax_over_torch_max']:.2f}]")
    tried = result["heads_major"]
    print(f"\nheads-major attention: {tried['speedup']:.2f}x the baseline kernel [{tried['speedup_min']:.2f}, "
          f"{tried['speedup_max']:.2f}], gradients within {tried['max_relative_gradient_deviation']:.1e} (relative)")
    if args.json:
        from gbair import files  # pylint: disable=import-outside-toplevel
        files.write_text(args.json, json.dumps(result, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

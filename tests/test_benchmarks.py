"""The benchmarks' timing rules: contenders interleaved round by round, ratios taken per round."""

import pathlib

import pytest

from benchmarks import tracin_bench


def test_contenders_alternate_within_every_round_after_one_warm_up_each():
    calls = []
    times = tracin_bench.interleaved_seconds({name: (lambda name=name: calls.append(name)) for name in "abc"}, 4)
    assert calls == list("abc") + list("abc") + list("cba") + list("abc") + list("cba")
    assert {name: len(seconds) for name, seconds in times.items()} == {"a": 4, "b": 4, "c": 4}


def test_speedups_pair_each_round_with_itself():
    # the peer slows down with the machine in rounds 2 and 3 and so do we: each round's ratio is 2
    ours, peer = [10.0, 5.0, 5.0, 10.0], [5.0, 2.5, 2.5, 5.0]
    assert tracin_bench.speedup_summary("s", ours, peer) == {"s": 2.0, "s_min": 2.0, "s_max": 2.0}
    spread = tracin_bench.speedup_summary("s", [4.0, 6.0, 9.0], [2.0, 2.0, 3.0])  # ratios 2, 3, 3
    assert spread == {"s": 3.0, "s_min": 2.0, "s_max": 3.0}


def test_cpu_isa_names_the_cpu_and_only_the_vector_flags_it_has():
    isa = tracin_bench.cpu_isa()
    assert isa["model"]
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo: flags are unknown (None)")
    flags = set(next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split(":")[1].split())
    assert set(isa["flags"]) <= flags
    assert set(isa["flags"]) == {f for f in flags if f in ("avx2", "avx_vnni") or f.startswith(("avx512", "amx"))}


def test_kernel_profile_bins_each_matmul_of_real_optimised_hlo_by_its_shapes():
    import jax
    import jax.numpy as jnp
    from benchmarks import kernel_profile

    def f(x, w, a, b):  # one projection-like dot and one per-head-like batched dot
        return (x @ w).sum() + jnp.einsum("bqd,bkd->bqk", a, b).sum()

    args = (jnp.ones((100, 384)), jnp.ones((384, 64)), jnp.ones((4, 16, 8)), jnp.ones((4, 16, 8)))
    kinds = kernel_profile.xla_matmul_ops(jax.jit(f).lower(*args).compile().as_text())
    assert sorted(kinds.values()) == ["attention", "dense"]


def test_matmul_kind_reads_the_minor_dims_as_torch_profiler_reports_them():
    from benchmarks import kernel_profile
    assert kernel_profile.matmul_kind([(384, 80, 32), (384, 32, 80)]) == "attention"  # QK^T per head
    assert kernel_profile.matmul_kind([(32, 80, 384), (32, 384, 384)]) == "dense"  # a projection under vmap
    assert kernel_profile.matmul_kind([(2560, 384), (384, 1536)]) == "dense"

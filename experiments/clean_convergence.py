"""Did the clean bound's training converge? Its validation loss at every checkpoint, over the seeds of an arm.

    python experiments/clean_convergence.py RUNS/ARM --out experiments/evidence/convergence_ARM

RUNS/ARM holds one evidence-study workdir per seed (`experiments/evidence_study.py`, RUNS/ARM/seed=<s>).
For each, the clean run's checkpoints (cells/<dataset>/clean/seed=<s>) carry the validation metrics
the trainer recorded at every checkpoint. The table gives, per checkpoint step, the mean validation
loss over the seeds with its min and max, and how many seeds reach their lowest validation loss
there. Lowest losses at the last step mean the loss was still falling when training stopped. The
protocol (H5) reports this for the 4x-budget arm beside the main arm's 100 steps.
"""

import argparse
import pathlib
import statistics

from gbair import files
from gbair.train import prompt_checkpoints
from gbair.workdir import checkpoints_dir


def validation_losses(workdir: pathlib.Path) -> dict[int, float]:
    """step -> validation loss of the clean run of the workdir's one (dataset, seed)."""
    runs = sorted((workdir / "cells").glob("*/clean/seed=*"))  # Cell.clean_path of the workdir's one seed
    if len(runs) != 1:
        raise SystemExit(f"{workdir}: expected one clean run under cells/*/clean/, found {len(runs)}")
    run = runs[0]
    checkpoints = prompt_checkpoints.load_prompt_checkpoints(checkpoints_dir(run))
    missing = [c.step for c in checkpoints if not c.validation]
    if missing:
        raise SystemExit(f"{run}: checkpoints {missing} hold no validation metrics")
    return {c.step: float(c.validation["loss"]) for c in checkpoints}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arm_runs", type=pathlib.Path, help="RUNS/ARM, holding seed=<s> workdirs")
    parser.add_argument("--out", required=True, help="path prefix of OUT.md")
    args = parser.parse_args()
    workdirs = sorted(args.arm_runs.glob("seed=*"), key=lambda p: int(p.name.split("=")[1]))
    if not workdirs:
        raise SystemExit(f"{args.arm_runs}: no seed=<s> workdirs")
    losses = {int(w.name.split("=")[1]): validation_losses(w) for w in workdirs}
    steps = sorted({step for per_seed in losses.values() for step in per_seed})
    best = [min(per_seed, key=per_seed.get) for per_seed in losses.values()]
    lines = [f"# Clean bound's validation loss per checkpoint ({args.arm_runs.name}, seeds "
             f"{', '.join(map(str, losses))})", "",
             f"    python experiments/clean_convergence.py {args.arm_runs} --out {args.out}", "",
             "| step | mean validation loss | min | max | seeds lowest here |", "|---:|---:|---:|---:|---:|"]
    for step in steps:
        values = [per_seed[step] for per_seed in losses.values() if step in per_seed]
        lines.append(f"| {step} | {statistics.mean(values):.4f} | {min(values):.4f} | {max(values):.4f} | "
                     f"{best.count(step)} of {len(values)} |")
    files.write_text(f"{args.out}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

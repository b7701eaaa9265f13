"""What each G-BAIR strategy costs to score one training set, relative to TracIn, in one process.

    python benchmarks/strategy_cost.py --workdir runs/spam_paper [--rate 0.3] [--seed 0] [--json OUT]
        [--strategies influence_function datainf trak]

Takes a finished sweep's cell and scores its corrupted run (its checkpoints and its misclassified
validation set V) as the loop does at iteration 1, each strategy with a fresh InfluenceMatrices (its
family's matrix computed within its time; the scorers' default options). Each runs twice (the first
call compiles) and the second is reported, except cleanlab (3-fold cross-validated training: its
trainings dominate) and a training run, timed once.
Reports seconds per 1,000 training examples and the ratio to TracIn (the dot-and-cosine pass the
loop uses). Training a run itself (TrainConfig) is the unit everything else is measured against in
the sweep; it is listed too. --strategies times TracIn and only those (names of SCORED, or
"training run").
"""

import argparse
import pathlib
import platform
import tempfile
import time

import jax

from gbair import explain, files
from gbair.influence.matrices import InfluenceMatrices
from gbair.recovery import loop, strategies
from gbair.train import trainer

SCORED = ("influence_function", "datainf", "trak", "loss", "random", "cleanlab")
ONCE = ("cleanlab", "training run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a finished gbair.main sweep workdir")
    parser.add_argument("--rate", type=float, default=None, help="the cell's corruption rate (default the first)")
    parser.add_argument("--seed", type=int, default=None, help="the cell's seed (default the first)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--strategies", nargs="+", choices=SCORED + ("training run",), default=None,
                        help="time TracIn and only these (default: all)")
    args = parser.parse_args()

    run = explain.RunExplainer(args.workdir)
    experiment, cell = run.experiment, run.cell(None, args.rate, args.seed)
    model, splits, noisy = experiment.model, run.splits(cell), run.noisy_train(cell)
    checkpoints = run.checkpoints_before(cell, "tracin", 1)
    chosen = trainer.select_checkpoint(checkpoints, experiment.train_config.select_by)
    validation = splits["validation"]
    wrong = trainer.predict(model, chosen.prompt, validation).argmax(1) != validation.labels
    misclassified = validation.subset(wrong.nonzero()[0])
    corrupted = noisy.labels != run.true_labels(cell, noisy)

    with tempfile.TemporaryDirectory() as scratch:
        sweep = loop.Sweep(scratch, model, experiment.train_config, experiment.recovery, total_runs=4)

        def fit(data, name):
            return sweep.fit(data, validation, pathlib.Path(name), cell.seed)[1].prompt

        def context() -> strategies.SelectionContext:
            """The corrupted run's context with a fresh InfluenceMatrices: a family is computed within its time."""
            return strategies.SelectionContext(
                model=model, train=noisy, prompt=chosen.prompt, misclassified=misclassified, corrupted=corrupted,
                seed=cell.seed, fit=fit, influence=InfluenceMatrices(model, checkpoints, noisy, misclassified,
                                            batch_size=experiment.recovery.tracin_batch_size))

        timed = {"tracin": lambda: context().influence["dot"],  # TracIn's dot and cosine, one pass
                 **{name: (lambda name=name: strategies.score(name, context())) for name in SCORED},
                 "training run": lambda: sweep.fit(noisy, validation, pathlib.Path("timing"), cell.seed)}
        if args.strategies:
            timed = {name: fn for name, fn in timed.items() if name == "tracin" or name in args.strategies}
        seconds = {}
        for name, fn in timed.items():
            if name not in ONCE:
                fn()  # compile
            start = time.perf_counter()
            jax.block_until_ready(fn())
            seconds[name] = time.perf_counter() - start
            print(f"{name}: {seconds[name]:.2f} s", flush=True)

    per_1000 = {name: 1000 * s / len(noisy) for name, s in seconds.items()}
    results = {"workdir": str(files.path(args.workdir)), "cell": f"{cell.dataset} rate={cell.rate:g} seed={cell.seed}",
               "n_train": len(noisy), "n_misclassified": len(misclassified), "checkpoints": len(checkpoints),
               "prompt_numbers": int(model.prompt_shape[0] * model.prompt_shape[1]),
               "machine": f"{platform.machine()}, {jax.device_count()} {jax.default_backend()} device(s)",
               "seconds_per_1000_train": per_1000,
               "relative_to_tracin": {name: s / seconds["tracin"] for name, s in seconds.items()}}
    print("\n| strategy | s per 1,000 training examples | relative to TracIn |\n|:---|---:|---:|")
    for name in seconds:
        print(f"| {name} | {per_1000[name]:.2f} | {results['relative_to_tracin'][name]:.2f} |")
    if args.json:
        files.write_json(args.json, results)


if __name__ == "__main__":
    main()

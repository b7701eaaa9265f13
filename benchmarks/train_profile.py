"""Where one training run of a sweep spends its time: start-up, compilation, optimisation steps,
validation evaluations, checkpoint writes, the test evaluation and the one-class check.

Builds the model and splits of an experiment config (default: the demo's), then trains the same run
`--runs` times in fresh checkpoint folders, as a sweep does (the first run compiles, later runs reuse
the compiled step), timing each phase by wrapping the functions the trainer calls:

    python benchmarks/train_profile.py [--gin_file configs/experiments/demo.gin] [--runs 2] [--json OUT]

Phases are wall-clock seconds on this machine; their shares are what the sweep's overhead work needs.
"""

import time

START = time.perf_counter()

import argparse  # noqa: E402
import collections  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402

import gin  # noqa: E402
import jax  # noqa: E402

import gbair.config  # noqa: E402,F401  (registers the gin configurables)
from gbair.train import prompt_checkpoints, trainer  # noqa: E402

IMPORTED = time.perf_counter()


class Timer:
    """Accumulates wall time per phase; `wrap` times every call of a function (results ready)."""

    def __init__(self):
        self.seconds, self.calls = collections.defaultdict(float), collections.Counter()

    @contextlib.contextmanager
    def phase(self, name: str):
        begin = time.perf_counter()
        yield
        self.seconds[name] += time.perf_counter() - begin
        self.calls[name] += 1

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            with self.phase(name):
                return jax.block_until_ready(fn(*args, **kwargs))
        return timed


def experiment_parts(gin_file: str, bindings: list[str]):
    gin.parse_config_files_and_bindings([gin_file], bindings, skip_unknown=True)
    model = gin.query_parameter("%MODEL").scoped_configurable_fn()
    splits = gin.query_parameter("%SPLITS").scoped_configurable_fn()
    config = gin.query_parameter("Experiment.train_config").scoped_configurable_fn()
    return model, splits, config


def profile_run(model, splits, config, timer: Timer, directory: str) -> float:
    """One sweep training run (trainer.train, then the run's test metrics and one-class check)."""
    begin = time.perf_counter()
    trainer.train(model, splits["train"], config, f"{directory}/checkpoints", validation=splits["validation"])
    chosen = trainer.select_checkpoint(prompt_checkpoints.load_prompt_checkpoints(f"{directory}/checkpoints"),
                                       config.select_by)
    with timer.phase("test evaluation"):
        trainer.evaluate(model, chosen.prompt, splits["test"], config.eval_batch_size)
    with timer.phase("one-class check"):
        trainer.warn_if_one_class(model, chosen, splits["validation"], directory, config.eval_batch_size)
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gin_file", default="configs/experiments/demo.gin")
    parser.add_argument("--gin", action="append", default=[], help="extra gin bindings")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    timer = Timer()
    with timer.phase("start-up: model and data"):
        model, splits, config = experiment_parts(args.gin_file, args.gin)
    timer.seconds["start-up: imports"] = IMPORTED - START
    # Time the phases inside trainer.train by wrapping what it calls.
    step_fns = {}
    original_step_fn = trainer._train_step_fn  # pylint: disable=protected-access

    def timed_step_fn(loss_fn, optimizer):
        if (loss_fn, optimizer) not in step_fns:
            step_fns[loss_fn, optimizer] = timer.wrap("optimisation steps", original_step_fn(loss_fn, optimizer))
        return step_fns[loss_fn, optimizer]

    trainer._train_step_fn = timed_step_fn  # pylint: disable=protected-access
    trainer.predict = timer.wrap("validation evaluations", trainer.predict)  # train() calls it per checkpoint
    prompt_checkpoints.save = timer.wrap("checkpoint writes", prompt_checkpoints.save)
    trainer.fingerprint = timer.wrap("run fingerprint", trainer.fingerprint)
    model = dataclasses.replace(model, featurize=timer.wrap("tokenising", model.featurize))

    runs = []
    for r in range(args.runs):
        before = dict(timer.seconds)
        with tempfile.TemporaryDirectory() as directory:
            total = profile_run(model, splits, config, timer, directory)
        phases = {k: v - before.get(k, 0.0) for k, v in timer.seconds.items()
                  if not k.startswith("start-up") and v - before.get(k, 0.0) > 0}
        # the test evaluation and the one-class check (when not recorded) call trainer.predict inside their phase
        phases["validation evaluations"] = phases.get("validation evaluations", 0.0) - sum(
            phases.get(k, 0.0) for k in ("test evaluation", "one-class check"))
        phases["other (batching, logging, bookkeeping)"] = total - sum(
            v for k, v in phases.items() if k not in ("tokenising",))
        runs.append({"run": r + 1, "total_s": total, "phases_s": phases})
    results = {"command": " ".join(["python benchmarks/train_profile.py", f"--gin_file {args.gin_file}",
                                    *[f"--gin {b}" for b in args.gin], f"--runs {args.runs}"]),
               "machine": f"{platform.processor() or platform.machine()}, {jax.device_count()} {jax.default_backend()} "
                          f"device(s)", "date": time.strftime("%Y-%m-%d"),
               "start_up_s": {k: v for k, v in timer.seconds.items() if k.startswith("start-up")},
               "train_config": dataclasses.asdict(config), "n_train": len(splits["train"]),
               "n_validation": len(splits["validation"]), "n_test": len(splits["test"]), "runs": runs}
    for key, value in results["start_up_s"].items():
        print(f"{key:45s} {value:7.2f} s")
    for run in runs:
        print(f"run {run['run']}: {run['total_s']:.2f} s")
        for key, value in sorted(run["phases_s"].items(), key=lambda kv: -kv[1]):
            print(f"  {key:43s} {value:7.2f} s  {100 * value / run['total_s']:5.1f}%")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

"""Linear datamodeling score (TRAK, Park et al. 2023) of each attribution method on one cell.

    python experiments/lds.py WORKDIR --rate 0.3 [--subsets 50] --out experiments/evidence/lds

WORKDIR is a finished evidence-study workdir (one seed; `experiments/evidence_study.py`). On its
corrupted training set (N examples) the prompt is retrained on `subsets` random halves with the
run's recipe (resumable: WORKDIR/lds/rate=<r>/subset=<j>/, each finished subset's margins in
margins.json). For every example v of the misclassified validation set V (of the prompt trained on
all N), a method's prediction for subset S is the summed attribution sum_{z in S} score(z, v) (scores
from the full run's checkpoints, as the cleaning step uses them) and the truth is v's margin
log p(y_v) - log(1 - p(y_v)) under the prompt retrained on S. LDS(v) = Spearman correlation over the
subsets; the table gives its mean over V with a 95% Student-t interval, and trak's difference
from each other method paired by query (Holm-corrected). It ranks attribution methods
without the noise of one cleaning step (a higher LDS predicts retraining better). Dampings: the
workdir's RecoveryConfig.damping (the study's choice on its tuning seeds), else each scorer's default.
"""

import argparse
import dataclasses
import json
import warnings

import numpy as np
from scipy import stats

from gbair import files, run_record
from gbair.reports import findings
from gbair.explain import RunExplainer
from damping_sensitivity import DEFAULT_DAMPING, CellGradients  # experiments/: run as python experiments/lds.py
from gbair.train import prompt_checkpoints
from gbair.train import trainer


def margins(model, prompt, dataset) -> np.ndarray:
    """[N] log p(y) - log(1 - p(y)) of each example's (true) label."""
    p = trainer.predict(model, prompt, dataset).astype(np.float64)[np.arange(len(dataset)), dataset.labels]
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def attributions(grads: CellGradients, damping: dict[str, float]) -> dict[str, np.ndarray]:
    """Each method's [N, |V|] scores (positive: z raises v's margin) from one set of stored gradients,
    by the closed forms that experiments/damping_sensitivity.py checks against the library."""
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-30)  # noqa: E731
    out = {"tracin": grads.tracin(),
           "tracin_cosine": np.einsum("c,cnd,ctd->nt", grads.rates, unit(grads.given), unit(grads.query))}
    for curvature in ("empirical_fisher", "fisher"):
        out[f"influence_function ({curvature})"] = grads.influence_function(
            damping["influence_function"], curvature)
    out["datainf"] = grads.datainf(damping["datainf"])
    out["trak"] = grads.trak(damping["trak"])
    return out


def linear_datamodeling_scores(members: np.ndarray, scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[|V|] LDS(v): the Spearman correlation over the J subsets between the summed attribution
    members @ scores ([J, N] 0/1 x [N, |V|]) and the retrained margins truth ([J, |V|]). NaN where it
    is undefined (a constant column): such a query is left out of every mean and difference."""
    predicted = members @ scores
    with warnings.catch_warnings():  # a constant column is expected; it gives NaN
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return np.array([stats.spearmanr(predicted[:, v], truth[:, v]).statistic for v in range(truth.shape[1])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--subsets", type=int, default=50)
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--out", required=True, help="path prefix of OUT.md and OUT.json")
    args = parser.parse_args()
    run = RunExplainer(args.workdir)
    cell = run.cell(None, args.rate, None)
    experiment, model = run.experiment, run.experiment.model
    train, validation = run.noisy_train(cell), run.splits(cell)["validation"]
    checkpoints = run.checkpoints_before(cell, "corrupted", 1)
    reported = trainer.select_checkpoint(checkpoints, experiment.train_config.select_by)
    wrong = trainer.predict(model, reported.prompt, validation).argmax(1) != validation.labels
    queries = validation.subset(np.flatnonzero(wrong))
    root = files.path(args.workdir) / "lds" / f"rate={args.rate:g}"
    truth, members = [], []
    for j in range(args.subsets):
        chosen = np.sort(np.random.default_rng([cell.seed, j]).permutation(len(train))[:round(args.fraction * len(train))])
        mask = np.zeros(len(train), bool)
        mask[chosen] = True
        record = files.read_json(root / f"subset={j}" / "margins.json")
        if record is None:
            config = dataclasses.replace(experiment.train_config, seed=cell.seed)
            trainer.train(model, train.subset(chosen), config, root / f"subset={j}" / "checkpoints",
                          validation=None if config.select_by == "last" else validation)
            saved = prompt_checkpoints.load_prompt_checkpoints(root / f"subset={j}" / "checkpoints")
            prompt = trainer.select_checkpoint(saved, config.select_by).prompt
            record = {"ids": list(queries.ids), "margins": margins(model, prompt, queries).tolist()}
            files.write_json(root / f"subset={j}" / "margins.json", record)
            print(f"subset {j + 1}/{args.subsets} trained", flush=True)
        truth.append(record["margins"])
        members.append(mask)
    truth, members = np.array(truth), np.array(members, np.float64)  # [J, |V|], [J, N]
    grads = CellGradients(run, cell)
    if list(grads.misclassified.ids) != list(queries.ids):
        raise AssertionError("the misclassified validation sets differ")
    damping = {**DEFAULT_DAMPING, **(experiment.recovery.damping or {})}
    per_method = {m: linear_datamodeling_scores(members, s, truth) for m, s in attributions(grads, damping).items()}
    lines, table = [], []
    def defined(x: np.ndarray) -> list[float]:  # the queries whose LDS is defined
        return list(x[np.isfinite(x)])

    for method, per_v in per_method.items():
        values = defined(per_v)
        test, n = findings.t_test(values), len(values)
        table.append(f"| {method} | {test.mean:.3f} [{test.ci_low:.3f}, {test.ci_high:.3f}] | {n} |")
        lines.append({"method": method, "lds_mean": test.mean, "ci_low": test.ci_low, "ci_high": test.ci_high,
                      "n_queries": n})
    # trak (H3's reference) against each other method, paired by query, Holm over the comparisons.
    others = [m for m in per_method if m != "trak"]
    tests = [findings.t_test(defined(per_method["trak"] - per_method[m])) for m in others]
    paired = [f"| trak - {m} | {t.mean:+.3f} [{t.ci_low:+.3f}, {t.ci_high:+.3f}] | {t.p:.2g} | {h:.2g} |"
              for m, t, h in zip(others, tests, findings.holm([t.p for t in tests]))]
    source = run_record.source_version()
    header = [f"# Linear datamodeling score ({cell.dataset}, rate {args.rate:g}, seed {cell.seed}; "
              f"{args.subsets} random {args.fraction:g}-subsets of {len(train)})", "",
              f"    python experiments/lds.py {args.workdir} --rate {args.rate:g} --subsets {args.subsets} --out {args.out}",
              "", f"Written at gbair commit {source['git_commit']} (local changes to gbair/ or configs/: "
              f"{source['local_changes']}). The attributions come from the workdir's own checkpoints.",
              "", "Spearman correlation over subsets between summed attribution and the retrained margin, "
              "mean over the misclassified validation examples [95% interval]:", "",
              "| method | LDS | queries |", "|:---|---:|---:|"]
    body = table + ["", "Paired by query (this one cell; queries, not seeds, are the units), "
                    "mean difference of LDS [95% interval], t-test p and Holm's p over the rows:", "",
                    "| difference | mean [95% interval] | p | Holm p |", "|:---|---:|---:|---:|"] + paired
    files.write_text(f"{args.out}.md", "\n".join(header + body) + "\n")
    files.write_text(f"{args.out}.json", json.dumps(lines, indent=1) + "\n")
    print("\n".join(header + body))


if __name__ == "__main__":
    main()

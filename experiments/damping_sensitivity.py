"""Damping and curvature of the second-order scorers, chosen on tuning seeds from stored gradients.

    python experiments/damping_sensitivity.py WORKDIR [WORKDIR ...] --out experiments/evidence/damping

For every cell of the given workdirs (each a finished corrupted run: the tuning seeds), the
per-example prompt gradients of the training set (under every label) and of the misclassified
validation set V are computed once per checkpoint; then, for each scorer and each damping of a log
grid, the [N, |V|] influence matrix is formed in closed form through N x N Gram matrices (no
retraining, no new gradients), G-BAIR's rule (`strategies.score`, minus the sum over V) ranks the
training set, and detection AUROC / average precision against the flipped labels are recorded.

Scorers: influence_function with the empirical Fisher (given labels) or the true Fisher (labels
drawn from the model), TRAK, DataInf (per prompt token), and TracIn for reference. The closed forms
are checked against the library's scorers (gbair.influence.second_order) at their default damping
on the first 48 training and validation examples of the first cell, so the table describes the code
the study runs.

Writes OUT.csv (one line per scorer, curvature, damping, dataset, rate, seed) and OUT.md (mean
AUROC and AP over the tuning cells per rate, and the choice by the protocol's criterion: the
highest mean detection AP of G-BAIR's rule over all tuning cells, ties to the larger damping).
"""

import argparse
import csv
import inspect
import io
import sys
from collections import defaultdict

import numpy as np

from gbair import files
from gbair.explain import RunExplainer
from gbair.influence.second_order import MIN_ONE_MINUS_P, TRAK, DataInf, InfluenceFunction
from gbair.influence.tracin import TracIn
from gbair.recovery import strategies
from gbair.train import trainer
from gbair.train.metrics import detection_metrics

GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
# Each scorer's default damping, read from the library so no copy can drift from it.
DEFAULT_DAMPING = {name: inspect.signature(scorer).parameters["damping"].default
                   for name, scorer in (("influence_function", InfluenceFunction), ("trak", TRAK), ("datainf", DataInf))}
SCORERS = (("influence_function", "empirical_fisher"), ("influence_function", "fisher"), ("trak", "-"),
           ("datainf", "-"))


class CellGradients:
    """One tuning cell's gradients per checkpoint, in float64: the training set under every label
    [C, K, N, d], its given-label rows [C, N, d], V's rows [C, T, d], and class probabilities."""

    def __init__(self, run: RunExplainer, cell, limit: int | None = None):
        """`limit`: the first `limit` training and validation examples only (the library check)."""
        experiment = run.experiment
        self.model, self.cell = experiment.model, cell
        self.train = run.noisy_train(cell)
        if limit is not None:
            self.train = self.train.subset(np.arange(limit))
        self.flipped = self.train.labels != run.true_labels(cell, self.train)
        self.checkpoints = run.checkpoints_before(cell, "corrupted", 1)
        reported = trainer.select_checkpoint(self.checkpoints, experiment.train_config.select_by)
        validation = run.splits(cell)["validation"]
        if limit is not None:
            validation = validation.subset(np.arange(limit))
        wrong = trainer.predict(self.model, reported.prompt, validation).argmax(1) != validation.labels
        self.misclassified = validation.subset(np.flatnonzero(wrong))
        self.batch = experiment.recovery.tracin_batch_size
        tracin = TracIn(self.model, self.checkpoints, batch_size=self.batch)
        classes = len(self.model.class_names)
        n = len(self.train)
        self.by_label = np.stack([tracin.gradient_features(self.train.with_labels(np.full(n, y)))
                                  for y in range(classes)], axis=1).astype(np.float64)  # [C, K, N, d]
        self.given = self.by_label[:, self.train.labels, np.arange(n)]  # [C, N, d]
        self.query = tracin.gradient_features(self.misclassified).astype(np.float64)  # [C, T, d]
        self.p_train = np.stack([trainer.predict(self.model, c.prompt, self.train) for c in self.checkpoints]
                                ).astype(np.float64)  # [C, N, K]
        self.p_query = np.stack([trainer.predict(self.model, c.prompt, self.misclassified)
                                 for c in self.checkpoints]).astype(np.float64)  # [C, T, K]
        self.rates = np.array([c.learning_rate for c in self.checkpoints])

    def tracin(self) -> np.ndarray:
        return np.einsum("c,cnd,ctd->nt", self.rates, self.given, self.query)

    def influence_function(self, damping: float, curvature: str) -> np.ndarray:
        """sum_c lr_c X (G + lambda I)^-1 V^T with G = Y^T Y / N, through the N x N (or NK x NK) Gram:
        (G + lambda I)^-1 = (I - Y^T (N lambda I + Y Y^T)^-1 Y) / lambda."""
        n, dim = self.given.shape[1:]
        classes = self.by_label.shape[1]
        if curvature == "fisher":
            weights = np.sqrt(self.p_train.transpose(0, 2, 1))[..., None]  # [C, K, N, 1]
            ys = (self.by_label * weights).reshape(len(self.rates), classes * n, dim)
            vectors = n * (classes - 1)
        else:
            ys, vectors = self.given, n
        grams = np.matmul(ys, ys.transpose(0, 2, 1))  # [C, R, R]
        lam = damping * np.mean(np.trace(grams, axis1=1, axis2=2) / n) / min(vectors, dim)
        total = 0.0
        for rate, x, y, gram, v in zip(self.rates, self.given, ys, grams, self.query):
            xv, xy, yv = x @ v.T, x @ y.T, y @ v.T
            solved = np.linalg.solve(n * lam * np.eye(len(gram)) + gram, yv)
            total = total + rate * (xv - xy @ solved) / lam
        return total

    def trak(self, damping: float) -> np.ndarray:
        """mean_c diag(1 - p_z) (Phi Phi^T + lambda_c I)^-1 Phi g(V)^T diag(1 / (1 - p_v))."""
        n, dim = self.given.shape[1:]
        labels, qlabels = self.train.labels, self.misclassified.labels
        total = 0.0
        for x, v, p, pq in zip(self.given, self.query, self.p_train, self.p_query):
            one_minus = np.maximum(1 - p[np.arange(n), labels], MIN_ONE_MINUS_P)
            one_minus_v = np.maximum(1 - pq[np.arange(len(qlabels)), qlabels], MIN_ONE_MINUS_P)
            phi = x / one_minus[:, None]
            gram = phi @ phi.T
            lam = damping * np.trace(gram) / min(n, dim)
            scores = np.linalg.solve(gram + lam * np.eye(n), phi @ v.T)
            total = total + one_minus[:, None] * scores / one_minus_v[None, :]
        return total / len(self.rates)

    def datainf(self, damping: float) -> np.ndarray:
        """sum_c lr_c sum_l (A_l - K_l diag(w_l) A_l / N) / lambda_l per prompt token l, A_l = X_l V_l^T,
        K_l = X_l X_l^T, w_l = 1 / (lambda_l + |g_il|^2)."""
        tokens, width = self.model.prompt_shape
        n = self.given.shape[1]
        total = 0.0
        for rate, x, v in zip(self.rates, self.given, self.query):
            xs, vs = x.reshape(n, tokens, width), v.reshape(len(v), tokens, width)
            for l in range(tokens):
                block, query = xs[:, l], vs[:, l]
                norms = (block ** 2).sum(1)
                lam = damping * norms.mean() / min(n, width)
                a, gram = block @ query.T, block @ block.T
                total = total + rate * (a - gram @ (a / (lam + norms)[:, None]) / n) / lam
        return total

    def matrix(self, scorer: str, curvature: str, damping: float) -> np.ndarray:
        if scorer == "influence_function":
            return self.influence_function(damping, curvature)
        return getattr(self, scorer)(damping)

    def check_against_library(self) -> None:
        """The closed forms equal the library's scorers at their default damping (float32 gradients)."""
        library = {
            ("influence_function", "empirical_fisher"): InfluenceFunction(
                self.model, self.checkpoints, self.train, batch_size=self.batch),
            ("influence_function", "fisher"): InfluenceFunction(
                self.model, self.checkpoints, self.train, curvature="fisher", batch_size=self.batch),
            ("trak", "-"): TRAK(self.model, self.checkpoints, self.train, batch_size=self.batch),
            ("datainf", "-"): DataInf(self.model, self.checkpoints, self.train, batch_size=self.batch)}
        for (scorer, curvature), reference in library.items():
            expected = reference.influence(self.train, self.misclassified)
            got = self.matrix(scorer, curvature, DEFAULT_DAMPING[scorer])
            error = np.abs(got - expected).max() / np.abs(expected).max()
            print(f"check {scorer} {curvature}: max relative error {error:.2e}", flush=True)
            if error > 1e-3:
                raise AssertionError(f"{scorer} {curvature}: closed form differs from the library ({error:.2e})")

    def detection(self, influence: np.ndarray, family: str) -> dict:
        context = strategies.SelectionContext(
            model=self.model, train=self.train, prompt=None, misclassified=self.misclassified,
            corrupted=self.flipped, seed=self.cell.seed, fit=None, influence={family: influence, "dot": influence})
        rule = family if family in strategies.STRATEGIES else "tracin"
        suspicion = strategies.score(rule, context)
        return detection_metrics(self.flipped, suspicion, strategies.top_k(suspicion, 1))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--out", required=True, help="path prefix of OUT.csv and OUT.md")
    args = parser.parse_args(argv)
    lines = []
    checked = False
    for workdir in args.workdirs:
        run = RunExplainer(workdir)
        for cell in run.experiment.cells():
            print(f"{workdir}: {cell}", flush=True)
            if not checked:  # on 48 examples: the library recomputes every gradient per scorer
                CellGradients(run, cell, limit=48).check_against_library()
                checked = True
            grads = CellGradients(run, cell)
            base = {"dataset": cell.dataset, "rate": cell.rate, "seed": cell.seed,
                    "n_misclassified": len(grads.misclassified)}
            lines.append({**base, "scorer": "tracin", "curvature": "-", "damping": "-",
                          **grads.detection(grads.tracin(), "tracin")})
            for scorer, curvature in SCORERS:
                for damping in GRID:
                    lines.append({**base, "scorer": scorer, "curvature": curvature, "damping": damping,
                                  **grads.detection(grads.matrix(scorer, curvature, damping), scorer)})
    write(lines, args.out, " ".join(["python", "experiments/damping_sensitivity.py", *sys.argv[1:]]
                                    if argv is None else argv))


def write(lines: list[dict], out: str, command: str) -> None:
    columns = ["scorer", "curvature", "damping", "dataset", "rate", "seed", "n_misclassified",
               "detection_auroc", "detection_ap"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    files.write_text(f"{out}.csv", buffer.getvalue())
    groups = defaultdict(list)
    for line in lines:
        groups[(line["scorer"], line["curvature"], line["damping"])].append(line)
    rates = sorted({line["rate"] for line in lines})
    seeds = sorted({line["seed"] for line in lines})
    header = ["scorer", "curvature", "damping"] + [f"{m} {r:g}" for r in rates for m in ("AUROC", "AP")] + [
        "AP, all cells"]
    rows, best = [], {}
    for (scorer, curvature, damping), members in groups.items():
        ap_all = float(np.mean([m["detection_ap"] for m in members]))
        cells = []
        for rate in rates:
            at = [m for m in members if m["rate"] == rate]
            cells += [f"{np.mean([m['detection_auroc'] for m in at]):.3f}", f"{np.mean([m['detection_ap'] for m in at]):.3f}"]
        rows.append([scorer, curvature, f"{damping:g}" if damping != "-" else "-"] + cells + [f"{ap_all:.3f}"])
        if damping != "-":
            key = scorer
            if key not in best or (ap_all, damping) > best[key][:2]:
                best[key] = (ap_all, damping, curvature)
    md = [f"# Damping and curvature on the tuning seeds ({len(seeds)} seeds: {', '.join(map(str, seeds))}; "
          f"rates {', '.join(f'{r:g}' for r in rates)})", "",
          f"    {command}", "",
          "Mean detection AUROC and average precision of G-BAIR's rule (minus the sum over the misclassified "
          "validation set) against the flipped labels, over the tuning cells; damping is lambda / (mean "
          "nonzero eigenvalue of the curvature).", "",
          "| " + " | ".join(header) + " |", "|" + "|".join([":---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    md += ["", "Chosen (highest mean AP over all tuning cells; ties to the larger damping):", ""]
    md += [f"- {scorer}: damping {damping:g}" + (f", curvature {curvature}" if curvature != "-" else "")
           + f" (AP {ap:.3f})" for scorer, (ap, damping, curvature) in sorted(best.items())]
    files.write_text(f"{out}.md", "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

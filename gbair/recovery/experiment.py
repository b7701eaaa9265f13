"""What a G-BAIR run is: its settings (Experiment, RecoveryConfig) and the cells they make, with each
cell's corrupted training set. Where a run's results lie in its workdir is gbair.workdir's.
"""

import dataclasses
import itertools
from typing import Literal, Mapping, Sequence

from gbair import UserError, files
from gbair.data.corruption import corrupt_labels
from gbair.data.dataset import TextDataset, check_splits
from gbair.data.decisions import apply_decisions, read_decisions, reviewed
from gbair.influence.matrices import SECOND_ORDER
from gbair.influence.second_order import CURVATURES
from gbair.models.prompts import PromptModel
from gbair.recovery import strategies
from gbair.train import trainer
from gbair.workdir import Cell


@dataclasses.dataclass(frozen=True)
class RecoveryConfig:
    """How each G-BAIR iteration cleans the training set.

    iterations: T, cleaning rounds after iteration 0.
    flag_fraction: k as a fraction of the current training set (used when flag_count is 0).
    flag_count: k as a count.
    action: `remove` the flagged examples or `relabel` them (to the model's most likely other class).
    balance_classes: TracIn strategies weigh each class of the misclassified set V equally (else
      every example of V counts once, and the majority error class dominates the sum).
    stratified_corruption: flip labels in proportion to class sizes.
    tracin_batch_size: training examples per device per block when scoring influence.
    projection_dim: influence_function and trak solve their d x d curvature in a seeded random
      projection of this size (None: exact; needed beyond 16,384 prompt numbers, e.g. T5's 100 x 768).
    damping: per second-order scorer (influence_function, datainf, trak), lambda as a multiple of its
      curvature's mean nonzero eigenvalue (None or a missing name: the scorer's default).
    curvature: influence_function's curvature, `empirical_fisher` (given labels) or `fisher`
      (labels drawn from the model; gbair.influence.second_order.InfluenceFunction); None: empirical.

    Gin (registered by gbair.config): `RecoveryConfig.iterations = 2`, `RecoveryConfig.damping =
    {"trak": 0.1}`, ...; the jobs take `@RecoveryConfig()` (`Experiment.recovery`, `clean.recovery`).
    """

    iterations: int = 2
    flag_fraction: float = 0.1
    flag_count: int = 0
    action: Literal["remove", "relabel"] = "remove"
    balance_classes: bool = False
    stratified_corruption: bool = False
    tracin_batch_size: int = 32
    projection_dim: int | None = None
    damping: Mapping[str, float] | None = None
    curvature: str | None = None

    def __post_init__(self):
        if self.action not in ("remove", "relabel"):
            raise UserError(f"RecoveryConfig.action={self.action!r}, expected 'remove' or 'relabel'")
        if self.iterations < 0 or self.flag_count < 0 or not 0 <= self.flag_fraction <= 1:
            raise UserError(f"RecoveryConfig: iterations={self.iterations}, flag_count={self.flag_count}, "
                            f"flag_fraction={self.flag_fraction}; expected >= 0, >= 0 and in [0, 1]")
        if self.tracin_batch_size <= 0:
            raise UserError(f"RecoveryConfig.tracin_batch_size={self.tracin_batch_size}, expected > 0")
        if self.projection_dim is not None and self.projection_dim <= 0:
            raise UserError(f"RecoveryConfig.projection_dim={self.projection_dim}, expected > 0 or None")
        for name, value in (self.damping or {}).items():
            if name not in SECOND_ORDER or not isinstance(value, (int, float)) or not value > 0:
                raise UserError(f"RecoveryConfig.damping[{name!r}]={value!r}, expected a number > 0 for one of "
                                f"{sorted(SECOND_ORDER)}")
        if self.curvature is not None and self.curvature not in CURVATURES:
            raise UserError(f"RecoveryConfig.curvature={self.curvature!r}, expected one of {CURVATURES} or None")

    def k(self, n_train: int) -> int:
        return min(n_train, self.flag_count or int(round(self.flag_fraction * n_train)))

    def flagged_per_iteration(self, n_train: int) -> list[int]:
        """k at iterations 1..T for a training set of n_train examples (`remove` shrinks it, `relabel` does not)."""
        out = []
        for _ in range(self.iterations):
            out.append(self.k(n_train))
            n_train -= out[-1] if self.action == "remove" else 0
        return out

    def check_budget(self, train: TextDataset, where: str) -> None:
        """Refuses (UserError) a budget under which some iteration could leave a class of `train` (the
        given labels) with no example: the worst case, every flagged example carrying that class's label."""
        n = len(train)
        if n == 0:
            raise UserError(f"{where} has no examples (did the decisions file remove them all?); expected at least 1")
        if not self.iterations:
            return
        if self.flag_count > n:
            raise UserError(f"RecoveryConfig.flag_count={self.flag_count} is more than the {n} examples of {where}; "
                            f"expected at most {n}")
        if self.action != "remove":
            return
        removed = sum(self.flagged_per_iteration(n))
        counts = {name: int(c) for name, c in zip(train.class_names, train.class_counts()) if c}
        smallest = min(counts, key=counts.get)
        if removed > counts[smallest] - 1:
            budget = f"flag_count={self.flag_count}" if self.flag_count else f"flag_fraction={self.flag_fraction!r}"
            raise UserError(
                f"RecoveryConfig: {budget} over iterations={self.iterations} removes up to {removed} of the {n} "
                f"examples of {where}; expected at most {counts[smallest] - 1}, so that every class keeps at least "
                f"1 example even if every flagged example has its label ({smallest!r} has {counts[smallest]}) and "
                f"the retrained prompt still learns every class: lower the flag budget or the iterations")


def corrupted_train(cell: Cell, clean_train: TextDataset, recovery: RecoveryConfig,
                    relabel_file: str | None) -> TextDataset:
    """The cell's corrupted training set, with a person's decisions applied when given."""
    noisy = _corrupted(cell, clean_train, recovery)
    return apply_decisions(noisy, relabel_file) if relabel_file else noisy


def _corrupted(cell: Cell, clean_train: TextDataset, recovery: RecoveryConfig) -> TextDataset:
    return corrupt_labels(clean_train, cell.rate, seed=cell.seed, stratified=recovery.stratified_corruption)[0]


def reviewed_ids(cell: Cell, clean_train: TextDataset, recovery: RecoveryConfig,
                 relabel_file: str | None) -> set[str]:
    """Ids of the cell's corrupted training set that the decisions file keeps or relabels: never flagged."""
    if not relabel_file:
        return set()
    return reviewed(read_decisions(_corrupted(cell, clean_train, recovery), relabel_file))


def check_grid(strategy_names: Sequence[str] | None = None, corruption_rates: Sequence[float] | None = None,
               seeds: Sequence[int] | None = None) -> None:
    """Refuses (UserError) unknown strategies, rates outside [0, 1) and bad seeds; None: not given.
    Needs no data, so gbair.config.check_settings runs it before the job loads any."""
    known = list(strategies.BOUNDS) + list(strategies.STRATEGIES)
    if strategy_names is not None:
        if not strategy_names:
            raise UserError(f"Experiment.strategy_names is empty; expected one or more of {known}")
        unknown = [s for s in strategy_names if s not in known]
        if unknown:
            raise UserError(f"Experiment.strategy_names: unknown {unknown}, expected from {known}")
    if corruption_rates is not None:
        if not corruption_rates:
            raise UserError("Experiment.corruption_rates is empty; expected one or more numbers in [0, 1)")
        bad_rates = [r for r in corruption_rates if not (isinstance(r, (int, float)) and 0 <= r < 1)]
        if bad_rates:
            raise UserError(f"Experiment.corruption_rates: {bad_rates}, expected numbers in [0, 1)")
    if seeds is not None and (not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds)):
        raise UserError(f"Experiment.seeds={list(seeds)}, expected non-negative ints")


@dataclasses.dataclass(frozen=True)
class Experiment:
    """What a G-BAIR sweep runs: the cartesian product of datasets x rates x seeds x strategies.

    datasets: name -> {"train", "validation", "test"} splits (validation and test stay clean).
    strategy_names: from `clean` (bound) and gbair.recovery.strategies.STRATEGIES: tracin,
      tracin_by_label, tracin_cosine, influence_function, influence_function_by_label, datainf,
      trak, self_influence, loss, random, cleanlab, oracle.
    seeds: each seed sets the corruption, the prompt initialisation and the batch order.

    Gin (configs/runs/gbair.gin, registered by gbair.config): `sweep.experiment = @Experiment()`,
    `Experiment.datasets = {"spam_assassin": %SPLITS}`, `Experiment.model = %MODEL`,
    `Experiment.corruption_rates = [0.1, 0.2]`, `Experiment.strategy_names = ["clean", "tracin"]`.
    """

    datasets: Mapping[str, Mapping[str, TextDataset]]
    model: PromptModel
    corruption_rates: Sequence[float]
    strategy_names: Sequence[str]
    seeds: Sequence[int] = (0,)
    train_config: trainer.TrainConfig = trainer.TrainConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    relabel_file: str | None = None  # decisions exported from the HTML report, applied after corruption

    def __post_init__(self):
        check_grid(self.strategy_names, self.corruption_rates, self.seeds)
        if not self.datasets:
            raise UserError("Experiment.datasets is empty; expected name -> {train, validation, test} splits")
        for name, splits in self.datasets.items():
            check_splits(splits, f"Experiment.datasets[{name!r}]")
        if self.relabel_file is not None and not files.path(self.relabel_file).is_file():
            raise UserError(f"RELABEL_FILE={self.relabel_file!r}: no such file")
        if any(s not in strategies.BOUNDS for s in self.strategy_names):
            for cell in self.cells():  # the budget is checked on what each cell cleans: its corrupted labels
                noisy = corrupted_train(cell, self.datasets[cell.dataset]["train"], self.recovery, self.relabel_file)
                self.recovery.check_budget(noisy, f"the training set of {cell.dataset} (rate {cell.rate:g}, "
                                                  f"seed {cell.seed})")

    def cells(self) -> list[Cell]:
        return [Cell(d, float(r), int(s))
                for d, r, s in itertools.product(self.datasets, self.corruption_rates, self.seeds)]

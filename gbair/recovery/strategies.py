"""Which training examples to flag: G-BAIR (TracIn) and the baselines, behind one interface.

Every strategy is `select(context, k) -> indices into context.train`, most suspicious first, so
results are comparable. The bounds `clean` (train on true labels) and `oracle` (flag only truly
flipped examples) frame them.
"""

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np

from gbair.data.dataset import TextDataset
from gbair.influence.tracin import TracIn
from gbair.models.prompts import PromptModel
from gbair.train import trainer
from gbair.train.checkpoints import PromptCheckpoint


@dataclasses.dataclass(frozen=True)
class SelectionContext:
    """What a strategy may look at when flagging examples of the current training set."""

    model: PromptModel
    train: TextDataset  # current training set, labels as given (noisy)
    checkpoints: Sequence[PromptCheckpoint]  # of the model trained on `train`; last = final prompt
    misclassified: TextDataset  # validation examples the model gets wrong, with their true labels
    corrupted: np.ndarray  # [len(train)] bool, which labels are wrong; only `oracle` may look
    seed: int
    fit: Callable[[TextDataset, str], np.ndarray]  # (training set, run name) -> trained prompt
    batch_size: int = 32
    influence: Mapping[str, np.ndarray] | None = None  # variant -> [N_train, |V|] TracIn, if computed


def tracin(context: SelectionContext, k: int, variant: str = "dot") -> np.ndarray:
    """G-BAIR: the training examples whose gradients most oppose fixing the misclassified set.

    score(z) = sum_v TracIn(z, v) over the misclassified validation set V (true labels); a very
    negative score means training on z pushed V's loss up, so the lowest k are flagged.
    """
    if context.influence is not None:  # the loop computed the full matrix for the report: reuse it
        scores = context.influence[variant].sum(axis=1)
    else:
        scorer = TracIn(context.model, context.checkpoints, variant=variant, batch_size=context.batch_size)
        scores = scorer.aggregate_influence(context.train, context.misclassified)
    return np.argsort(scores, kind="stable")[:k]


def tracin_cosine(context: SelectionContext, k: int) -> np.ndarray:
    """G-BAIR with per-checkpoint normalised gradients (no high-norm examples topping every list)."""
    return tracin(context, k, variant="cosine")


def self_influence(context: SelectionContext, k: int) -> np.ndarray:
    """Highest TracIn self-influence: examples the model finds hardest to fit (Pruthi et al.)."""
    scorer = TracIn(context.model, context.checkpoints, batch_size=context.batch_size)
    return np.argsort(-scorer.self_influence(context.train), kind="stable")[:k]


def loss(context: SelectionContext, k: int) -> np.ndarray:
    """Highest training loss of the given label at the final checkpoint."""
    losses = trainer.example_losses(context.model, context.checkpoints[-1].prompt, context.train)
    return np.argsort(-losses, kind="stable")[:k]


def random(context: SelectionContext, k: int) -> np.ndarray:
    """k examples uniformly at random (seeded): what flagging without any signal achieves."""
    return np.random.default_rng([context.seed, len(context.train)]).choice(len(context.train), k, replace=False)


def cleanlab(context: SelectionContext, k: int, folds: int = 3) -> np.ndarray:
    """cleanlab's find_label_issues on K-fold out-of-sample probabilities, ranked; at most k.

    Each fold trains a fresh prompt on the other folds, so this costs `folds` extra trainings.
    """
    from cleanlab.filter import find_label_issues  # pylint: disable=import-outside-toplevel

    n = len(context.train)
    fold_of = np.random.default_rng([context.seed, n, folds]).permutation(n) % folds
    probabilities = np.zeros((n, len(context.model.class_names)), np.float32)
    for fold in range(folds):
        held_out = np.flatnonzero(fold_of == fold)
        prompt = context.fit(context.train.subset(np.flatnonzero(fold_of != fold)), f"cleanlab_fold{fold}")
        probabilities[held_out] = trainer.predict(context.model, prompt, context.train.subset(held_out))
    ranked = find_label_issues(context.train.labels, probabilities, return_indices_ranked_by="self_confidence")
    return np.asarray(ranked[:k], np.int64)


def oracle(context: SelectionContext, k: int) -> np.ndarray:
    """Upper bound: the first k truly corrupted examples."""
    return np.flatnonzero(context.corrupted)[:k]


STRATEGIES: dict[str, Callable[[SelectionContext, int], np.ndarray]] = {
    "tracin": tracin, "tracin_cosine": tracin_cosine, "self_influence": self_influence, "loss": loss,
    "random": random, "cleanlab": cleanlab, "oracle": oracle,
}
BOUNDS = ("clean",)  # not selection strategies: trained once on the true labels
TRACIN_BASED = ("tracin", "tracin_cosine")  # these get per-example explanations in the report


def select(strategy: str, context: SelectionContext, k: int) -> np.ndarray:
    """Indices (into context.train) of at most k examples to flag, most suspicious first."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}, expected one of {sorted(STRATEGIES)}")
    chosen = np.asarray(STRATEGIES[strategy](context, min(k, len(context.train))), np.int64)
    if len(np.unique(chosen)) != len(chosen):
        raise AssertionError(f"strategy {strategy!r} flagged an example twice")
    return chosen

"""Which training examples to flag: G-BAIR (TracIn) and the baselines, behind one interface.

Every strategy is `score(context) -> [N] suspicion`, one number per example of the current training
set, higher = more likely mislabelled; the loop flags the top k (`select`) and measures detection
over the whole ranking (AUROC, average precision against the flipped mask), so strategies compare at
every budget, not only at k. The bounds `clean` (train on true labels) and `oracle` (flag only truly
flipped examples) frame them. Influence is never computed here: a strategy reads the scored run's
matrices from `context.influence` (gbair.influence.matrices, each family computed once per run).
"""

import dataclasses
from typing import Callable, Mapping

import numpy as np

from gbair.data.dataset import TextDataset
from gbair.influence.matrices import InfluenceMatrices
from gbair.models.prompts import PromptModel
from gbair.train import trainer


@dataclasses.dataclass(frozen=True)
class SelectionContext:
    """What a strategy may look at when scoring examples of the current training set."""

    model: PromptModel
    train: TextDataset  # current training set, labels as given (noisy)
    prompt: np.ndarray  # the reported prompt of the model trained on `train` (chosen on validation)
    misclassified: TextDataset  # validation examples the model gets wrong, with their true labels
    corrupted: np.ndarray  # [len(train)] bool, which labels are wrong; only `oracle` may look
    seed: int
    fit: Callable[[TextDataset, str], np.ndarray]  # (training set, run name) -> reported prompt
    # The one source of influence (each family computed once per scored run): `influence[name]`
    # [N_train, |V|] for a FAMILY_OF name, `.self_influence()` [N_train]. A plain mapping of given
    # matrices serves the rules that read them.
    influence: InfluenceMatrices | Mapping[str, np.ndarray]
    balance_classes: bool = False  # weigh V's classes equally in TracIn's sum over V


def query_weights(labels: np.ndarray, balance_classes: bool) -> np.ndarray:
    """Weight of each misclassified validation example in G-BAIR's sum: 1, or 1 / (its class's count)
    so that each class of V counts the same however the errors are split between classes."""
    if not balance_classes:
        return np.ones(len(labels))
    counts = np.bincount(labels)
    return 1.0 / counts[labels]


def tracin(context: SelectionContext, variant: str = "dot") -> np.ndarray:
    """G-BAIR: how much each training example opposes fixing the misclassified validation set V.

    suspicion(z) = -sum_v w_v TracIn(z, v) over V (true labels; w_v from `query_weights`): a very
    negative influence means training on z pushed V's loss up.
    """
    return _minus_sum_over_v(context.influence[variant], context)


def tracin_by_label(context: SelectionContext) -> np.ndarray:
    """G-BAIR per given label: z labelled c is scored only on the errors of V a label c can cause.

    A wrong label c pushes the model towards predicting c, so it can only hurt examples whose true
    class is not c; summed over all of V (as `tracin` does), the influence of flips labelled with the
    class V's errors need is *helpful* and ranks them last. Here z labelled c gets
    -sum_{v in V, y_v != c} w_v TracIn(z, v), is ranked among the examples labelled c, and its
    suspicion is that rank as a fraction of its label's count, so each given label is flagged in
    proportion to its share of the training set. Examples whose label has no such error in V get 0.
    """
    return _by_label(context.influence["dot"], context)


def _minus_sum_over_v(influence: np.ndarray, context: SelectionContext) -> np.ndarray:
    """`tracin`'s rule for any [N_train, |V|] influence matrix."""
    return -influence @ query_weights(context.misclassified.labels, context.balance_classes)


def _by_label(influence: np.ndarray, context: SelectionContext) -> np.ndarray:
    """`tracin_by_label`'s rule for any [N_train, |V|] influence matrix."""
    query_labels = context.misclassified.labels
    suspicion = np.zeros(len(context.train))
    for label in np.unique(context.train.labels):
        members, harmed = np.flatnonzero(context.train.labels == label), query_labels != label
        if not harmed.any():
            continue
        scores = -influence[np.ix_(members, harmed)] @ query_weights(query_labels[harmed], context.balance_classes)
        ranks = np.argsort(np.argsort(scores, kind="stable"), kind="stable")  # 0 = least suspicious
        suspicion[members] = (ranks + 1) / len(members)
    return suspicion


def influence_function(context: SelectionContext) -> np.ndarray:
    """G-BAIR's rule (minus the sum over V) with influence functions instead of TracIn."""
    return _minus_sum_over_v(context.influence["influence_function"], context)


def influence_function_by_label(context: SelectionContext) -> np.ndarray:
    """`tracin_by_label`'s rule with influence functions instead of TracIn."""
    return _by_label(context.influence["influence_function"], context)


def datainf(context: SelectionContext) -> np.ndarray:
    """G-BAIR's rule with DataInf (closed-form inverse of a block-diagonal damped Fisher) instead of TracIn."""
    return _minus_sum_over_v(context.influence["datainf"], context)


def trak(context: SelectionContext) -> np.ndarray:
    """G-BAIR's rule with TRAK (margin-gradient regression, averaged over checkpoints) instead of TracIn."""
    return _minus_sum_over_v(context.influence["trak"], context)


def tracin_cosine(context: SelectionContext) -> np.ndarray:
    """G-BAIR with per-checkpoint normalised gradients (no high-norm examples topping every list)."""
    return tracin(context, variant="cosine")


def self_influence(context: SelectionContext) -> np.ndarray:
    """TracIn self-influence: examples the model finds hardest to fit (Pruthi et al.)."""
    return context.influence.self_influence()


def loss(context: SelectionContext) -> np.ndarray:
    """Training loss of the given label under the reported prompt."""
    return trainer.example_losses(context.model, context.prompt, context.train)


def random(context: SelectionContext) -> np.ndarray:
    """Seeded uniform scores: what flagging without any signal achieves."""
    return np.random.default_rng([context.seed, len(context.train)]).random(len(context.train))


def cleanlab(context: SelectionContext, folds: int = 3) -> np.ndarray:
    """1 - cleanlab's self-confidence label quality on K-fold out-of-sample probabilities.

    This is the order cleanlab's find_label_issues ranks its issues by (return_indices_ranked_by=
    "self_confidence"); like every strategy it then flags exactly k, where find_label_issues would stop
    at its own estimate of the number of issues. Each fold trains a fresh prompt on the other folds,
    so this costs `folds` extra trainings.
    """
    from cleanlab.rank import get_label_quality_scores  # pylint: disable=import-outside-toplevel

    n = len(context.train)
    fold_of = np.random.default_rng([context.seed, n, folds]).permutation(n) % folds
    probabilities = np.zeros((n, len(context.model.class_names)), np.float32)
    for fold in range(folds):
        held_out = np.flatnonzero(fold_of == fold)
        prompt = context.fit(context.train.subset(np.flatnonzero(fold_of != fold)), f"cleanlab_fold{fold}")
        probabilities[held_out] = trainer.predict(context.model, prompt, context.train.subset(held_out))
    return 1.0 - get_label_quality_scores(context.train.labels, probabilities, method="self_confidence")


def oracle(context: SelectionContext) -> np.ndarray:
    """Upper bound: 1 for truly corrupted examples, 0 otherwise (ties flag in dataset order)."""
    return context.corrupted.astype(np.float64)


STRATEGIES: dict[str, Callable[[SelectionContext], np.ndarray]] = {
    "tracin": tracin, "tracin_by_label": tracin_by_label, "tracin_cosine": tracin_cosine,
    "influence_function": influence_function, "influence_function_by_label": influence_function_by_label,
    "datainf": datainf, "trak": trak,
    "self_influence": self_influence, "loss": loss, "random": random, "cleanlab": cleanlab, "oracle": oracle,
}
BOUNDS = ("clean",)  # not selection strategies: trained once on the true labels
TRACIN_BASED = ("tracin", "tracin_by_label", "tracin_cosine")  # these get per-example explanations in the report
# Strategies that read the [N_train, |V|] influence on the misclassified validation examples V
# (context.influence[...]); the others score the training set alone.
NEEDS_VALIDATION = (*TRACIN_BASED, "influence_function", "influence_function_by_label", "datainf", "trak")


# What each strategy's score means, one sentence each, for flagged.csv's readers and the review page
# (every score is oriented so that higher = more suspicious: `score` ranks by it, highest first).
MEANINGS: dict[str, str] = {
    "tracin": "minus the TracIn influence summed over the misclassified validation set V: higher means training "
              "on the example pushed V's loss up more (more suspicious).",
    "tracin_cosine": "as tracin, with each checkpoint's gradients normalised (cosine): higher means the example's "
                     "gradient points more against fixing V (more suspicious).",
    "tracin_by_label": "the example's rank, as a fraction of its given label's count, by minus its TracIn influence "
                       "on the V errors its label could cause: higher is more suspicious (1.0: the most harmful of its label).",
    "influence_function": "minus the damped-Fisher influence summed over V: higher means the example pushed V's "
                          "loss up more (more suspicious).",
    "influence_function_by_label": "tracin_by_label's rank fraction with influence functions instead of TracIn: "
                                   "higher is more suspicious (1.0: the most harmful of its label).",
    "datainf": "minus the DataInf influence summed over V: higher means more harmful to V (more suspicious).",
    "trak": "minus the TRAK attribution summed over V: higher means more harmful to V (more suspicious).",
    "self_influence": "TracIn self-influence, the lr-weighted squared gradient norm: higher means the model finds "
                      "the example harder to fit (more suspicious).",
    "loss": "the cross-entropy of the given label under the trained prompt, -log p(given label): higher means the "
            "model finds the given label less likely (more suspicious).",
    "random": "a seeded uniform number: no signal, a baseline (higher is flagged first, not more suspicious).",
    "cleanlab": "1 - the out-of-fold probability of the given label (cleanlab's self-confidence, 3 folds): higher "
                "means held-out models find the given label less likely (more suspicious).",
    "oracle": "1 for a truly corrupted label, else 0 (needs the true labels).",
}


def other_class(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[N] the most probable class other than `labels` under [N, C] `probabilities` (what relabel picks)."""
    masked = np.array(probabilities, np.float64, copy=True)
    masked[np.arange(len(labels)), labels] = -1.0
    return masked.argmax(1)


def score(strategy: str, context: SelectionContext) -> np.ndarray:
    """[len(context.train)] float64 suspicion scores of `strategy`, higher = flag first."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}, expected one of {sorted(STRATEGIES)}")
    scores = np.asarray(STRATEGIES[strategy](context), np.float64)
    if scores.shape != (len(context.train),) or not np.isfinite(scores).all():
        raise AssertionError(f"strategy {strategy!r} gave scores of shape {scores.shape} (finite: "
                             f"{np.isfinite(scores).all()}), expected {len(context.train)} finite numbers")
    return scores


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k highest scores, highest first; ties in dataset order; none of the indices in
    `exclude` (examples a person already reviewed: kept or relabelled, never flagged again)."""
    order = np.argsort(-scores, kind="stable")
    if exclude is not None and len(exclude):
        order = order[~np.isin(order, exclude)]
    return order[:min(k, len(order))]

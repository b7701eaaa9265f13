"""Choose the embedded model's training recipe on the validation split (never the test split).

Trains a prompt for each candidate recipe, rate and seed, records validation metrics at every
checkpoint (printed per run: the learning curve), and prints per recipe the validation AUC / F1 /
loss of the checkpoint each selection rule picks, mean ± std over seeds. Recipes are compared on
their validation curves; selection rules cannot be ranked by this table (each rule wins on its own
metric in-sample). The chosen recipe is the default in configs/runs/gbair.gin; the measurement is in
experiments/RESULTS.md.

    python experiments/choose_trainer.py --out=/tmp/choose_trainer.csv --recipes adam,3e-2,warmup_cosine,16,100 ...
"""

import argparse
import csv
import itertools
import tempfile
import time

from gbair.reports import tables
from gbair.data.corruption import corrupt_labels
from gbair.data.tasks import spam_assassin_splits
from gbair.classifiers import minilm_classifier
from gbair.train import trainer
from gbair.train.prompt_checkpoints import load_prompt_checkpoints

CLASS_DESCRIPTIONS = ["a normal personal or work email", "spam: an unsolicited advertising or scam email"]
RULES = ("last", "loss", "auc")


def recipe_config(recipe: str, seed: int, checkpoints: int) -> trainer.TrainConfig:
    """'optimizer,learning_rate,schedule,batch_size,num_steps' -> TrainConfig."""
    optimizer, learning_rate, schedule, batch_size, num_steps = recipe.split(",")
    return trainer.TrainConfig(optimizer=optimizer, learning_rate=float(learning_rate), schedule=schedule,
                               batch_size=int(batch_size), num_steps=int(num_steps),
                               checkpoint_every=int(num_steps) // checkpoints, seed=seed, log_every=1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="CSV of every (recipe, rate, seed, rule) result")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.3])
    parser.add_argument("--checkpoints", type=int, default=5)
    parser.add_argument("--recipes", nargs="+", required=True,
                        help="each 'optimizer,learning_rate,schedule,batch_size,num_steps'")
    parser.add_argument("--sizes", type=int, nargs=3, default=[400, 200, 400], help="train validation test")
    parser.add_argument("--max_length", type=int, default=32)
    args = parser.parse_args()
    splits = spam_assassin_splits(dict(zip(("train", "validation", "test"), args.sizes)))
    model = minilm_classifier(CLASS_DESCRIPTIONS, class_names=["ham", "spam"], max_length=args.max_length)
    rows = []
    for recipe, rate, seed in itertools.product(args.recipes, args.rates, args.seeds):
        config = recipe_config(recipe, seed, args.checkpoints)
        train, _ = corrupt_labels(splits["train"], rate, seed=seed)
        start = time.time()
        saved = collect(model, train, splits["validation"], config)
        for rule in RULES:
            chosen = trainer.select_checkpoint(saved, rule)
            rows.append({"recipe": recipe, "rate": rate, "seed": seed, "rule": rule, "step": chosen.step,
                         **{f"validation_{k}": v for k, v in chosen.validation.items()},
                         "seconds": round(time.time() - start, 1)})
        print(f"{recipe} rate={rate:g} seed={seed}: "
              + ", ".join(f"{c.step}: auc {c.validation['auc']:.3f} f1 {c.validation['f1']:.3f}" for c in saved),
              f"({time.time() - start:.0f}s)", flush=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print("\n| recipe | rate | rule | validation auc | validation f1 | validation loss |\n|:---|---:|:---|---:|---:|---:|")
    for recipe, rate, rule in itertools.product(args.recipes, args.rates, RULES):
        picked = [r for r in rows if (r["recipe"], r["rate"], r["rule"]) == (recipe, rate, rule)]
        cells = [tables.format_cell([r[f"validation_{m}"] for r in picked]) for m in ("auc", "f1", "loss")]
        print(f"| {recipe} | {rate:g} | {rule} | " + " | ".join(cells) + " |")


def collect(model, train, validation, config):
    """Every checkpoint of one training run, each with its validation metrics (kept in memory)."""
    with tempfile.TemporaryDirectory() as directory:
        trainer.train(model, train, config, directory, validation=validation)
        return load_prompt_checkpoints(directory)


if __name__ == "__main__":
    main()

"""Does a row's prediction depend on the batch it is computed in? If not, evaluation could drop its
padding (the last batch is padded to the full batch size) without changing any result.

    python benchmarks/eval_batches.py [--examples 200] [--sizes 8,40,50,100,200] [--json OUT]

Predicts the first `--examples` SpamAssassin emails with the demo's MiniLM prompt model (32 tokens, a
random prompt) at gbair's evaluation batch size (64, the last batch padded) and at each of `--sizes`,
and reports each size's largest absolute difference of the class probabilities from the batch-64 run
and whether they are bitwise equal.
"""

import argparse
import json
import sys
import time

import jax
import numpy as np

from gbair import assets, files
from gbair.classifiers import minilm_classifier
from gbair.data import spam_assassin
from gbair.train import trainer

DESCRIPTIONS = ["a normal personal or work email", "spam: an unsolicited advertising or scam email"]  # demo.gin's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--sizes", default="8,40,50,100,200")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    data, _ = spam_assassin.load_spam_assassin(assets.verified_spam_assassin_dir())
    model = minilm_classifier(class_descriptions=DESCRIPTIONS, class_names=["ham", "spam"], prompt_length=16,
                              max_length=32)
    emails = data.subset(range(args.examples))
    prompt = model.init_prompt(jax.random.key(0))
    reference = trainer.predict(model, prompt, emails, 64)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        probabilities = trainer.predict(model, prompt, emails, size)
        rows.append({"batch_size": size, "bitwise_equal": bool(np.array_equal(probabilities, reference)),
                     "max_abs_difference": float(np.abs(probabilities - reference).max())})
        print(f"batch {size:4d}: bitwise equal to batch 64: {rows[-1]['bitwise_equal']!s:5s}  "
              f"largest difference {rows[-1]['max_abs_difference']:.2e}")
    if args.json:
        files.write_text(args.json, json.dumps({"command": "python benchmarks/eval_batches.py " + " ".join(sys.argv[1:]),
                                                "date": time.strftime("%Y-%m-%d"), "jax_version": jax.__version__,
                                                "examples": args.examples, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

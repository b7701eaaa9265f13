"""Writes minilm_embeddings.json: reference MiniLM sentence embeddings from PyTorch `transformers`.

An independent implementation of the same weights, for tests/test_bert.py. Needs the [bench]
extra (torch, transformers) and the MiniLM package; run from the repository root:

    python tests/golden/make_minilm_golden.py
"""

import json
import pathlib

import torch
import transformers

from gbair import assets

SENTENCES = [
    "Congratulations! You have won a FREE cruise to the Bahamas. Reply now to claim your prize.",
    "Hi Tom, the meeting is moved to 3pm tomorrow; can you bring the quarterly numbers?",
    "URGENT: your account has been suspended. Verify your password at the link below.",
    "I pushed a fix for the segfault in the mail filter, please review when you get a chance.",
    "Lowest mortgage rates in 10 years!!! Act now, limited time offer, no credit check.",
    "The quick brown fox jumps over the lazy dog.",
    "Résumé attached — naïve café owners über-excited about the new coöperative.",
    "short",
    "Re: [SAdev] bayes database corruption after upgrade to 2.41 -- anyone else seeing this?",
    " ".join(["This sentence is long enough to be truncated by the tokenizer."] * 20),
]
MAX_LENGTH = 128


def main() -> None:
    model_dir = assets.verified_minilm_dir()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    batch = tokenizer(SENTENCES, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state.double()
    mask = batch["attention_mask"].unsqueeze(-1).double()
    embeddings = (hidden * mask).sum(1) / mask.sum(1)
    out = pathlib.Path(__file__).with_name("minilm_embeddings.json")
    out.write_text(json.dumps({
        "generator": f"transformers {transformers.__version__}, torch {torch.__version__}",
        "max_length": MAX_LENGTH,
        "sentences": SENTENCES,
        "input_ids": batch["input_ids"].tolist(),
        "embeddings": embeddings.tolist(),
    }))
    print(f"wrote {out}: {len(SENTENCES)} embeddings of size {embeddings.shape[1]}")


if __name__ == "__main__":
    main()

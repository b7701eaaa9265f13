"""A small nonlinear prompt model (any float dtype) and a float64 brute-force TracIn oracle."""

import zlib

import gin
import jax
import jax.numpy as jnp
import numpy as np

from gbair.data.dataset import TextDataset
from gbair.models import heads, prompts
from gbair.models.bert import mean_pool
from gbair.models.prompts import PromptModel
from gbair.models.prompts import PromptCheckpoint

VOCAB, LENGTH = 37, 6


def featurize(texts):
    ids = np.zeros((len(texts), LENGTH), np.int32)
    mask = np.zeros((len(texts), LENGTH), np.int32)
    for i, text in enumerate(texts):
        words = text.split()[:LENGTH]
        ids[i, :len(words)] = [zlib.crc32(w.encode()) % VOCAB for w in words]
        mask[i, :len(words)] = 1
    return {"input_ids": ids, "mask": mask}


def toy_model(dtype=np.float32, prompt_length=3, d_model=5, num_classes=3, seed=0) -> PromptModel:
    rng = np.random.default_rng(seed)
    params = {"embed": rng.standard_normal((VOCAB, d_model)), "w": rng.standard_normal((d_model, d_model)),
              "out": rng.standard_normal((d_model, num_classes))}
    params = {k: v.astype(dtype) for k, v in params.items()}

    def logits_fn(params, prompt, batch):
        x = params["embed"][batch["input_ids"]]
        x, mask = prompts.insert_prompt(prompt, x, batch["mask"], "prefix")
        return mean_pool(jnp.tanh(x @ params["w"]), mask) @ params["out"]

    return PromptModel(
        params=params,
        init_prompt=lambda rng: jax.random.normal(rng, (prompt_length, d_model), dtype),
        logits_fn=logits_fn,
        loss_fn=lambda params, prompt, batch: heads.cross_entropy(logits_fn(params, prompt, batch), batch["label"]),
        featurize=featurize,
        class_names=tuple(f"c{i}" for i in range(num_classes)),
        prompt_shape=(prompt_length, d_model),
    )


def toy_dataset(n, seed=0, num_classes=3) -> TextDataset:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(50)]
    texts = tuple(" ".join(rng.choice(words, rng.integers(1, LENGTH + 1))) for _ in range(n))
    return TextDataset(tuple(f"ex{seed}-{i}" for i in range(n)), texts, rng.integers(0, num_classes, n),
                       ("toy",) * n, tuple(f"c{i}" for i in range(num_classes)))


def toy_checkpoints(model, count=3, dtype=np.float32, seed=0) -> list[PromptCheckpoint]:
    rng = np.random.default_rng(seed)
    shape = model.prompt_shape
    return [PromptCheckpoint(step=10 * (c + 1), learning_rate=float(0.5 / (c + 1)),
                             prompt=rng.standard_normal(shape).astype(dtype)) for c in range(count)]


def brute_force_grads(model, checkpoint, dataset) -> np.ndarray:
    """[N, P*E]: one jax.grad call per example, no batching, no vmap."""
    features = model.featurize(dataset.texts)
    out = []
    for i in range(len(dataset)):
        example = {k: v[i:i + 1] for k, v in features.items()}
        example["label"] = dataset.labels[i:i + 1]
        grad = jax.grad(lambda p: model.loss_fn(model.params, p, example)[0])(jnp.asarray(checkpoint.prompt))
        out.append(np.asarray(grad, np.float64).ravel())
    return np.stack(out)


def brute_force_influence(model, checkpoints, train, test, cosine=False, projection=None) -> np.ndarray:
    """sum_c lr_c <g_c(z), g_c(z')> with explicit loops over checkpoints, in float64."""
    total = np.zeros((len(train), len(test)))
    for c in checkpoints:
        g_train, g_test = brute_force_grads(model, c, train), brute_force_grads(model, c, test)
        if projection is not None:
            g_train, g_test = g_train @ projection, g_test @ projection
        if cosine:
            g_train = g_train / np.linalg.norm(g_train, axis=1, keepdims=True)
            g_test = g_test / np.linalg.norm(g_test, axis=1, keepdims=True)
        for i in range(len(train)):
            for j in range(len(test)):
                total[i, j] += c.learning_rate * float(g_train[i] @ g_test[j])
    return total


HAM = ["notes from the project meeting on tuesday", "can you review my patch to the parser",
       "lunch with the team tomorrow at noon", "the build is green again after the fix"]
SPAM = ["win a free cruise now click here", "cheap pills no prescription needed",
        "you have won cash prize claim today", "lowest mortgage rates act now"]


def spam_like(n: int, seed: int, prefix: str) -> TextDataset:
    """Easy ham/spam texts (with a random number) for end-to-end runs on the tiny BERT."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    texts = tuple(f"{rng.choice(SPAM if y else HAM)} {rng.integers(1000)}" for y in labels)
    return TextDataset(tuple(f"{prefix}/{i}" for i in range(n)), texts, labels, ("toy",) * n, ("ham", "spam"))


@gin.configurable
def toy_spam_splits(train: int = 40, validation: int = 16, test: int = 16) -> dict[str, TextDataset]:
    return {"train": spam_like(train, 0, "train"), "validation": spam_like(validation, 1, "validation"),
            "test": spam_like(test, 2, "test")}

"""The backbones a config chooses: each builds a `PromptModel` (see `gbair.models.prompts`).

MiniLM is the embedded default; T5 1.1 reads a T5X or Hugging Face checkpoint and a SentencePiece
vocabulary that the user provides. gbair.config registers them with gin (`MODEL = @minilm_classifier()`,
configs/models/); this module imports no gin.
"""

import dataclasses
import os
from typing import Callable, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gbair import UserError, assets, pretrained
from gbair.models import bert, heads, prompts, t5
from gbair.models.prompts import Batch, Params, PromptModel


def minilm_classifier(
    class_descriptions: Sequence[str],
    *,
    class_names: Sequence[str] | None = None,
    prompt_length: int = 16,
    max_length: int = 64,
    scale: float = 20.0,
    prompt_init: Literal["sampled_vocab", "class_label", "uniform"] = "sampled_vocab",
    model_dir: str | os.PathLike | None = None,
    dtype: str = "float32",
) -> PromptModel:
    """MiniLM (or any BERT) + soft prompt after [CLS] + cosine head against class descriptions.

    Args:
      class_descriptions: one text per class; their frozen mean-pooled embeddings are the head.
      class_names: short label words for `class_label` init (default: the descriptions).
      prompt_length: P, soft prompt tokens.
      max_length: text tokens per example (P + max_length <= 512).
      scale: cosine similarity multiplier (softmax temperature).
      prompt_init: `sampled_vocab` | `class_label` | `uniform`.
      model_dir: a BERT dir (config.json, model.safetensors, tokenizer.json); default the
        embedded MiniLM package, whose weights are verified against the pinned SHA-256.
      dtype: compute dtype of the encoder (`float32` or `bfloat16`); scores stay float32.

    Gin (configs/models/minilm.gin): `MODEL = @minilm_classifier()`,
    `minilm_classifier.class_descriptions = %CLASS_DESCRIPTIONS`, `minilm_classifier.prompt_length = 16`,
    `minilm_classifier.model_dir = '/path/to/bert'`, ...
    """
    if model_dir is None:
        model_dir = assets.verified_minilm_dir()
        weights = model_dir / "model.safetensors"
    else:
        weights = None
    config, backbone = bert.load_bert(model_dir, weights)
    tokenizer = bert.Tokenizer(os.path.join(model_dir, "tokenizer.json"), max_length)
    if prompt_length + max_length > config.max_positions:
        raise UserError(f"prompt_length + max_length = {prompt_length + max_length} > {config.max_positions}")
    encoder = bert.BertEncoder(config, jnp.dtype(dtype))

    descriptions = tokenizer(list(class_descriptions))
    params = {
        "word_embeddings": backbone["word_embeddings"],
        "encoder": backbone["encoder"],
        "class_embeddings": np.asarray(bert.embed_sentences(config, backbone, descriptions)),
    }

    def logits_fn(params: Params, prompt: jax.Array, batch: Batch) -> jax.Array:
        word = jnp.take(params["word_embeddings"], batch["input_ids"], axis=0)
        embeds, mask = prompts.insert_prompt(prompt, word, batch["mask"], "after_first")
        hidden = encoder.apply({"params": params["encoder"]}, embeds, mask)
        return heads.cosine_logits(bert.mean_pool(hidden, mask), params["class_embeddings"], scale)

    def loss_fn(params: Params, prompt: jax.Array, batch: Batch) -> jax.Array:
        return heads.cross_entropy(logits_fn(params, prompt, batch), batch["label"])

    names = tuple(class_names or class_descriptions)
    table = backbone["word_embeddings"]

    # BERT's first 1000 ids are [PAD], [unusedN], [CLS], [SEP], [MASK]: never sample those.
    init_prompt = prompts.initializer(prompt_init, table, prompt_length, skip=1000,
                                      class_token_ids=[tokenizer.word_ids(name) for name in names])

    mesh = prompts.device_mesh() if jax.device_count() > 1 else None  # batches over every device
    return PromptModel(
        params=params if mesh is None else prompts.place(params, mesh),
        init_prompt=init_prompt,
        logits_fn=logits_fn,
        loss_fn=loss_fn,
        featurize=tokenizer,
        class_names=names,
        prompt_shape=(prompt_length, config.hidden_size),
        mesh=mesh,
    )


# The vocabulary of every public T5 1.1 / LM-adapted checkpoint (read by seqio through tf.io.gfile).
T5_1_1_VOCABULARY = "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"
HF_VOCABULARY = "spiece.model"  # what a Hugging Face T5 dir ships next to model.safetensors


VOCABULARY_SETTING = "VOCABULARY (t5_1_1_classifier.vocabulary)"


def sentencepiece_vocabulary(model_file: str | os.PathLike, setting: str = VOCABULARY_SETTING):
    """seqio's SentencePieceVocabulary over a `.model` file (local or gs://), read and checked now: a
    SentencePiece model whose pad and EOS ids are T5's (0 and 1). Errors name the file and `setting`."""
    model_file = os.fspath(model_file)
    where = f"SentencePiece model {model_file} ({setting})"
    if not model_file.startswith("gs://") and not os.path.isfile(model_file):
        raise FileNotFoundError(f"SentencePiece model {model_file} does not exist ({setting}: expected the "
                                f"checkpoint's vocabulary, e.g. {T5_1_1_VOCABULARY} copied locally)")
    import seqio  # here, not at the top: it imports TensorFlow, which the MiniLM path never needs
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (loaded by seqio already)
    from google.protobuf.message import DecodeError  # pylint: disable=import-outside-toplevel

    vocabulary = seqio.SentencePieceVocabulary(model_file)
    try:
        processor = vocabulary.tokenizer  # reads and parses the file
    except (DecodeError, RuntimeError, OSError, ValueError, tf.errors.OpError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{where} cannot be read as a SentencePiece model ({reason}); expected the .model file "
                        f"the checkpoint was trained with, e.g. {T5_1_1_VOCABULARY}") from e
    ids = (processor.pad_id(), processor.eos_id())
    if ids != (t5.PAD_ID, t5.EOS_ID):
        raise UserError(f"{where} has pad id {ids[0]} and EOS id {ids[1]}, expected T5's {t5.PAD_ID} and "
                        f"{t5.EOS_ID}: it is not a T5 vocabulary (T5's SentencePiece models use pad 0, EOS 1, unk 2)")
    return vocabulary


def sentencepiece_tokenizer(model_file: str | os.PathLike) -> Callable[[list[str]], list[list[int]]]:
    """texts -> ids (no EOS) with seqio's SentencePieceVocabulary over a `.model` file (local or gs://)."""
    vocabulary = sentencepiece_vocabulary(model_file)
    return lambda texts: [vocabulary.encode(text) for text in texts]


def _checked_checkpoint(checkpoint: str, size: str | t5.T5Config, config: t5.T5Config) -> None:
    """UserError (one line) before any weights are read when the checkpoint's shapes do not fit `config`,
    naming the size gin file that fits when one does."""
    found = pretrained.read_shapes(checkpoint)
    problems = pretrained.shape_problems(found, config)
    if not problems:
        return
    chosen = f"t5_1_1_classifier.size={size!r}" if isinstance(size, str) else "t5_1_1_classifier.size (a T5Config)"
    fits = [name for name, preset in t5.SIZES.items() if not pretrained.shape_problems(found, preset)]
    if fits:
        raise UserError(f"CHECKPOINT {checkpoint} is T5 1.1 {fits[0]}, not {chosen}: add "
                        f"--gin_file=configs/models/t5_1_1_{fits[0]}.gin after the experiment file")
    shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    raise UserError(f"CHECKPOINT {checkpoint} ({found.format}) fits neither {chosen} nor any "
                    f"configs/models/t5_1_1_<size>.gin ({', '.join(t5.SIZES)}): {shown}")


def default_vocabulary(checkpoint: str) -> str:
    """spiece.model beside a Hugging Face checkpoint, else the public T5 1.1 vocabulary."""
    directory = checkpoint if os.path.isdir(checkpoint) else os.path.dirname(checkpoint)
    beside = os.path.join(directory, HF_VOCABULARY)
    return beside if os.path.isfile(beside) else T5_1_1_VOCABULARY


def t5_1_1_classifier(
    verbalizers: Sequence[str],
    *,
    checkpoint: str | None = None,
    vocabulary: str | None = None,
    size: str | t5.T5Config = "base",
    dtype: str = "float32",
    class_names: Sequence[str] | None = None,
    prompt_length: int = 100,
    max_length: int = 256,
    prompt_init: Literal["sampled_vocab", "class_label", "uniform"] = "class_label",
    model_parallel: int = 1,
    attention_implementation: str | None = None,
) -> PromptModel:
    """T5 1.1 (or LM-adapted T5) from a T5X / Hugging Face checkpoint as a rank classifier (see `t5.t5_classifier`).

    Before any weights are read, one-line errors for: a vocabulary that is missing, not a SentencePiece
    model, without T5's pad and EOS ids (0, 1), or with more pieces than the checkpoint's embedding rows;
    and a checkpoint whose shapes (from its metadata) do not fit `size`, naming the size gin file that fits.

    Args:
      verbalizers: one target text per class, e.g. ("ok", "not ok"); its log-likelihood is the class score.
      checkpoint: a T5X step dir (legacy or Orbax, local or gs://) or HF safetensors file/dir. Required.
      vocabulary: the SentencePiece `.model` file the checkpoint was trained with; default
        `spiece.model` beside a Hugging Face checkpoint, else the public T5 1.1 vocabulary on GCS.
      size: small | base | large | xl | xxl, or a `T5Config` (tests use a tiny one).
      dtype: activations in `float32` or `bfloat16` (norms, logits and losses stay float32).
      model_parallel: devices per model copy; kernels are sharded over them (`t5.partition_specs`)
        and batches over the remaining devices. 1 = pure data parallelism.
      attention_implementation: None (einsum, float32 softmax), "xla" or "cudnn" (GPU, bfloat16).

    Gin (configs/models/t5_1_1*.gin): `MODEL = @t5_1_1_classifier()`,
    `t5_1_1_classifier.verbalizers = %VERBALIZERS`, `t5_1_1_classifier.checkpoint = %CHECKPOINT`,
    `t5_1_1_classifier.size = "base"` (or `@T5Config()` with `T5Config.d_model = 16`, ...), ...
    """
    if not checkpoint:
        raise UserError("no T5 checkpoint: pass --gin.CHECKPOINT=\"'/path/to/checkpoint_1100000'\" "
                           "(a T5X step dir, local or gs://, or a Hugging Face safetensors file or dir)")
    if isinstance(size, str) and size not in t5.SIZES:
        raise UserError(f"t5_1_1_classifier.size={size!r}, expected one of {sorted(t5.SIZES)} or a T5Config")
    t5_config = dataclasses.replace(t5.SIZES[size] if isinstance(size, str) else size, dtype=dtype,
                                    attention_implementation=attention_implementation)
    # Everything that can be checked without the weights is checked first (their read takes minutes).
    vocabulary_file = vocabulary or default_vocabulary(checkpoint)
    setting = VOCABULARY_SETTING if vocabulary else f"VOCABULARY unset, so the default for CHECKPOINT {checkpoint}"
    spm = sentencepiece_vocabulary(vocabulary_file, setting)
    _checked_checkpoint(checkpoint, size, t5_config)
    if spm.vocab_size > t5_config.vocab_size:
        raise UserError(f"SentencePiece model {vocabulary_file} ({setting}) has {spm.vocab_size} "
                        f"pieces, more than the checkpoint's {t5_config.vocab_size} embedding rows: it is not the "
                        f"vocabulary this checkpoint was trained with")
    tokenize = lambda texts: [spm.encode(text) for text in texts]  # noqa: E731
    mesh = prompts.device_mesh(model_parallel)
    specs = t5.partition_specs(t5_config, model_parallel)
    params = prompts.place(pretrained.load_t5_params(checkpoint, t5_config), mesh, specs)
    return t5.t5_classifier(params, t5_config, tokenize, verbalizers, prompt_length=prompt_length,
                            max_length=max_length, class_names=class_names, prompt_init=prompt_init, mesh=mesh)

"""PyTorch peers of gbair's per-example prompt-gradient / TracIn kernel, on the same weights and prompt.

Everything here mirrors `gbair.classifiers.minilm_classifier` exactly: the soft prompt [P, E]
is spliced in right after the first token ([CLS]) at the word-embedding level with the mask
extended by ones; BERT then adds absolute positions 0..P+L-1 and token-type-0 embeddings; the
output is mean-pooled over the extended mask; logits = scale * cosine(pooled, class_embeddings);
loss = per-example softmax cross-entropy.

Three peers:
  * `torch_func_grads`: per-example prompt gradients via `torch.func.vmap(torch.func.grad(...))`.
  * `torch_batched_grads`: the same gradients from ONE backward pass over a per-example prompt
    copy [B, P, E] (examples are independent, so d(sum of losses)/d(prompt_b) = d(loss_b)/d(prompt_b)).
  * `make_captum_tracin` / `captum_tracin_scores`: captum's `TracInCP` over prompt checkpoints.

Thread count is left to the caller (`torch.set_num_threads`). Requires torch, transformers and
captum (not gbair dependencies): `pip install torch transformers captum`.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import warnings
from typing import Sequence

import numpy as np
import torch
from torch import nn

Examples = tuple  # (input_ids [N, L], mask [N, L], labels [N]); numpy arrays or tensors


def _long(x) -> torch.Tensor:
    return x.long() if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x, np.int64))


def _float(x) -> torch.Tensor:
    return x.float() if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x, np.float32))


class TorchPromptClassifier(nn.Module):
    """Frozen BERT + soft prompt after [CLS] + cosine head: gbair's `minilm_classifier` in PyTorch.

    forward(prompt [P, E] or [B, P, E], input_ids [B, L], mask [B, L], labels [B] | None)
      -> per-example loss [B] if labels is given, else logits [B, C].
    """

    def __init__(self, bert: nn.Module, class_embeddings: np.ndarray, scale: float):
        super().__init__()
        self.bert = bert
        self.register_buffer("class_embeddings", _float(class_embeddings))
        self.scale = float(scale)

    def logits(self, prompt: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        word = self.bert.embeddings.word_embeddings(input_ids)  # [B, L, E]
        batch = word.shape[0]
        if prompt.dim() == 2:
            prompt = prompt.unsqueeze(0).expand(batch, -1, -1)
        prompt = prompt.to(word.dtype)
        mask = mask.to(word.dtype)
        ones = torch.ones(prompt.shape[:2], dtype=mask.dtype, device=mask.device)
        embeds = torch.cat([word[:, :1], prompt, word[:, 1:]], 1)
        ext_mask = torch.cat([mask[:, :1], ones, mask[:, 1:]], 1)
        # gbair's additive bias (0 or float32 min), passed pre-built as 4D [B, 1, 1, S] so that
        # transformers returns it as-is (its 2D-mask path calls `mask.all()`, which vmap rejects).
        bias = torch.where(ext_mask > 0, 0.0, torch.finfo(word.dtype).min).to(word.dtype)[:, None, None, :]
        # token_type_ids default to zeros, position_ids to 0..S-1: exactly gbair's encoder.
        hidden = self.bert(inputs_embeds=embeds, attention_mask=bias).last_hidden_state
        weights = ext_mask.unsqueeze(-1)
        pooled = (hidden * weights).sum(-2) / weights.sum(-2).clamp_min(1e-9)
        unit = lambda x: x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # noqa: E731
        return self.scale * unit(pooled) @ unit(self.class_embeddings).T

    def forward(self, prompt, input_ids, mask, labels=None) -> torch.Tensor:
        logits = self.logits(prompt, input_ids, mask)
        if labels is None:
            return logits
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        return -log_probs.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)


def build_torch_classifier(
    model_dir: str | os.PathLike,
    class_embeddings: np.ndarray,
    scale: float,
    attn_implementation: str = "eager",
) -> TorchPromptClassifier:
    """A `TorchPromptClassifier` over transformers' `BertModel` loaded from `model_dir` (HF format).

    Eval mode (no dropout), float32, every backbone parameter requires_grad=False, no pooler.
    `eager` attention is gbair's additive-bias softmax written out; `sdpa` also works (under
    `torch.func.vmap` through torch's slow batching fallback, with a warning) and on 2 CPU threads
    at B=32, L=64, P=16 is within ~5% of eager, so eager is the default.
    """
    from transformers import BertModel  # pylint: disable=import-outside-toplevel
    from transformers.utils import logging as hf_logging  # pylint: disable=import-outside-toplevel

    verbosity, progress_bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the unused pooler weights are expected: no load report
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bert = BertModel.from_pretrained(
                str(model_dir), add_pooling_layer=False, attn_implementation=attn_implementation,
                dtype=torch.float32,
            )
    finally:
        hf_logging.set_verbosity(verbosity)
        if progress_bar:
            hf_logging.enable_progress_bar()
    bert = bert.float().eval()
    bert.requires_grad_(False)
    module = TorchPromptClassifier(bert, class_embeddings, scale).eval()
    module.requires_grad_(False)
    return module


def torch_func_grads(module: TorchPromptClassifier, prompt: np.ndarray, input_ids, mask, labels) -> np.ndarray:
    """Per-example prompt gradients [B, P, E] via torch.func.vmap(torch.func.grad(loss)).

    The prompt is the only differentiated input; the (frozen) module is closed over, so no
    parameter is traced. Timed region = this call (tensor conversion is negligible).
    """
    prompt_t = _float(prompt)

    def loss_one(p, ids, m, y):
        return module(p, ids.unsqueeze(0), m.unsqueeze(0), y.unsqueeze(0))[0]

    grads = torch.func.vmap(torch.func.grad(loss_one), in_dims=(None, 0, 0, 0))(
        prompt_t, _long(input_ids), _long(mask), _long(labels)
    )
    return grads.numpy()


def torch_batched_grads(module: TorchPromptClassifier, prompt: np.ndarray, input_ids, mask, labels) -> np.ndarray:
    """Per-example prompt gradients [B, P, E] from one backward pass over a per-example prompt copy."""
    ids = _long(input_ids)
    prompts = _float(prompt).unsqueeze(0).repeat(ids.shape[0], 1, 1).requires_grad_(True)
    with torch.enable_grad():
        loss = module(prompts, ids, _long(mask), _long(labels)).sum()
        (grads,) = torch.autograd.grad(loss, prompts)
    return grads.numpy()


# --------------------------------------------------------------------------------------------
# captum TracInCP


class CaptumPromptModel(nn.Module):
    """What captum sees: forward(input_ids, mask) -> logits, whose only trainable layer is `prompt`.

    The prompt lives in an `nn.Linear(P, E, bias=False)` applied to a per-example one-hot
    identity [B, P, P], so `prompt.weight` = prompt.T [E, P] and the per-example prompt is
    exactly the shared prompt. This is what lets captum's `sample_wise_grads_per_batch` trick
    (which only supports nn.Linear / nn.Conv2d) compute per-example gradients in one backward:
    sample_grad[b] = grad_out[b]^T @ one_hot = d loss_b / d prompt^T. The one-hot requires grad
    because captum's backward hook registers a tensor hook on the layer's input.
    """

    def __init__(self, classifier: TorchPromptClassifier, prompt_length: int, hidden_size: int):
        super().__init__()
        self.classifier = classifier
        self.prompt = nn.Linear(prompt_length, hidden_size, bias=False)
        self.prompt_length = prompt_length

    def set_prompt(self, prompt) -> None:
        with torch.no_grad():
            self.prompt.weight.copy_(_float(prompt).T)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(self.prompt_length, dtype=torch.float32)
        one_hot = eye.expand(input_ids.shape[0], -1, -1).clone().requires_grad_(torch.is_grad_enabled())
        return self.classifier(self.prompt(one_hot), input_ids, mask)


class CaptumTracIn:
    """captum `TracInCP` over prompt checkpoints; build once, call `.influence(test)` repeatedly.

    Set-up (outside any timed region): writing one checkpoint file per (prompt, lr) to a temp
    dir (`torch.save` of the prompt layer's state dict), the train `TensorDataset`, and the
    `TracInCP` object. Inside `.influence(test)` (the timed region): everything captum does per
    call: for each checkpoint it loads the file (torch.load) and computes the test jacobians, then
    for each train batch it re-loads every checkpoint, computes the train jacobians and the
    lr-weighted dot products. Per-example gradients are computed with
    `sample_wise_grads_per_batch=True` (one backward per batch, CrossEntropyLoss(reduction="sum"))
    by default, or per-example `autograd.grad` loops (`sample_wise=False`, reduction="none").
    """

    def __init__(
        self,
        module: TorchPromptClassifier,
        checkpoints: Sequence[tuple[np.ndarray, float]],
        train: Examples,
        batch_size: int,
        sample_wise: bool = True,
        workdir: str | os.PathLike | None = None,
    ):
        from captum.influence import TracInCP  # pylint: disable=import-outside-toplevel
        from torch.utils.data import TensorDataset  # pylint: disable=import-outside-toplevel

        if not checkpoints:
            raise ValueError("need at least one (prompt, learning_rate) checkpoint")
        prompt_length, hidden_size = np.asarray(checkpoints[0][0]).shape
        self.model = CaptumPromptModel(module, prompt_length, hidden_size)
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="captum_tracin_")
            workdir = self._tmp.name
        workdir = pathlib.Path(workdir)
        self._learning_rates: dict[str, float] = {}
        paths = []
        for i, (prompt, lr) in enumerate(checkpoints):
            path = str(workdir / f"prompt_{i:04d}.pt")
            self.model.set_prompt(prompt)
            torch.save(self.model.prompt.state_dict(), path)
            self._learning_rates[path] = float(lr)
            paths.append(path)

        def load(model: CaptumPromptModel, path: str) -> float:
            model.prompt.load_state_dict(torch.load(path, weights_only=True))
            return self._learning_rates[path]

        input_ids, mask, labels = train
        dataset = TensorDataset(_long(input_ids), _long(mask), _long(labels))
        reduction = "sum" if sample_wise else "none"
        self.sample_wise = sample_wise
        self.tracin = TracInCP(
            self.model,
            dataset,
            checkpoints=paths,
            checkpoints_load_func=load,
            layers=["prompt"],
            loss_fn=nn.CrossEntropyLoss(reduction=reduction),
            batch_size=batch_size,
            sample_wise_grads_per_batch=sample_wise,
        )

    def influence(self, test: Examples) -> np.ndarray:
        """TracIn scores [N_train, N_test] = sum_c lr_c <g_c(train), g_c(test)>."""
        input_ids, mask, labels = test
        with warnings.catch_warnings():
            # captum warns that the integer inputs (ids, mask) cannot require grad.
            warnings.simplefilter("ignore", UserWarning)
            scores = self.tracin.influence((_long(input_ids), _long(mask), _long(labels)))
        return scores.detach().numpy().T  # captum returns [N_test, N_train]

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "CaptumTracIn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_captum_tracin(module, checkpoints, train, batch_size, sample_wise: bool = True, workdir=None) -> CaptumTracIn:
    """See `CaptumTracIn`."""
    return CaptumTracIn(module, checkpoints, train, batch_size, sample_wise=sample_wise, workdir=workdir)


def captum_tracin_scores(
    module: TorchPromptClassifier,
    checkpoints: Sequence[tuple[np.ndarray, float]],
    train: Examples,
    test: Examples,
    batch_size: int,
    sample_wise: bool = True,
) -> np.ndarray:
    """One-shot TracInCP scores [N_train, N_test] (set-up included; use `make_captum_tracin` to time)."""
    with make_captum_tracin(module, checkpoints, train, batch_size, sample_wise=sample_wise) as tracin:
        return tracin.influence(test)

"""Per-example gradients of a prompt model's loss with respect to its soft prompt.

The backbone is frozen, so a per-example gradient is one [P, E] array and needs no weight
gradients: one batched backward pass gives all of them. Works for any `PromptModel.loss_fn`
(MiniLM now, T5 later) whose prompt may be [P, E] or per-example [B, P, E].
"""

from typing import Any, Callable, Literal, Mapping

import jax
import jax.numpy as jnp

from gbair import UserError

Method = Literal["vmap", "tiled"]
LossFn = Callable[[Any, jax.Array, Mapping[str, jax.Array]], jax.Array]


def per_example_grads(loss_fn: LossFn, params: Any, prompt: jax.Array, batch: Mapping[str, jax.Array],
                      *, method: Method = "tiled") -> jax.Array:
    """d loss_i / d prompt for every example i of `batch` -> [B, P, E] (float32, or the prompt's float64).

    Rows with batch["weight"] == 0 (padding) get zero gradients.
      tiled: one copy of the prompt per example; the gradient of the summed loss with respect to
        the [B, P, E] copies is, row by row, each example's own gradient.
      vmap: jax.vmap(jax.grad(loss of one example)).
    Both compile to one batched forward + backward pass (see benchmarks/tracin_bench.py).
    """
    return per_example_losses_and_grads(loss_fn, params, prompt, batch, method=method)[1]


def per_example_losses_and_grads(loss_fn: LossFn, params: Any, prompt: jax.Array, batch: Mapping[str, jax.Array],
                                 *, method: Method = "tiled") -> tuple[jax.Array, jax.Array]:
    """([B] losses, [B, P, E] gradients) from the same forward + backward pass (TRAK needs both);
    losses are unweighted, gradients as `per_example_grads`."""
    batch_size = batch["label"].shape[0]
    out_dtype = jnp.promote_types(prompt.dtype, jnp.float32)
    weight = batch.get("weight", jnp.ones((batch_size,), out_dtype))
    if method == "tiled":
        def total_loss(tiled):
            losses = loss_fn(params, tiled, batch)
            return jnp.sum(losses * weight), losses

        grads, losses = jax.grad(total_loss, has_aux=True)(jnp.broadcast_to(prompt, (batch_size,) + prompt.shape))
        return losses.astype(out_dtype), grads.astype(out_dtype)
    if method == "vmap":
        def one_loss(prompt, example, w):
            loss = loss_fn(params, prompt, jax.tree.map(lambda x: x[None], example))[0]
            return loss * w, loss

        examples = {k: v for k, v in batch.items() if k != "weight"}
        grads, losses = jax.vmap(jax.grad(one_loss, has_aux=True), in_axes=(None, 0, 0))(prompt, examples, weight)
        return losses.astype(out_dtype), grads.astype(out_dtype)
    raise ValueError(f"per_example_grads: method={method!r}, expected 'tiled' or 'vmap'")


def check_tiled(loss_fn: LossFn, params: Any, prompt_shape: tuple[int, int], batch: Mapping[str, Any]) -> None:
    """Refuses (UserError, one line) a loss_fn that cannot take `tiled`'s per-example prompts [B, P, E]
    (a model written for [P, E] prompts only), tracing it on `batch` (B != P, so a [B, E] + [P, E] mix-up
    cannot broadcast) without computing anything."""
    size = len(batch["label"])
    tiled = jax.ShapeDtypeStruct((size,) + tuple(prompt_shape), jnp.float32)
    hint = ("pass method='vmap' (it takes any [P, E] model), or make logits_fn take [B, P, E] prompts too "
            "(gbair.models.prompts.insert_prompt does)")
    try:
        shape = jax.eval_shape(loss_fn, params, tiled, batch).shape
    except (TypeError, ValueError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"method='tiled' gives the model's loss_fn a per-example prompt {tiled.shape} [B, P, E] "
                        f"and it failed ({reason}); {hint}") from e
    if shape != (size,):
        raise UserError(f"method='tiled': the model's loss_fn gave shape {shape} for a per-example prompt "
                        f"{tiled.shape} [B, P, E], expected ({size},); {hint}")

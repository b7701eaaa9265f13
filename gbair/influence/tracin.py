"""TracInCP over saved prompt checkpoints: influence, self-influence, influence on a set, top-k.

    TracInCP(z, z') = sum_c lr_c <g_c(z), g_c(z')>,  g_c = d loss / d prompt at checkpoint c.

The training set is streamed in blocks of `batch_size` examples per device; each block is sharded
over the mesh's `data` axis while the (small) test-side gradients stay replicated, so host memory
holds one block's scores, never all N x P x E training gradients. Top-k is reduced on each device
first and then across devices. Multi-host: call `jax.distributed.initialize()` first; every
process passes the same datasets and gets the same (replicated) results.
"""

import functools
from typing import Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gbair.batching import PassProgress, make_batch, pad_indices
from gbair.data.dataset import TextDataset
from gbair.influence.gradients import Method, check_tiled, per_example_losses_and_grads
from gbair.models.prompts import DATA, PromptCheckpoint, PromptModel, device_mesh, place

Variant = Literal["dot", "cosine"]


class KMostInfluential(NamedTuple):
    """Per test example, the k training examples with the highest (or, for opponents, lowest) score."""

    indices: np.ndarray  # [T, k] int, training-set indices, most influential first
    scores: np.ndarray  # [T, k]


def most_influential(scores: np.ndarray, k: int, *, opponents: bool = False) -> KMostInfluential:
    """`TracIn.top_k` of an influence matrix already at hand ([N_train, T] `scores`, e.g. a run's
    stored explanations): per test example the k highest (opponents: lowest) scores, ties in
    training-set order, as TracIn.top_k ranks them."""
    order = np.argsort(scores if opponents else -scores, axis=0, kind="stable")[:k].T
    return KMostInfluential(order, np.take_along_axis(np.asarray(scores).T, order, axis=1))


def projection_matrix(dim_in: int, dim_out: int, seed: int) -> jax.Array:
    """Gaussian Johnson-Lindenstrauss map [dim_in, dim_out] with entries N(0, 1/dim_out).

    Dot products of projected gradients are unbiased estimates of the originals.
    """
    return jax.random.normal(jax.random.key(seed), (dim_in, dim_out), jnp.float32) / np.sqrt(dim_out)


def check_method(model: PromptModel, method: Method) -> None:
    """Refuses (UserError, one line, before any work) a model that `method` cannot differentiate: under
    `tiled`, a loss_fn written for [P, E] prompts only (gbair.influence.gradients.check_tiled)."""
    if method not in ("tiled", "vmap"):
        raise ValueError(f"method={method!r}, expected 'tiled' or 'vmap'")
    if method == "tiled":
        probe = model.prompt_shape[0] + 1
        check_tiled(model.loss_fn, model.params, model.prompt_shape,
                    make_batch(model.featurize(["probe"] * probe), np.zeros(probe, np.int32), np.arange(probe),
                               np.ones(probe, np.float32)))


class TracIn:
    """TracInCP scores of one prompt model over its saved checkpoints.

    Args:
      model: the prompt model whose `loss_fn` is differentiated.
      checkpoints: (prompt, learning_rate) at each saved step; see train.prompt_checkpoints.
      variant: `dot` (TracIn) or `cosine` (gradients normalised per checkpoint, so the same
        high-gradient-norm examples stop topping every list).
      batch_size: training examples per device per block.
      method: per-example gradient kernel, `tiled` or `vmap`.
      projection_dim: if set, project flattened gradients to this size with a seeded Gaussian map.
      mesh: a Mesh with a `data` axis; default the model's mesh, else all devices.
    """

    def __init__(self, model: PromptModel, checkpoints: Sequence[PromptCheckpoint], *,
                 variant: Variant = "dot", batch_size: int = 32, method: Method = "tiled",
                 projection_dim: int | None = None, projection_seed: int = 0, mesh: Mesh | None = None,
                 log_every_s: float = 30.0):
        if variant not in ("dot", "cosine"):
            raise ValueError(f"TracIn: variant={variant!r}, expected 'dot' or 'cosine'")
        if not checkpoints:
            raise ValueError("TracIn: no checkpoints given")
        if batch_size <= 0:
            raise ValueError(f"TracIn: batch_size={batch_size}, expected > 0")
        self.model, self.variant, self.method = model, variant, method
        check_method(model, method)
        if mesh is not None and model.mesh is not None and mesh != model.mesh:
            raise ValueError("TracIn: mesh differs from the mesh the model's params live on (model.mesh)")
        self.mesh = mesh or model.mesh or device_mesh()
        self.block_size = batch_size * self.mesh.shape[DATA]
        self.log_every_s = log_every_s
        dim = int(np.prod(model.prompt_shape))
        self._replicated = NamedSharding(self.mesh, PartitionSpec())
        self._sharded = NamedSharding(self.mesh, PartitionSpec(DATA))
        self._params = model.params if model.mesh is not None else self._put(model.params, self._replicated)
        prompts = np.stack([np.asarray(c.prompt) for c in checkpoints])
        self.dtype = np.promote_types(prompts.dtype, np.float32)  # float64 only in oracle tests
        self._prompts = self._put(prompts.astype(self.dtype), self._replicated)
        self._rates = np.array([c.learning_rate for c in checkpoints], self.dtype)
        projection = None if projection_dim is None else np.asarray(
            projection_matrix(dim, projection_dim, projection_seed))
        self._projection = None if projection is None else self._put(projection, self._replicated)

    # ---- public scores -------------------------------------------------------------------------

    def gradient_features(self, dataset: TextDataset) -> np.ndarray:
        """[C, N, d] per-checkpoint gradients of `dataset` (flattened, projected, normalised for cosine)."""
        blocks = [f[:, :n] for _, n, f in self._stream("gradients", dataset, self._features_fn, ())]
        return np.concatenate(blocks, axis=1)

    def influence(self, train: TextDataset, test: TextDataset) -> np.ndarray:
        """[N_train, N_test] TracInCP scores: how much each training example pushes each test loss down."""
        test_side = self._test_side(test, aggregate=False)
        return np.concatenate([s[:n] for _, n, s in self._stream("influence", train, self._influence_fn,
                                                                   (test_side,))])

    def influence_dot_and_cosine(self, train: TextDataset, test: TextDataset) -> tuple[np.ndarray, np.ndarray]:
        """Both [N_train, N_test] variants from one pass over `train` (cosine = normalised features)."""
        if self.variant != "dot":
            raise ValueError("TracIn.influence_dot_and_cosine needs raw gradients: build it with variant='dot'")
        if len(test) == 0:
            raise ValueError("TracIn: the test set is empty")
        raw = self.gradient_features(test)
        sides = np.stack([raw, _unit(raw)]) * self._rates[None, :, None, None]
        both = [s[:, :n] for _, n, s in self._stream("influence (dot and cosine)", train, self._dot_and_cosine_fn,
                                                     (self._put(sides, self._replicated),))]
        dot_and_cosine = np.concatenate(both, axis=1)
        return dot_and_cosine[0], dot_and_cosine[1]

    def aggregate_influence(self, train: TextDataset, test: TextDataset) -> np.ndarray:
        """[N_train] influence on the summed loss of the whole `test` set (= row sums of `influence`).

        Test gradients are summed per checkpoint first, so this costs one pass over `train`.
        """
        test_side = self._test_side(test, aggregate=True)
        return np.concatenate([s[:n, 0] for _, n, s in self._stream("aggregate influence", train,
                                                                      self._influence_fn, (test_side,))])

    def self_influence(self, train: TextDataset) -> np.ndarray:
        """[N] sum_c lr_c ||g_c(z)||^2 (the diagonal of `influence(train, train)`)."""
        if self.variant == "cosine":
            raise ValueError("TracIn.self_influence: with variant='cosine' every score is sum(lr); use 'dot'")
        return np.concatenate([s[:n] for _, n, s in self._stream("self-influence", train,
                                                                   self._self_influence_fn, ())])

    def top_k(self, train: TextDataset, test: TextDataset, k: int, *, opponents: bool = False) -> KMostInfluential:
        """Per test example, the k proponents (highest scores) or opponents (lowest) in `train`, ties in
        training-set order: `most_influential(self.influence(train, test), k)` without the [N_train, T]
        matrix in memory."""
        if not 0 < k <= len(train):
            raise ValueError(f"TracIn.top_k: k={k}, expected 1..{len(train)} (the training set size)")
        test_side = self._test_side(test, aggregate=False)
        sign = self.dtype.type(-1.0 if opponents else 1.0)
        scores = self._put(np.full((len(test), k), -np.inf, self.dtype), self._replicated)
        indices = self._put(np.full((len(test), k), -1, np.int32), self._replicated)
        step = self._top_k_step(k)
        for begin, _, batch in self._blocks("top-k", train):
            scores, indices = step(self._params, self._prompts, self._projection, test_side, batch,
                                   scores, indices, np.int32(begin), sign)
        return KMostInfluential(np.asarray(indices), sign * np.asarray(scores))

    # ---- machinery -----------------------------------------------------------------------------

    def _put(self, tree, sharding: NamedSharding):
        return place(tree, self.mesh, jax.tree.map(lambda _: sharding.spec, tree))

    def _blocks(self, what: str, dataset: TextDataset):
        """Yields (begin, valid rows, sharded batch) for fixed-size blocks of `dataset`, logging progress
        (the consumer has the previous block's result on the host before asking for the next)."""
        features = self.model.featurize(dataset.texts)
        size = self._block_rows(len(dataset))
        progress = PassProgress(f"TracIn {what}", len(dataset), self.log_every_s)
        for begin in range(0, len(dataset), size):
            indices, weights = pad_indices(np.arange(begin, min(begin + size, len(dataset))), size)
            yield begin, min(size, len(dataset) - begin), self._put(
                make_batch(features, dataset.labels, indices, weights), self._sharded)
            progress.update(min(begin + size, len(dataset)))

    def _block_rows(self, n: int) -> int:
        """Rows per block for a dataset of n examples (small sets: less padding)."""
        devices = self.mesh.shape[DATA]
        return min(self.block_size, -(-n // devices) * devices)

    def _stream(self, what, dataset, fn, extra):
        """Yields (begin, valid count, host output of fn(params, prompts, projection, *extra, batch))."""
        for begin, count, batch in self._blocks(what, dataset):
            yield begin, count, jax.tree.map(np.asarray, fn(self._params, self._prompts, self._projection,
                                                            *extra, batch))

    @functools.cached_property
    def _features_fn(self):
        """jit: block -> [C, B, d] gradient features, replicated on every device."""
        return jax.jit(self._features, out_shardings=self._replicated)

    def _features(self, params, prompts, projection, batch):
        return self._features_and_losses(params, prompts, projection, batch)[0]

    @property
    def _loss_fn(self):
        """(params, prompt, batch) -> [B]: the loss whose prompt gradients g_c are scored (the model's
        training loss; TRAK differentiates the class probability's instead)."""
        return self.model.loss_fn

    def _features_and_losses(self, params, prompts, projection, batch):
        """[C, B, d] gradient features and [C, B] losses (free: the forward pass computes them anyway)."""
        def one_checkpoint(prompt):
            losses, grads = per_example_losses_and_grads(self._loss_fn, params, prompt, batch,
                                                         method=self.method)
            flat = grads.reshape(grads.shape[0], -1)
            if projection is not None:
                flat = jnp.dot(flat, projection, preferred_element_type=self.dtype)
            if self.variant == "cosine":
                flat = _unit(flat)
            return flat, losses

        return jax.lax.map(one_checkpoint, prompts)

    @functools.cached_property
    def _influence_fn(self):
        """jit: block -> [B, T] scores against the lr-weighted test side."""
        def scores(params, prompts, projection, test_side, batch):
            train = self._features(params, prompts, projection, batch)
            return jnp.einsum("cbd,ctd->bt", train, test_side, preferred_element_type=self.dtype)

        return jax.jit(scores, out_shardings=self._replicated)

    @functools.cached_property
    def _dot_and_cosine_fn(self):
        """jit: block -> [2, B, T]: raw and normalised train features against the two test sides."""
        def scores(params, prompts, projection, sides, batch):
            train = self._features(params, prompts, projection, batch)
            return jnp.stack([
                jnp.einsum("cbd,ctd->bt", train, sides[0], preferred_element_type=self.dtype),
                jnp.einsum("cbd,ctd->bt", _unit(train), sides[1], preferred_element_type=self.dtype)])

        return jax.jit(scores, out_shardings=self._replicated)

    @functools.cached_property
    def _self_influence_fn(self):
        def scores(params, prompts, projection, batch):
            train = self._features(params, prompts, projection, batch)
            return jnp.einsum("c,cbd,cbd->b", self._rates, train, train, preferred_element_type=self.dtype)

        return jax.jit(scores, out_shardings=self._replicated)

    @functools.lru_cache(maxsize=4)
    def _top_k_step(self, k: int):
        """jit: (block, running best [T, k]) -> new running best; per-device top-k, then global."""
        def local_top_k(scores, weight):
            local = scores.shape[0]
            masked = jnp.where(weight[:, None] > 0, scores, -jnp.inf).T  # [T, local]; padding never wins
            values, rows = jax.lax.top_k(masked, min(k, local))
            return values[None], (rows + jax.lax.axis_index(DATA) * local)[None]

        sharded_top_k = jax.shard_map(local_top_k, mesh=self.mesh, in_specs=(PartitionSpec(DATA),) * 2,
                                      out_specs=(PartitionSpec(DATA),) * 2)

        def step(params, prompts, projection, test_side, batch, best_scores, best_indices, begin, sign):
            train = self._features(params, prompts, projection, batch)
            scores = sign * jnp.einsum("cbd,ctd->bt", train, test_side, preferred_element_type=self.dtype)
            values, rows = sharded_top_k(scores, batch["weight"])  # [devices, T, k_local]
            flat = lambda x: jnp.moveaxis(x, 0, 1).reshape(x.shape[1], -1)  # noqa: E731
            values = jnp.concatenate([best_scores, flat(values)], axis=-1)
            rows = jnp.concatenate([best_indices, flat(rows) + begin], axis=-1)
            top, where = jax.lax.top_k(values, k)
            return top, jnp.take_along_axis(rows, where, axis=-1)

        return jax.jit(step, out_shardings=(self._replicated, self._replicated))

    def _test_side(self, test: TextDataset, *, aggregate: bool) -> jax.Array:
        """`_host_test_side`, replicated on the mesh."""
        return self._put(self._host_test_side(test, aggregate=aggregate), self._replicated)

    def _host_test_side(self, test: TextDataset, *, aggregate: bool) -> np.ndarray:
        """lr_c * preconditioned test features [C, T, d] (or their sum over T, [C, 1, d]), on the host."""
        if len(test) == 0:
            raise ValueError("TracIn: the test set is empty")
        features = self._test_features(test)
        if aggregate:
            features = features.sum(axis=1, keepdims=True)
        return (self.precondition(features) * self._rates[:, None, None]).astype(self.dtype)

    def _test_features(self, test: TextDataset) -> np.ndarray:
        """[C, T, d] test-side features before `precondition`: the gradients (TRAK rescales them)."""
        return self.gradient_features(test)

    def precondition(self, features: np.ndarray) -> np.ndarray:
        """[C, T, d] test-side features -> what the training gradients are dotted with (TracIn: as is;
        second-order methods override this with their inverse curvature)."""
        return features


def _unit(x):
    """Rows scaled to unit norm (zero rows, i.e. padding, stay zero); numpy or jax arrays."""
    xp = jnp if isinstance(x, jax.Array) else np
    return x / xp.maximum(xp.linalg.norm(x, axis=-1, keepdims=True), 1e-30)

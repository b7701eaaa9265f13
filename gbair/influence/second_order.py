"""Second-order influence over the prompt: influence functions, DataInf and TRAK.

Each is TracIn (tracin.py) with the test side multiplied by an inverse curvature built from the
training set z_1..z_n, so influence, aggregate influence, self-influence and top-k keep TracIn's
streamed, sharded scoring, its result types and its sign (positive: training on z lowers v's loss;
Koh and Liang's I_up,loss is its negative). g_c = d loss / d prompt at checkpoint c (TRAK and the
true-Fisher influence function: the classifier's class loss, `PromptModel.class_loss_fn`).

    InfluenceFunction  sum_c lr_c g_c(v)^T (G_c + lambda I)^{-1} g_c(z),   G_c = mean_i g_c(z_i) g_c(z_i)^T
    DataInf            the same with G_c block-diagonal, each block's inverse in closed form
    TRAK               mean_c g_c(v)^T (Phi_c^T Phi_c + lambda_c I)^{-1} g_c(z) / (1 - p_c(v))

Prompt tuning trains only d = prompt_length x d_model numbers (6,144 for the embedded MiniLM), so
d x d curvatures can be formed and solved exactly. Every damping is relative to the curvature's mean
*nonzero* eigenvalue, trace / rank with rank = min(vectors summed, d) (`mean_nonzero_eigenvalue`):
N = 400 training gradients span at most 400 of the 6,144 directions, and trace / d would make
lambda ~15x smaller than intended, leaving the methods nearly ridgeless. So one setting fits any
gradient scale and any N.

One gradient pass per checkpoint: the curvature's pass over the training set keeps its gradients on
the host when they fit `KEEP_GRADIENTS_BYTES` (a constructor argument), and scoring that same set
reads them instead of computing them again; the damped inverse is then solved in the span of those
N gradients (Woodbury) when N < d. Beyond the budget every pass streams, as TracIn does. Both give
the same scores up to float rounding (same gradients, same lambda, same curvature): a restructuring of
the computation, so results computed before it (the committed evidence rows) stand.
"""

import functools
from typing import Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.special

from gbair.data.dataset import TextDataset
from gbair.influence.tracin import TracIn
from gbair.models.prompts import PromptCheckpoint, PromptModel

Blocks = Literal["token", "prompt"]
Curvature = Literal["empirical_fisher", "fisher"]
CURVATURES = ("empirical_fisher", "fisher")
MIN_ONE_MINUS_P = 1e-6  # TRAK's 1 - p is clipped here, so confidently fitted examples stay finite
MAX_DENSE_DIM = 16_384  # a d x d float64 matrix per checkpoint: 2 GiB here; beyond, project
KEEP_GRADIENTS_BYTES = 2 * 2**30  # training gradients kept in host memory up to this size; beyond, recomputed


def mean_nonzero_eigenvalue(trace: np.ndarray | float, vectors: int, dim: int) -> np.ndarray | float:
    """trace / min(vectors, dim): the mean of the nonzero eigenvalues of a sum of `vectors` outer
    products in `dim` dimensions (in general position they span exactly min(vectors, dim) directions)."""
    return trace / min(vectors, dim)


class _Preconditioned(TracIn):
    """What the second-order methods share: their argument checks, self-influence through
    `precondition`, no cosine variant, and the training gradients kept from the curvature's pass.
    `dense`: the method may hold d x d matrices (refused when too big).

    The curvature's pass over `train` keeps its gradients (`_kept`, the output of the pass's jitted
    function over all of `train`) when C x N x d numbers of the scorer's dtype, times the copies a
    method needs, fit `keep_gradients_bytes`; then influence, aggregate influence and self-influence
    of that same set (same ids, texts and labels) read them: one gradient pass per checkpoint instead
    of two (DataInf: three). Otherwise every pass computes them again (streamed, bounded memory). top_k
    and other datasets always stream.
    """

    def __init__(self, model: PromptModel, checkpoints: Sequence[PromptCheckpoint], train: TextDataset, *,
                 damping: float, dense: bool, keep_gradients_bytes: int = KEEP_GRADIENTS_BYTES, **tracin_kwargs):
        name = type(self).__name__
        if damping <= 0:
            raise ValueError(f"{name}: damping={damping}, expected > 0")
        if len(train) == 0:
            raise ValueError(f"{name}: the training set is empty")
        super().__init__(model, checkpoints, variant="dot", **tracin_kwargs)
        self.feature_dim = tracin_kwargs.get("projection_dim") or int(np.prod(model.prompt_shape))
        if dense:
            self._check_dense()
        self.keep_gradients_bytes = keep_gradients_bytes
        self._train, self._kept = train, None  # a subclass's curvature pass sets _kept when it `_fits`

    @functools.cached_property
    def _features_and_losses_fn(self):
        """jit: block -> ([C, B, d] gradient features, [C, B] losses), replicated."""
        return jax.jit(self._features_and_losses, out_shardings=self._replicated)

    def _check_dense(self) -> None:
        """Refuses a d x d curvature too big to hold (T5 1.1 base's 100 x 768 prompt: 44 GiB per checkpoint)."""
        dim = self.feature_dim
        if dim > MAX_DENSE_DIM:
            raise ValueError(f"{type(self).__name__}: {dim} prompt numbers make a {dim} x {dim} float64 matrix "
                             f"per checkpoint ({dim * dim * 8 / 2**30:.0f} GiB); set projection_dim "
                             f"(RecoveryConfig.projection_dim), e.g. 4096")

    def _fits(self, train: TextDataset, copies: int = 1) -> bool:
        """Whether `copies` x [C, N, d] training gradients fit `keep_gradients_bytes`."""
        size = len(self._rates) * len(train) * self.feature_dim * self.dtype.itemsize * copies
        return size <= self.keep_gradients_bytes

    def _keeps(self, dataset: TextDataset) -> bool:
        """Whether `dataset` is the curvature's training set and its gradients were kept."""
        train = self._train
        return self._kept is not None and (dataset is train or (
            dataset.ids == train.ids and dataset.texts == train.texts and np.array_equal(dataset.labels, train.labels)))

    def _gather(self, what: str, dataset: TextDataset, fn):
        """fn's host outputs over all of `dataset` ([C, N, ...] per output, padding dropped), one pass."""
        out = None
        for begin, count, block in self._stream(what, dataset, fn, ()):
            if out is None:
                out = jax.tree.map(lambda x: np.empty(x.shape[:1] + (len(dataset),) + x.shape[2:], x.dtype), block)
            for whole, part in zip(jax.tree.leaves(out), jax.tree.leaves(block)):
                whole[:, begin:begin + count] = part[:, :count]
        return out

    def _train_blocks(self, what: str, dataset: TextDataset, fn):
        """fn's host outputs [C, b, ...] block by block (padding dropped): slices of the kept gradients
        when `dataset` is the curvature's training set and they were kept, else computed."""
        if not self._keeps(dataset):
            for _, count, out in self._stream(what, dataset, fn, ()):
                yield jax.tree.map(lambda x: x[:, :count], out)  # pylint: disable=cell-var-from-loop
            return
        size = self._block_rows(len(dataset))
        for begin in range(0, len(dataset), size):
            yield jax.tree.map(lambda x: x[:, begin:begin + size], self._kept)  # pylint: disable=cell-var-from-loop

    def influence(self, train: TextDataset, test: TextDataset) -> np.ndarray:
        """As TracIn's; the curvature's own training set is scored from its kept gradients."""
        if not self._keeps(train):
            return super().influence(train, test)
        return self._kept_scores(self._host_test_side(test, aggregate=False))

    def aggregate_influence(self, train: TextDataset, test: TextDataset) -> np.ndarray:
        """As TracIn's; the curvature's own training set is scored from its kept gradients."""
        if not self._keeps(train):
            return super().aggregate_influence(train, test)
        return self._kept_scores(self._host_test_side(test, aggregate=True))[:, 0]

    def _kept_scores(self, test_side: np.ndarray) -> np.ndarray:
        """[N, T] sum_c g_c(z_i) . test_side[c, t] over the kept training gradients (TracIn's product)."""
        gradients = self._kept[0] if isinstance(self._kept, tuple) else self._kept
        return sum(g @ side.T for g, side in zip(gradients, test_side)).astype(self.dtype)

    def self_influence(self, train: TextDataset) -> np.ndarray:
        """[N] sum_c lr_c g_c(z)^T precondition(g_c(z)) (the diagonal of `influence(train, train)`)."""
        out = []
        for features in self._train_blocks("self-influence", train, self._features_fn):
            block = features.astype(np.float64)
            out.append(np.einsum("c,cbd,cbd->b", self._rates, block, self.precondition(block)))
        return np.concatenate(out).astype(self.dtype)

    def influence_dot_and_cosine(self, train: TextDataset, test: TextDataset):
        raise ValueError(f"{type(self).__name__} has no cosine variant (it would drop the curvature); "
                         "use influence()")


class InfluenceFunction(_Preconditioned):
    """Damped Fisher influence of `train` examples, with TracIn's interface and result types.

        IF(z, v) = sum_c lr_c g_c(v)^T (G_c + lambda I)^{-1} g_c(z)

    with G_c one of two curvatures (`curvature`):
      empirical_fisher  mean_i g_c(z_i) g_c(z_i)^T under the *given* labels (Koh and Liang's usual
                        stand-in). Under label noise the flipped examples' large gradients dominate
                        it, so the inverse whitens away exactly the directions that expose them.
      fisher            mean_i sum_y p_c(y | z_i) g_c(z_i, y) g_c(z_i, y)^T, the true Fisher: labels
                        drawn from the model, so no given label enters the curvature. For a softmax
                        head it is the Gauss-Newton matrix J^T (diag(p) - p p^T) J. Its gradients
                        and p are the classifier's (`PromptModel.class_loss_fn`, p = softmax of minus
                        each label's class loss; for T5 the rank classifier's, not the sequence
                        loss's). Costs K gradient passes (K classes) instead of one.
    lambda is `damping` times the mean nonzero eigenvalue of the G_c (averaged over checkpoints;
    rank min(N, d) for the empirical Fisher, min(N (K - 1), d) for the Fisher); as it grows,
    lambda * IF tends to TracIn. Cost: the curvature's pass (the Fisher's: one per label) also gives
    the scored training side when the gradients are kept (`_Preconditioned`; the Fisher keeps its K
    label sets and the given labels': K + 2 copies), and with fewer rows than d the solve is a
    Cholesky in the span of the gradients (`_DampedInverse`). Else a second pass scores, against C
    d x d float64 matrices (use projection_dim beyond a few thousand dimensions).

    Args: as TracIn (variant is always `dot`), plus
      train: the training set whose gradients define the curvature G_c.
      damping: lambda / (mean nonzero eigenvalue of the G_c); larger is closer to TracIn.
      curvature: `empirical_fisher` or `fisher`.
      keep_gradients_bytes: the most host memory the kept training gradients may take.
    """

    def __init__(self, model: PromptModel, checkpoints: Sequence[PromptCheckpoint], train: TextDataset, *,
                 damping: float = 0.01, curvature: Curvature = "empirical_fisher", **tracin_kwargs):
        if curvature not in CURVATURES:
            raise ValueError(f"InfluenceFunction: curvature={curvature!r}, expected one of {CURVATURES}")
        self.curvature = curvature  # before any gradient: `_loss_fn` reads it
        super().__init__(model, checkpoints, train, damping=damping, dense=True, **tracin_kwargs)
        classes, true_fisher = len(model.class_names), curvature == "fisher"
        vectors = len(train) * (classes - 1 if true_fisher else 1)
        if self._fits(train, copies=classes + 2 if true_fisher else 1):
            rows, scales = self._fisher_rows(train) if true_fisher else self._empirical_rows(train)
            trace = np.mean([(s ** 2 * _squared_norms(r)).sum() for r, s in zip(rows, scales)])  # of G_c
            self.damping = float(damping * mean_nonzero_eigenvalue(trace, vectors, self.feature_dim))  # lambda
            self._inverses = [_DampedInverse.of_rows(r, s, self.damping) for r, s in zip(rows, scales)]
            return
        fisher = self._fisher(train) if true_fisher else self._empirical_fisher(train)
        fisher /= len(train)
        self.damping = float(damping * mean_nonzero_eigenvalue(np.trace(fisher, axis1=1, axis2=2).mean(),
                                                               vectors, self.feature_dim))  # lambda
        self._inverses = [_DampedInverse.dense(g, self.damping) for g in fisher]

    @property
    def _loss_fn(self):
        """The true Fisher is the class distribution's, so with curvature='fisher' every gradient (the
        curvature's, the scored training side's, the test side's) is the class loss's: MiniLM's
        training loss, and T5's rank classifier rather than its sequence loss."""
        return self.model.class_loss_fn if self.curvature == "fisher" else self.model.loss_fn

    def _empirical_rows(self, train: TextDataset) -> tuple[np.ndarray, np.ndarray]:
        """([C, N, d] gradients, [C, N] row scales 1 / sqrt(N)): G_c = sum_i (g_c(z_i) / sqrt(N))^2; kept."""
        self._kept = self._gather("gradients", train, self._features_fn)
        return self._kept, np.full(self._kept.shape[:2], 1.0 / np.sqrt(len(train)))

    def _fisher_rows(self, train: TextDataset) -> tuple[np.ndarray, np.ndarray]:
        """([C, K N, d] gradients under each label y, label-major, [C, K N] row scales sqrt(p_c(y | z_i) / N)):
        the true Fisher's rows, one pass per label; the given labels' gradients are kept."""
        n, classes = len(train), len(self.model.class_names)
        rows, log_p = None, []
        for y in range(classes):
            grads, losses = self._gather(f"Fisher (label {y})", train.with_labels(np.full(n, y)),
                                         self._features_and_losses_fn)
            if rows is None:
                rows = np.empty(grads.shape[:1] + (classes * n,) + grads.shape[2:], grads.dtype)
            rows[:, y * n:(y + 1) * n], log_p = grads, log_p + [-losses.astype(np.float64)]
        log_p = np.stack(log_p)  # [K, C, N]
        p = np.exp(log_p - scipy.special.logsumexp(log_p, axis=0, keepdims=True))
        self._kept = rows[:, train.labels * n + np.arange(n)]  # [C, N, d]: each example's given label
        return rows, np.sqrt(p / n).transpose(1, 0, 2).reshape(len(rows), classes * n)

    def _empirical_fisher(self, train: TextDataset) -> np.ndarray:
        """[C, d, d] sum_i g_c(z_i) g_c(z_i)^T under the given labels."""
        fisher = 0.0
        for _, count, features in self._stream("Fisher", train, self._features_fn, ()):
            block = features[:, :count].astype(np.float64)  # [C, b, d]; padding rows dropped
            fisher = fisher + np.matmul(block.transpose(0, 2, 1), block)  # BLAS, [C, d, d]
        return fisher

    def _fisher(self, train: TextDataset) -> np.ndarray:
        """[C, d, d] sum_i sum_y p_c(y | z_i) g_c(z_i, y) g_c(z_i, y)^T: one pass per label y, in lockstep."""
        relabelled = [train.with_labels(np.full(len(train), y)) for y in range(len(self.model.class_names))]
        streams = [self._stream(f"Fisher (label {y})", data, self._features_and_losses_fn, ())
                   for y, data in enumerate(relabelled)]
        fisher = 0.0
        for blocks in zip(*streams):
            count = blocks[0][1]
            grads = np.stack([f[:, :count] for _, _, (f, _) in blocks]).astype(np.float64)  # [K, C, b, d]
            log_p = -np.stack([losses[:, :count] for _, _, (_, losses) in blocks]).astype(np.float64)  # [K, C, b]
            p = np.exp(log_p - scipy.special.logsumexp(log_p, axis=0, keepdims=True))
            weighted = grads * np.sqrt(p)[..., None]
            fisher = fisher + np.einsum("kcbd,kcbe->cde", weighted, weighted, optimize=True)
        return fisher

    def precondition(self, features: np.ndarray) -> np.ndarray:
        """[C, T, d] -> (G_c + lambda I)^{-1} applied to each row, per checkpoint."""
        return _apply(self._inverses, features)


class DataInf(_Preconditioned):
    """DataInf (Kwon et al. 2024): the influence function with a block-diagonal G_c whose blocks are
    inverted in closed form, so no d x d solve and no projection are needed.

    Per checkpoint c and block l (d_l numbers), with g_il the block of g_c(z_i):

        lambda_l = damping * mean_i |g_il|^2 / min(N, d_l),   M_l = mean_i g_il g_il^T / (lambda_l + |g_il|^2)
        (G_l + lambda_l I)^{-1} ~ (I - M_l) / lambda_l

    (the mean of the exact inverses of lambda_l I + g_il g_il^T, in place of the inverse of their
    mean), and DataInf(z, v) = sum_c lr_c g_c(v)^T blockdiag_l((I - M_l) / lambda_l) g_c(z). DataInf's
    blocks are a network's layers; a prompt has one layer, so its blocks here are its tokens (rows of
    E numbers, `blocks="token"`), or the whole prompt (`blocks="prompt"`, one d x d block).

    Cost: one pass over the training set when its gradients are kept (`_Preconditioned`): block
    norms for lambda_l, then M_l and the scored training side from memory; else three TracIn passes.
    Memory C x P x E x E float64 (C d x d for one block). Blocks live in parameter space, so
    projection_dim is refused.

    Args: as TracIn (variant is always `dot`, no projection), plus
      train: the training set whose gradients define the M_l.
      damping: lambda_l / (mean nonzero eigenvalue of G_l); DataInf's default is 0.1.
      blocks: `token` (one block per prompt token) or `prompt` (one block).
    """

    def __init__(self, model: PromptModel, checkpoints: Sequence[PromptCheckpoint], train: TextDataset, *,
                 damping: float = 0.1, blocks: Blocks = "token", **tracin_kwargs):
        if blocks not in ("token", "prompt"):
            raise ValueError(f"DataInf: blocks={blocks!r}, expected 'token' or 'prompt'")
        if tracin_kwargs.get("projection_dim") is not None:
            raise ValueError(f"DataInf: projection_dim={tracin_kwargs['projection_dim']}, expected None "
                             "(its blocks are prompt tokens, in parameter space)")
        super().__init__(model, checkpoints, train, damping=damping, dense=False, **tracin_kwargs)
        tokens, width = model.prompt_shape
        self._block_shape = (tokens, width) if blocks == "token" else (1, tokens * width)
        if self._fits(train):
            self._kept = self._gather("DataInf gradients", train, self._features_fn)
        norms = sum((self._split(f) ** 2).sum(axis=(1, 3))
                    for f in self._train_blocks("DataInf norms", train, self._features_fn))
        self.lambdas = damping * mean_nonzero_eigenvalue(norms / len(train), len(train), self._block_shape[1])  # [C, blocks]
        moments = 0.0
        for features in self._train_blocks("DataInf", train, self._features_fn):
            g = self._split(features).transpose(0, 2, 1, 3)  # [C, blocks, b, d_l]
            weights = 1.0 / (self.lambdas[:, :, None] + (g ** 2).sum(-1))
            moments = moments + np.matmul((g * weights[..., None]).transpose(0, 1, 3, 2), g)  # BLAS
        self._moments = moments / len(train)  # M_l: [C, blocks, d_l, d_l]

    def _split(self, features: np.ndarray) -> np.ndarray:
        """[C, b, d] -> [C, b, blocks, d_l] in float64."""
        return features.astype(np.float64).reshape(features.shape[:2] + self._block_shape)

    def precondition(self, features: np.ndarray) -> np.ndarray:
        """[C, T, d] -> (v - M_l v) / lambda_l in every block l of each row, per checkpoint."""
        v = self._split(features).transpose(0, 2, 1, 3)  # [C, blocks, T, d_l]
        out = (v - np.matmul(v, self._moments)) / self.lambdas[:, :, None, None]  # M_l is symmetric
        return out.transpose(0, 2, 1, 3).reshape(features.shape)


class TRAK(_Preconditioned):
    """TRAK (Park et al. 2023) with the saved checkpoints in place of independently trained models.

    TRAK regresses on the gradient of the model output f = log(p / (1 - p)), here the margin of the
    given label with p its class probability (`PromptModel.probabilities_fn`: MiniLM's softmax over
    its head's scores; for T5 the rank classifier's softmax over the verbalizers' log-likelihoods, not
    the verbalizer's sequence likelihood over the vocabulary). TRAK's g is the gradient of the class
    loss -log p (`PromptModel.class_loss_fn`: MiniLM's training loss; for T5 not its sequence loss),
    so p = exp(-loss) exactly. d loss / d f = -(1 - p), so the margin gradient is
    phi = -g / (1 - p), and per checkpoint c, with Phi_c the rows phi_c(z_i) of the training set and
    Q = diag(1 - p):

        score_c(z, v) = phi_c(v)^T (Phi_c^T Phi_c + lambda_c I)^{-1} phi_c(z) (1 - p_c(z))
                      = g_c(v)^T (Phi_c^T Phi_c + lambda_c I)^{-1} g_c(z) / (1 - p_c(v)),

    positive when training on z raises v's margin, i.e. lowers its loss (TracIn's sign). TRAK(z, v)
    is the mean over checkpoints, without learning rates (TRAK averages models; it averages the
    kernel products and Q separately, here each checkpoint's score is complete first). 1 - p is
    clipped at 1e-6. projection_dim is TRAK's random projection (TracIn's seeded Gaussian map).

    Cost: one pass over the training set when its gradients are kept (`_Preconditioned`; the solve
    in their span, an N x N Cholesky, when N < d); else that pass (memory: one block plus C d x d
    float64 matrices), then TracIn's scoring. Each pass also reads the losses, from the same forward
    pass as the gradients. On T5 the class loss runs the decoder once per class (the training loss
    once per example).

    Args: as TracIn (variant is always `dot`), plus
      train: the training set whose margin gradients make Phi_c.
      damping: lambda_c / (mean nonzero eigenvalue of Phi_c^T Phi_c). TRAK solves without a ridge; this small
        default only keeps the solve defined, and float32 gradient noise small, when the training set
        has fewer examples than d (unprojected prompts).
    """

    def __init__(self, model: PromptModel, checkpoints: Sequence[PromptCheckpoint], train: TextDataset, *,
                 damping: float = 1e-3, **tracin_kwargs):
        super().__init__(model, checkpoints, train, damping=damping, dense=True, **tracin_kwargs)
        self._rates = np.full(len(checkpoints), 1.0 / len(checkpoints), self.dtype)  # a mean, not lr-weighted
        if self._fits(train):
            self._kept = grads, scale = self._gather("TRAK kernel", train, self._margin_fn)  # Phi_c = g scale
            scale = scale.astype(np.float64)
            traces = np.array([(s ** 2 * _squared_norms(g)).sum() for g, s in zip(grads, scale)])
            self.lambdas = damping * mean_nonzero_eigenvalue(traces, len(train), self.feature_dim)  # [C]
            self._inverses = [_DampedInverse.of_rows(g, s, lam) for g, s, lam in zip(grads, scale, self.lambdas)]
            return
        kernel = 0.0
        for _, count, (grads, scale) in self._stream("TRAK kernel", train, self._margin_fn, ()):
            phi = grads[:, :count].astype(np.float64) * scale[:, :count, None]  # -phi; the sign cancels below
            kernel = kernel + np.matmul(phi.transpose(0, 2, 1), phi)  # Phi^T Phi, [C, d, d]
        self.lambdas = damping * mean_nonzero_eigenvalue(np.trace(kernel, axis1=1, axis2=2), len(train),
                                                         self.feature_dim)  # [C]
        self._inverses = [_DampedInverse.dense(k, lam) for k, lam in zip(kernel, self.lambdas)]

    @property
    def _loss_fn(self):
        """-log p(label) of the class probabilities: every TRAK gradient (kernel, test side, scored
        training side) is this loss's, so TRAK's margin is the classifier's on T5 too."""
        return self.model.class_loss_fn

    def class_probabilities(self, dataset: TextDataset) -> np.ndarray:
        """[C, N] p_c(z): each example's given-label class probability at each checkpoint, as TRAK's
        margin and 1 - p weights read it (from the same pass as its gradients)."""
        scales = [s[:, :n] for _, n, (_, s) in self._stream("TRAK probabilities", dataset, self._margin_fn, ())]
        return 1.0 - 1.0 / np.concatenate(scales, axis=1)

    @functools.cached_property
    def _margin_fn(self):
        """jit: block -> ([C, B, d] gradient features, [C, B] 1 / (1 - p)), replicated; p = exp(-class loss)."""
        def margins(params, prompts, projection, batch):
            features, losses = self._features_and_losses(params, prompts, projection, batch)
            return features, 1.0 / jnp.maximum(-jnp.expm1(-losses), MIN_ONE_MINUS_P)  # 1 - exp(-loss), accurately

        return jax.jit(margins, out_shardings=self._replicated)

    def _test_features(self, test: TextDataset) -> np.ndarray:
        """[C, T, d] g_c(v) / (1 - p_c(v)) (= -phi_c(v))."""
        return np.concatenate([g[:, :n] * s[:, :n, None]
                               for _, n, (g, s) in self._stream("TRAK test side", test, self._margin_fn, ())], axis=1)

    def precondition(self, features: np.ndarray) -> np.ndarray:
        """[C, T, d] -> (Phi_c^T Phi_c + lambda_c I)^{-1} applied to each row, per checkpoint."""
        return _apply(self._inverses, features)

    def self_influence(self, train: TextDataset) -> np.ndarray:
        """[N] mean_c g_c(z)^T (Phi_c^T Phi_c + lambda_c I)^{-1} g_c(z) / (1 - p_c(z)) (the diagonal of
        `influence(train, train)`)."""
        out = []
        for grads, scale in self._train_blocks("self-influence", train, self._margin_fn):
            g = grads.astype(np.float64)
            out.append(np.einsum("c,cbd,cbd->b", self._rates, g, self.precondition(g * scale[:, :, None])))
        return np.concatenate(out).astype(self.dtype)


class _DampedInverse:
    """v -> (M + lambda I)^{-1} v in float64, for M = R^T diag(s)^2 R given by its rows R [r, d] and
    row scales s [r] (`of_rows`), or as a d x d matrix (`dense`, summed block by block elsewhere).

    With r < d (400 training gradients of 6,144 prompt numbers) it solves in the span of the scaled rows
    B = diag(s) R (Woodbury): (B^T B + lambda I)^{-1} v = (v - B^T (B B^T + lambda I)^{-1} B v) / lambda,
    an r x r Cholesky instead of a d x d one; the same matrix, so the same result up to rounding.
    """

    def __init__(self, damping: float, factor, rows: np.ndarray | None = None, scales: np.ndarray | None = None):
        self.damping, self.factor, self._rows, self._scales = damping, factor, rows, scales

    @classmethod
    def dense(cls, matrix: np.ndarray, damping: float) -> "_DampedInverse":
        return cls(damping, scipy.linalg.cho_factor(matrix + damping * np.eye(len(matrix))))

    @classmethod
    def of_rows(cls, rows: np.ndarray, scales: np.ndarray, damping: float) -> "_DampedInverse":
        scaled = rows.astype(np.float64) * scales[:, None]
        if len(rows) >= rows.shape[1]:
            return cls.dense(scaled.T @ scaled, damping)
        return cls(damping, scipy.linalg.cho_factor(scaled @ scaled.T + damping * np.eye(len(rows))), rows, scales)

    def __call__(self, v: np.ndarray) -> np.ndarray:
        """[T, d] -> [T, d]."""
        v = v.astype(np.float64)
        if self._rows is None:
            return scipy.linalg.cho_solve(self.factor, v.T).T
        scaled = self._rows.astype(np.float64) * self._scales[:, None]  # [r, d], per call: kept rows stay as given
        return (v - scipy.linalg.cho_solve(self.factor, scaled @ v.T).T @ scaled) / self.damping


def _apply(inverses: Sequence[_DampedInverse], features: np.ndarray) -> np.ndarray:
    """[C, T, d] -> each checkpoint's damped inverse applied to each row, in float64."""
    return np.stack([inverse(f) for inverse, f in zip(inverses, features)])


def _squared_norms(rows: np.ndarray) -> np.ndarray:
    """[r, d] -> [r] squared row norms in float64."""
    rows = rows.astype(np.float64)
    return np.einsum("rd,rd->r", rows, rows)

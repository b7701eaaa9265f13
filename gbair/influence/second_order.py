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


def mean_nonzero_eigenvalue(trace: np.ndarray | float, vectors: int, dim: int) -> np.ndarray | float:
    """trace / min(vectors, dim): the mean of the nonzero eigenvalues of a sum of `vectors` outer
    products in `dim` dimensions (in general position they span exactly min(vectors, dim) directions)."""
    return trace / min(vectors, dim)


class _Preconditioned(TracIn):
    """What the second-order methods share: their argument checks, self-influence through
    `precondition`, no cosine variant. `dense`: the method holds d x d matrices (refused when too big)."""

    def __init__(self, model: PromptModel, checkpoints: Sequence[PromptCheckpoint], train: TextDataset, *,
                 damping: float, dense: bool, **tracin_kwargs):
        name = type(self).__name__
        if damping <= 0:
            raise ValueError(f"{name}: damping={damping}, expected > 0")
        if len(train) == 0:
            raise ValueError(f"{name}: the training set is empty")
        super().__init__(model, checkpoints, variant="dot", **tracin_kwargs)
        if dense:
            self._check_dense(tracin_kwargs.get("projection_dim"))

    @functools.cached_property
    def _features_and_losses_fn(self):
        """jit: block -> ([C, B, d] gradient features, [C, B] losses), replicated."""
        return jax.jit(self._features_and_losses, out_shardings=self._replicated)

    def _check_dense(self, projection_dim: int | None) -> None:
        """Refuses a d x d curvature too big to hold (T5 1.1 base's 100 x 768 prompt: 44 GiB per checkpoint)."""
        dim = projection_dim or int(np.prod(self.model.prompt_shape))
        if dim > MAX_DENSE_DIM:
            raise ValueError(f"{type(self).__name__}: {dim} prompt numbers make a {dim} x {dim} float64 matrix "
                             f"per checkpoint ({dim * dim * 8 / 2**30:.0f} GiB); set projection_dim "
                             f"(RecoveryConfig.projection_dim), e.g. 4096")

    def self_influence(self, train: TextDataset) -> np.ndarray:
        """[N] sum_c lr_c g_c(z)^T precondition(g_c(z)) (the diagonal of `influence(train, train)`)."""
        out = []
        for _, count, features in self._stream("self-influence", train, self._features_fn, ()):
            block = features[:, :count].astype(np.float64)
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
    lambda * IF tends to TracIn. Memory: one block plus C d x d float64 matrices (use projection_dim
    beyond a few thousand dimensions).

    Args: as TracIn (variant is always `dot`), plus
      train: the training set whose gradients define the curvature G_c.
      damping: lambda / (mean nonzero eigenvalue of the G_c); larger is closer to TracIn.
      curvature: `empirical_fisher` or `fisher`.
    """

    def __init__(self, model: PromptModel, checkpoints: Sequence[PromptCheckpoint], train: TextDataset, *,
                 damping: float = 0.01, curvature: Curvature = "empirical_fisher", **tracin_kwargs):
        if curvature not in CURVATURES:
            raise ValueError(f"InfluenceFunction: curvature={curvature!r}, expected one of {CURVATURES}")
        self.curvature = curvature  # before any gradient: `_loss_fn` reads it
        super().__init__(model, checkpoints, train, damping=damping, dense=True, **tracin_kwargs)
        fisher = self._fisher(train) if curvature == "fisher" else self._empirical_fisher(train)
        fisher /= len(train)
        dim, classes = fisher.shape[-1], len(model.class_names)
        vectors = len(train) * (classes - 1 if curvature == "fisher" else 1)
        self.damping = float(damping * mean_nonzero_eigenvalue(np.trace(fisher, axis1=1, axis2=2).mean(),
                                                               vectors, dim))  # lambda
        self._factors = [scipy.linalg.cho_factor(g + self.damping * np.eye(dim)) for g in fisher]

    @property
    def _loss_fn(self):
        """The true Fisher is the class distribution's, so with curvature='fisher' every gradient (the
        curvature's, the scored training side's, the test side's) is the class loss's: MiniLM's
        training loss, and T5's rank classifier rather than its sequence loss."""
        return self.model.class_loss_fn if self.curvature == "fisher" else self.model.loss_fn

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
        return _cho_solve(self._factors, features)


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

    Cost: two passes over the training set, each a TracIn pass (block norms for lambda_l, then M_l);
    memory C x P x E x E float64 (C d x d for one block). Blocks live in parameter space, so
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
        norms = sum((self._split(f[:, :n]) ** 2).sum(axis=(1, 3))
                    for _, n, f in self._stream("DataInf norms", train, self._features_fn, ()))
        self.lambdas = damping * mean_nonzero_eigenvalue(norms / len(train), len(train), self._block_shape[1])  # [C, blocks]
        moments = 0.0
        for _, count, features in self._stream("DataInf", train, self._features_fn, ()):
            g = self._split(features[:, :count]).transpose(0, 2, 1, 3)  # [C, blocks, b, d_l]
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

    Cost: one pass over the training set (memory: one block plus C d x d float64 matrices), then
    TracIn's scoring; each pass also reads the losses, from the same forward pass as the gradients. On
    T5 the class loss runs the decoder once per class (the training loss once per example).

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
        kernel = 0.0
        for _, count, (grads, scale) in self._stream("TRAK kernel", train, self._margin_fn, ()):
            phi = grads[:, :count].astype(np.float64) * scale[:, :count, None]  # -phi; the sign cancels below
            kernel = kernel + np.matmul(phi.transpose(0, 2, 1), phi)  # Phi^T Phi, [C, d, d]
        dim = kernel.shape[-1]
        self.lambdas = damping * mean_nonzero_eigenvalue(np.trace(kernel, axis1=1, axis2=2), len(train), dim)  # [C]
        self._factors = [scipy.linalg.cho_factor(k + lam * np.eye(dim)) for k, lam in zip(kernel, self.lambdas)]

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
        return _cho_solve(self._factors, features)

    def self_influence(self, train: TextDataset) -> np.ndarray:
        """[N] mean_c g_c(z)^T (Phi_c^T Phi_c + lambda_c I)^{-1} g_c(z) / (1 - p_c(z)) (the diagonal of
        `influence(train, train)`)."""
        out = []
        for _, count, (grads, scale) in self._stream("self-influence", train, self._margin_fn, ()):
            g = grads[:, :count].astype(np.float64)
            out.append(np.einsum("c,cbd,cbd->b", self._rates, g, self.precondition(g * scale[:, :count, None])))
        return np.concatenate(out).astype(self.dtype)


def _cho_solve(factors, features: np.ndarray) -> np.ndarray:
    """[C, T, d] -> each checkpoint's Cholesky-factored matrix solved against each row, in float64."""
    return np.stack([scipy.linalg.cho_solve(factor, f.astype(np.float64).T).T for factor, f in zip(factors, features)])

"""Second-order influence over the prompt: damped Gauss-Newton (empirical Fisher) influence functions.

Prompt tuning trains only d = prompt_length x d_model numbers (6,144 for the embedded MiniLM), so the
d x d curvature of the prompt can be formed and solved exactly:

    IF(z, v) = sum_c lr_c g_c(v)^T (G_c + lambda I)^{-1} g_c(z),   G_c = mean_i g_c(z_i) g_c(z_i)^T

over the training set z_i, per checkpoint c (g_c = d loss / d prompt, projected when projection_dim
is set). The sign is TracIn's (positive: training on z lowers v's loss; Koh and Liang's
I_up,loss is its negative), and as lambda grows, lambda * IF tends to TracIn. lambda is `damping`
times the mean eigenvalue of the G_c (trace / d, averaged over checkpoints), so one setting fits any
gradient scale.

Cost: one pass over the training set for G (memory: one block plus C d x d float64 matrices; use
projection_dim beyond a few thousand dimensions), then TracIn's own streamed, sharded scoring with
the preconditioned test side, so influence, aggregate influence and top-k share its code.
"""

from typing import Sequence

import numpy as np
import scipy.linalg

from gbair.data.dataset import TextDataset
from gbair.influence.tracin import TracIn
from gbair.models.prompts import PromptCheckpoint, PromptModel


class InfluenceFunction(TracIn):
    """Damped empirical-Fisher influence of `train` examples, with TracIn's interface and result types.

    Args: as TracIn (variant is always `dot`), plus
      train: the training set whose gradients define the curvature G_c.
      damping: lambda / (mean eigenvalue of the G_c); larger is closer to TracIn.
    """

    def __init__(self, model: PromptModel, checkpoints: Sequence[PromptCheckpoint], train: TextDataset, *,
                 damping: float = 0.01, **tracin_kwargs):
        if damping <= 0:
            raise ValueError(f"InfluenceFunction: damping={damping}, expected > 0")
        if len(train) == 0:
            raise ValueError("InfluenceFunction: the training set is empty")
        super().__init__(model, checkpoints, variant="dot", **tracin_kwargs)
        fisher = None
        for _, count, features in self._stream("Fisher", train, self._features_fn, ()):
            block = features[:, :count].astype(np.float64)  # [C, b, d]; padding rows dropped
            outer = np.matmul(block.transpose(0, 2, 1), block)  # BLAS, [C, d, d]
            fisher = outer if fisher is None else fisher + outer
        fisher /= len(train)
        dim = fisher.shape[-1]
        self.damping = float(damping * np.trace(fisher, axis1=1, axis2=2).mean() / dim)  # lambda
        self._factors = [scipy.linalg.cho_factor(g + self.damping * np.eye(dim)) for g in fisher]

    def precondition(self, features: np.ndarray) -> np.ndarray:
        """[C, T, d] -> (G_c + lambda I)^{-1} applied to each row, per checkpoint."""
        return np.stack([scipy.linalg.cho_solve(factor, f.astype(np.float64).T).T
                         for factor, f in zip(self._factors, features)])

    def self_influence(self, train: TextDataset) -> np.ndarray:
        """[N] sum_c lr_c g_c(z)^T (G_c + lambda I)^{-1} g_c(z) (the diagonal of `influence(train, train)`)."""
        out = []
        for _, count, features in self._stream("self-influence", train, self._features_fn, ()):
            block = features[:, :count].astype(np.float64)
            out.append(np.einsum("c,cbd,cbd->b", self._rates, block, self.precondition(block)))
        return np.concatenate(out).astype(self.dtype)

    def influence_dot_and_cosine(self, train: TextDataset, test: TextDataset):
        raise ValueError("InfluenceFunction has no cosine variant (it would drop the curvature); use influence()")

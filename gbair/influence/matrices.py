"""The influence of one scored run, each family computed once: where every strategy reads influence.

A scored run is a trained prompt's checkpoints, the training set it trained on and V, the validation
examples its reported prompt gets wrong (true labels). Its matrices are [N_train, |V|], by name:
`dot` and `cosine` (family `tracin`: one pass over the training set gives both), or a SECOND_ORDER
name (that scorer's curvature from the training set, whose gradients it keeps for the influence pass
when they fit: gbair.influence.second_order). `self_influence()` is TracIn's [N_train] diagonal.
Each is computed on first read and kept, so the strategies that share a family share one pass: the
sweep hands one InfluenceMatrices to every strategy that scores the same run (at iteration 1 they
all score the corrupted run), the cleaning job one per iteration.
"""

import collections
import functools
from typing import Mapping, Sequence

import numpy as np

from gbair.data.dataset import TextDataset
from gbair.influence.gradients import Method
from gbair.influence.second_order import TRAK, DataInf, InfluenceFunction
from gbair.influence.tracin import TracIn
from gbair.models.prompts import PromptCheckpoint, PromptModel

# The second-order scorers, each a family of one matrix of its own name.
SECOND_ORDER: dict[str, type[TracIn]] = {"influence_function": InfluenceFunction, "datainf": DataInf, "trak": TRAK}
FAMILY_OF: dict[str, str] = {"dot": "tracin", "cosine": "tracin", **{name: name for name in SECOND_ORDER}}


class InfluenceMatrices:
    """The influence matrices of one scored run, computed on first read.

    Args:
      model, checkpoints: the scored run's prompt model and its trajectory (every saved checkpoint).
      train: [N_train] the training set the run trained on, labels as given.
      misclassified: [|V|] the validation examples the run's reported prompt gets wrong.
      batch_size: training examples per device per block.
      projection_dim: influence_function and trak solve in a projection of this size (DataInf's
        blocks need none).
      damping: SECOND_ORDER name -> damping (else the scorer's default).
      curvature: influence_function's curvature (else the empirical Fisher).
      method: per-example gradients (gbair.influence.gradients): `vmap` for [P, E]-only models.

    `influence["dot"]` etc. give [N_train, |V|] float arrays; `computed[family]` counts the passes made.
    """

    def __init__(self, model: PromptModel, checkpoints: Sequence[PromptCheckpoint], train: TextDataset,
                 misclassified: TextDataset, *, batch_size: int = 32, projection_dim: int | None = None,
                 damping: Mapping[str, float] | None = None, curvature: str | None = None, method: Method = "tiled"):
        self.model, self.checkpoints, self.train, self.misclassified = model, checkpoints, train, misclassified
        self.batch_size, self.projection_dim, self.method = batch_size, projection_dim, method
        self.damping, self.curvature = dict(damping or {}), curvature
        self.computed: collections.Counter[str] = collections.Counter()  # family (or self_influence) -> passes
        self._matrices: dict[str, np.ndarray] = {}
        self._self_influence: np.ndarray | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        """[N_train, |V|] matrix `name` (a key of FAMILY_OF); its family is computed on first read."""
        if name not in FAMILY_OF:
            raise KeyError(f"influence matrix {name!r}: expected one of {sorted(FAMILY_OF)}")
        if name not in self._matrices:
            family = FAMILY_OF[name]
            if family == "tracin":
                self._matrices.update(zip(("dot", "cosine"), self._tracin.influence_dot_and_cosine(
                    self.train, self.misclassified)))
            else:
                self._matrices[family] = self._second_order(family).influence(self.train, self.misclassified)
            self.computed[family] += 1
        return self._matrices[name]

    def self_influence(self) -> np.ndarray:
        """[N_train] TracIn self-influence sum_c lr_c ||g_c(z)||^2 (needs no V), computed on first read."""
        if self._self_influence is None:
            self._self_influence = self._tracin.self_influence(self.train)
            self.computed["self_influence"] += 1
        return self._self_influence

    @functools.cached_property
    def _tracin(self) -> TracIn:
        return TracIn(self.model, self.checkpoints, batch_size=self.batch_size, method=self.method)

    def _second_order(self, family: str) -> TracIn:
        """The SECOND_ORDER scorer `family` with this run's options (projection_dim: not DataInf's;
        curvature: influence_function's alone)."""
        options = {"method": self.method} if family == "datainf" else {"projection_dim": self.projection_dim,
                                                                         "method": self.method}
        if family in self.damping:
            options["damping"] = self.damping[family]
        if self.curvature is not None and family == "influence_function":
            options["curvature"] = self.curvature
        return SECOND_ORDER[family](self.model, self.checkpoints, self.train, batch_size=self.batch_size, **options)

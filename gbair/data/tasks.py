"""Gin-configurable dataset providers: each returns {"train", "validation", "test"} TextDatasets."""

from typing import Mapping, Sequence

import gin

from gbair import assets
from gbair.data import spam_assassin
from gbair.data.dataset import TextDataset, stratified_split


@gin.configurable
def spam_assassin_splits(
    sizes: Mapping[str, int] = gin.REQUIRED,
    *,
    seed: int = 0,
    data_dir: str | None = None,
    groups: Sequence[str] = spam_assassin.GROUPS,
    max_chars: int = 2000,
) -> dict[str, TextDataset]:
    """Stratified splits of SpamAssassin with exact `sizes` (e.g. {"train": 1200, ...}) from `seed`.

    data_dir defaults to the corpus installed by `python -m gbair.assets`.
    """
    dataset, _ = spam_assassin.load_spam_assassin(
        data_dir or assets.verified_spam_assassin_dir(), groups=groups, max_chars=max_chars
    )
    return stratified_split(dataset, dict(sizes), seed=seed)

"""The embedded corpus's dataset provider: it returns {"train", "validation", "test"} TextDatasets.
gbair.config registers it with gin; this module imports no gin."""

import pathlib
from typing import Mapping, Sequence

from gbair import assets
from gbair.data import spam_assassin
from gbair.data.dataset import TextDataset, stratified_split


def spam_assassin_splits(
    sizes: Mapping[str, int],
    *,
    seed: int = 0,
    data_dir: str | None = None,
    groups: Sequence[str] = spam_assassin.GROUPS,
    max_chars: int = 2000,
    balanced: bool = False,
) -> dict[str, TextDataset]:
    """Stratified splits of SpamAssassin with exact `sizes` (e.g. {"train": 1200, ...}) from `seed`;
    `balanced`: half ham, half spam in every split (the corpus is about 69% ham).

    data_dir defaults to the corpus installed by `python -m gbair.assets` (digest-checked); its
    splits are drawn over the pinned list of the ids it loads as (spam_assassin_ids.txt), so a
    record skipped on load leaves a gap instead of reshuffling every split.

    Gin (configs/datasets/spam_assassin.gin): `SPLITS = @spam_assassin_splits()`,
    `spam_assassin_splits.sizes = {"train": 1200, "validation": 400, "test": 400}`,
    `spam_assassin_splits.seed = 0`, `spam_assassin_splits.balanced = True`.
    """
    dataset, _ = spam_assassin.load_spam_assassin(
        data_dir or assets.verified_spam_assassin_dir(), groups=groups, max_chars=max_chars
    )
    universe = None
    if data_dir is None:
        pinned = [example_id for example_id in PINNED_IDS.read_text().split() if example_id.split("/")[0] in groups]
        universe = [(example_id, spam_assassin.label_for_group(example_id.split("/")[0])) for example_id in pinned]
    return stratified_split(dataset, dict(sizes), seed=seed, universe=universe, balanced=balanced)


PINNED_IDS = pathlib.Path(__file__).with_name("spam_assassin_ids.txt")

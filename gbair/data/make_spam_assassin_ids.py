"""Writes spam_assassin_ids.txt: the ids the pinned SpamAssassin corpus loads as, in load order.

The splits of the embedded default are drawn over this list (gbair.data.tasks), so a record that
some future parser skips leaves a gap instead of reshuffling every split. Rerun only when the
pinned corpus changes:

    python -m gbair.data.make_spam_assassin_ids
"""

import pathlib

from gbair import assets
from gbair.data import spam_assassin

OUT = pathlib.Path(__file__).with_name("spam_assassin_ids.txt")

if __name__ == "__main__":
    dataset, report = spam_assassin.load_spam_assassin(assets.verified_spam_assassin_dir())
    OUT.write_text("".join(f"{example_id}\n" for example_id in dataset.ids))
    print(f"{OUT}: {len(dataset)} ids ({report.summary()})")

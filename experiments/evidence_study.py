"""Runs the pre-registered evidence study (experiments/PROTOCOL.md) in resumable chunks and merges
each chunk's rows into one committed results.csv.

    python experiments/evidence_study.py --arm main --seeds 0-4 [--source PINNED_CHECKOUT] [--runs runs/evidence]
        [--out experiments/evidence] [--redo]

Each seed of an arm is its own workdir, RUNS/<arm>/seed=<s>, run with `python -m gbair.main` on
configs/experiments/evidence_<arm>.gin (evidence.gin for the main arm) and
`spam_assassin_splits.seed = s`, so the split, the corruption, the initial prompt and the batch
order all vary with the seed and no claim rests on one test set. Rerunning resumes (gbair's
workdirs skip finished work). After each seed its rows, stamped with the arm, are merged into
OUT/results.csv: a row already there must agree in every column but wall_time_s, else the merge
stops. OUT/runs.csv records each seed's workdir identity: the git commit gbair ran from and
whether that checkout had local changes. A seed already in OUT/runs.csv is skipped (its rows are
committed; `--redo` reruns it and checks its rows against them). `--source` is the checkout gbair
runs from (default: this one): the pinned commit (PROTOCOL.md, `git worktree add DIR COMMIT`), so
code landing meanwhile cannot change the study.
"""

import argparse
import csv
import io
import json
import pathlib
import subprocess
import sys
import time

from gbair import files

REPO = pathlib.Path(__file__).resolve().parent.parent
ARMS = {"main": "evidence.gin", "balanced": "evidence_balanced.gin", "budget4x": "evidence_budget4x.gin",
        "iterations": "evidence_iterations.gin"}
KEY = ("arm", "dataset", "strategy", "corruption_rate", "seed", "iteration")
IGNORED = ("wall_time_s",)  # differs between machines and reruns; every other column must agree


def seed_range(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '3' -> [3]; '0,2,5' -> [0, 2, 5]."""
    seeds = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds += list(range(int(low), int(high or low) + 1))
    return seeds


def read_csv(path: pathlib.Path) -> tuple[list[str], list[dict]]:
    if not path.exists():
        return [], []
    with io.StringIO(path.read_text(), newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def write_csv(path: pathlib.Path, columns: list[str], rows: list[dict]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    files.write_text(path, out.getvalue())  # atomic: a kill mid-merge leaves the committed file whole


def merge(out: pathlib.Path, arm: str, workdir: pathlib.Path) -> int:
    """Merges workdir/results.csv into out/results.csv under `arm`; returns the number of new rows."""
    columns, new_rows = read_csv(workdir / "results.csv")
    if not new_rows:
        raise SystemExit(f"{workdir / 'results.csv'} has no rows")
    columns = ["arm"] + columns
    old_columns, rows = read_csv(out / "results.csv")
    if old_columns and old_columns != columns:
        raise SystemExit(f"{out / 'results.csv'} has columns {old_columns}, {workdir} has {columns}")
    known = {tuple(r[k] for k in KEY): r for r in rows}
    added = 0
    for row in new_rows:
        row = {"arm": arm, **row}
        key = tuple(row[k] for k in KEY)
        if key in known:
            differ = [c for c in columns if c not in IGNORED and known[key][c] != row[c]]
            if differ:
                raise SystemExit(f"merge: row {dict(zip(KEY, key))} of {workdir} differs from the committed one in "
                                 f"{differ}; the study's code or settings changed")
            continue
        rows.append(row)
        added += 1
    order = {name: i for i, name in enumerate(ARMS)}
    rows.sort(key=lambda r: (order.get(r["arm"], 99), r["dataset"], float(r["corruption_rate"]), int(r["seed"]),
                             r["strategy"], int(r["iteration"])))
    write_csv(out / "results.csv", columns, rows)
    return added


def record_run(out: pathlib.Path, arm: str, seed: int, workdir: pathlib.Path, seconds: float) -> None:
    source = json.loads((workdir / "gin_config.json").read_text()).get("source", {})
    columns = ["arm", "seed", "git_commit", "local_changes", "wall_s_this_call"]
    _, rows = read_csv(out / "runs.csv")
    rows = [r for r in rows if (r["arm"], r["seed"]) != (arm, str(seed))]
    commits = {r["git_commit"] for r in rows if r["git_commit"]} - {source.get("git_commit")}
    if commits:
        print(f"warning: {arm} seed {seed} ran from {source.get('git_commit')}, earlier chunks from {sorted(commits)}",
              file=sys.stderr)
    rows.append({"arm": arm, "seed": seed, "git_commit": source.get("git_commit"),
                 "local_changes": source.get("local_changes"), "wall_s_this_call": round(seconds)})
    rows.sort(key=lambda r: (list(ARMS).index(r["arm"]), int(r["seed"])))
    write_csv(out / "runs.csv", columns, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", choices=sorted(ARMS), required=True)
    parser.add_argument("--seeds", type=seed_range, required=True, help="e.g. 0-4 or 0,3")
    parser.add_argument("--runs", type=pathlib.Path, default=REPO / "runs" / "evidence")
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "experiments" / "evidence")
    parser.add_argument("--source", type=pathlib.Path, default=REPO, help="the checkout gbair runs from")
    parser.add_argument("--redo", action="store_true", help="rerun seeds already in OUT/runs.csv")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    _, done = read_csv(args.out / "runs.csv")
    finished = {(r["arm"], int(r["seed"])) for r in done}
    for seed in args.seeds:
        if (args.arm, seed) in finished and not args.redo:
            print(f"{args.arm} seed {seed}: already in {args.out / 'runs.csv'}, skipped", flush=True)
            continue
        workdir = args.runs / args.arm / f"seed={seed}"
        command = [sys.executable, "-m", "gbair.main", f"--gin_file=configs/experiments/{ARMS[args.arm]}",
                   f"--workdir={workdir}", f"--gin.Experiment.seeds=[{seed}]", f"--gin.spam_assassin_splits.seed={seed}"]
        print(f"[{time.strftime('%H:%M:%S')}] {args.arm} seed {seed}: {' '.join(command)}", flush=True)
        start = time.time()
        subprocess.run(command, cwd=args.source, check=True)
        added = merge(args.out, args.arm, workdir)
        record_run(args.out, args.arm, seed, workdir, time.time() - start)
        print(f"[{time.strftime('%H:%M:%S')}] {args.arm} seed {seed}: {added} new rows in {args.out / 'results.csv'}",
              flush=True)


if __name__ == "__main__":
    main()

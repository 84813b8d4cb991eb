"""Extrapolates the short lite cells of bench/lite-timing.sh to whole lite cells.

A short cell's wall time is its fixed part (process start, data built in full, two evaluations
of 64 examples) plus STEPS training steps. A whole cell is that fixed part, 5,000 steps at the
short cell's median step time, and the evaluations of the real held-out splits: validation
every 500 steps (10 times) and the test split once, each example costing about a third of a
training step's share (a forward pass without the backward pass).
"""

import csv
import sys

STEPS_LITE = 5_000
VALIDATIONS = 10
BATCH = 32
# The lite preset's held-out splits (LRA's, the Pathfinder ones cut to 2k by the preset).
HELD_OUT = {
    "listops": (2_000, 2_000),
    "text": (2_500, 25_000),
    "image": (5_000, 10_000),
    "pathfinder": (2_000, 2_000),
}
LENGTHS = {"listops": "2,000", "text": "1,000", "image": "1,024", "pathfinder": "1,024"}


def hours(seconds):
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def main(folder, steps):
    rows = list(csv.DictReader(open(f"{folder}/report.csv")))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    mechanisms = list(dict.fromkeys(r["mechanism"] for r in rows))
    cell = {}
    failed = []
    for r in rows:
        if r["status"] != "finished" or not r["steps_per_second"]:
            failed.append(f"{r['task']} × {r['mechanism']} ({r['error'] or r['status']})")
            continue
        step = 1.0 / float(r["steps_per_second"])
        fixed = max(float(r["wall_seconds"]) - steps * step, 0.0)
        val, test = HELD_OUT[r["task"]]
        evals = (VALIDATIONS * val + test) / BATCH * step / 3
        cell[(r["task"], r["mechanism"])] = (step, fixed + STEPS_LITE * step + evals)
    print("# How long the lite arena takes on this machine")
    print()
    print(
        f"Each lite cell of ListOps, Text, Image and Pathfinder trained for {steps} steps "
        "(`bash bench/lite-timing.sh`), then extrapolated to the whole cell: its fixed part "
        "(start-up, the data built in full, two small evaluations), 5,000 steps at the median "
        "step time, ten validations and one test of the real held-out splits at a third of a "
        "step's time per example. An estimate, not a run: the step time of 12 steps is a "
        "median of few, and evaluation is assumed forward-only."
    )
    print()
    print("Each cell: seconds per training step (batch 32) / estimated wall time of the cell.")
    print()
    print("| mechanism | " + " | ".join(f"{t} (N = {LENGTHS.get(t, '?')})" for t in tasks) + " |")
    print("|---|" + "---|" * len(tasks))
    for m in mechanisms:
        line = [m]
        for t in tasks:
            c = cell.get((t, m))
            line.append(f"{c[0]:.2f} s / {hours(c[1])}" if c else "—")
        print("| " + " | ".join(line) + " |")
    totals = [sum(c[1] for (t, _), c in cell.items() if t == task) for task in tasks]
    print("| **all mechanisms** | " + " | ".join(f"**{hours(x)}**" for x in totals) + " |")
    print()
    print(
        f"The {len(cell)} cells timed: about {hours(sum(totals))} "
        f"({sum(totals) / 86400:.1f} days) of training in all, one seed each"
        + (f"; not timed: {'; '.join(failed)}." if failed else ".")
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

"""Averages arena reports (report.json, one per seed) into the Markdown table of
bench/results/conditional.md: per task and mechanism, the mean and standard deviation of test
accuracy, and the means of analytic and executed GFLOP per step, steps/s, parameters and the
peak heap of a step."""
import json
import statistics
import sys
from collections import defaultdict


def spread(xs):
    mean = statistics.mean(xs)
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return mean, sd


def main(paths):
    cells = defaultdict(list)
    order = []
    for path in paths:
        with open(path) as f:
            for row in json.load(f):
                key = (row["task"], row["mechanism"])
                if key not in cells:
                    order.append(key)
                cells[key].append(row)
    print("# Conditional computation against the dense model\n")
    print("Written by `bench/conditional.sh` from the quick arena's cells (`eft arena --tasks "
          "listops,text,image --mechanisms full,full+switch,full+switch:experts=8 --set seed=S`). "
          "Every Switch expert is as wide as the dense model's MLP (`model.d_ff`), so a kept "
          "token costs one MLP plus the router. *Analytic* FLOPs count every position of the "
          "padded batch through one expert; *executed* FLOPs leave out what the Switch layers "
          "skipped: padding positions (not routed) and tokens dropped over capacity (1.25 × an "
          "even share). The dense model computes its padding, so its two figures are equal. "
          "Steps/s is the median step of the run, on a shared 2-core machine.\n")
    print(f"Seeds per cell: {len(paths)} (mean ± standard deviation of test accuracy).\n")
    print("| task | mechanism | test accuracy | majority | GFLOP/step (analytic) "
          "| GFLOP/step (executed) | steps/s | parameters | peak heap/step |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in sorted(order, key=lambda k: (k[0], order.index(k))):
        rows = [r for r in cells[key] if r["status"] == "finished"]
        if not rows:
            print(f"| {key[0]} | {key[1]} | failed | | | | | | |")
            continue
        acc, sd = spread([r["test_accuracy"] for r in rows])
        mean = lambda k: statistics.mean(r[k] for r in rows if r.get(k) is not None)
        print(
            f"| {key[0]} | {key[1]} | {acc:.1f}% ± {sd:.1f} | {mean('majority_baseline'):.1f}% "
            f"| {mean('flops_per_step') / 1e9:.3f} | {mean('executed_flops_per_step') / 1e9:.3f} "
            f"| {mean('steps_per_second'):.1f} | {mean('parameters'):,.0f} "
            f"| {mean('peak_step_heap_bytes') / 2**20:.0f} MiB |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])

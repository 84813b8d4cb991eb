"""Averages arena reports (report.json, one per seed) into bench/results/conditional.md: per task
and mechanism, the mean and standard deviation of test accuracy, the means of analytic and
executed GFLOP per step, steps/s, parameters and the peak heap of a step, what the conditional
parts did (from each cell's record.json), then the early-exit sweeps `eft eval --exit-threshold`
wrote for the first seed."""
import json
import os
import statistics
import sys
from collections import defaultdict

TASKS = ("listops", "text", "image")

INTRO = (
    "Written by `bench/conditional.sh` from the quick arena's cells (`eft arena --tasks "
    "listops,text,image --mechanisms full,full+switch,full+switch:experts=8,"
    "full+act:max_steps=6,full+exits,full+learned_exits --set seed=S`). Steps/s is the median training step, on a "
    "shared 2-core machine; the last column holds training means over the seeds.\n\n"
    "- **Switch** (`full+switch`, 4 or 8 experts): every expert is as wide as the dense MLP "
    "(`model.d_ff`), so a kept token costs one MLP plus the router. *Analytic* FLOPs count every "
    "position of the padded batch through one expert; *executed* FLOPs leave out what the "
    "Switch layers skipped: padding positions (not routed) and tokens dropped over capacity "
    "(1.25 × an even share). The dense model computes its padding, so its two figures are equal.\n"
    "- **Universal Transformer with ACT** (`full+act`): one block applied up to 6 times. Its "
    "analytic FLOPs count 6 steps for every position, its executed FLOPs the steps each "
    "sequence ran, until its last position halted (a sequence whose positions have all halted "
    "leaves the batch; within a sequence every position is computed at each step, halted ones "
    "frozen but still attended to), so the steps a position took on average (the last column) "
    "are fewer than its sequence ran.\n"
    "- **Early exit** (`full+exits`): a head after each of the 2 blocks, trained on the mean of "
    "their losses; the test accuracy is the last head's, the last column evaluates the test "
    "split exiting at the first head whose top probability is at least 0.5 (training executes "
    "every head, so its step FLOPs are the analytic ones). `full+learned_exits` adds a depth "
    "classifier on the pooled embeddings, trained on oracle depths (the head whose loss plus "
    "0.01 per layer is least); its last column evaluates the test split at the depths it picks.\n"
)


def spread(xs):
    mean = statistics.mean(xs)
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return mean, sd


def what_it_did(report_path, row):
    """The cell's conditional statistics from its record.json: the fraction of tokens Switch
    layers dropped, the steps per position and per batch of adaptive computation time, or the
    test split's early-exit evaluation."""
    path = os.path.join(os.path.dirname(report_path), f"{row['task']}-{row['mechanism']}",
                        "record.json")
    try:
        with open(path) as f:
            record = json.load(f)
        stats = record["evals"][-1].get("layer_stats", {})
    except (OSError, KeyError, IndexError):
        return {}
    out = {}
    if record.get("exits"):
        out["exits"] = record["exits"]
    if "dropped_fraction" in stats:
        layers = stats["dropped_fraction"]
        out["dropped"] = sum(layers) / len(layers)
    if "act_steps" in stats:
        out["steps"] = stats["act_steps"][0]
        out["steps_run"] = stats["act_steps_run"][0]
        out["sequence_steps"] = stats.get("act_steps_per_sequence", [float("nan")])[0]
    return out


def note(did):
    """The last column's text for a cell's seeds."""
    if not did:
        return ""
    mean = lambda f: statistics.mean(f(d) for d in did)
    if "dropped" in did[0]:
        return f"{100 * mean(lambda d: d['dropped']):.1f}% of tokens dropped"
    if "steps" in did[0]:
        return (f"{mean(lambda d: d['steps']):.2f} steps per position, "
                f"{mean(lambda d: d['sequence_steps']):.2f} per sequence, "
                f"{mean(lambda d: d['steps_run']):.2f} per batch")
    if "exits" in did[0]:
        e = lambda d: d["exits"]
        share = mean(lambda d: 100 * e(d)["flops_per_example"] / e(d)["full_flops_per_example"])
        rule = e(did[0])["threshold"]
        rule = "at the learned depth" if rule is None else f"at p ≥ {rule}"
        return (f"exiting {rule}: "
                f"{mean(lambda d: 100 * e(d)['accuracy']):.1f}% with "
                f"{mean(lambda d: e(d)['mean_layers']):.2f} layers and {share:.0f}% of the "
                f"forward FLOPs")
    return ""


def main(paths):
    cells = defaultdict(list)
    order = []
    for path in paths:
        with open(path) as f:
            for row in json.load(f):
                key = (row["task"], row["mechanism"])
                if key not in cells:
                    order.append(key)
                row["did"] = what_it_did(path, row)
                cells[key].append(row)
    print("# Conditional computation against the dense model\n")
    print(INTRO)
    print(f"Seeds per cell: {len(paths)} (mean ± standard deviation of test accuracy).\n")
    print("| task | mechanism | test accuracy | majority | GFLOP/step (analytic) "
          "| GFLOP/step (executed) | steps/s | parameters | peak heap/step | what it did |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(order, key=lambda k: (k[0], order.index(k))):
        rows = [r for r in cells[key] if r["status"] == "finished"]
        if not rows:
            print(f"| {key[0]} | {key[1]} | failed | | | | | | | |")
            continue
        acc, sd = spread([r["test_accuracy"] for r in rows])
        mean = lambda k: statistics.mean(r[k] for r in rows if r.get(k) is not None)
        print(
            f"| {key[0]} | {key[1]} | {acc:.1f}% ± {sd:.1f} | {mean('majority_baseline'):.1f}% "
            f"| {mean('flops_per_step') / 1e9:.3f} | {mean('executed_flops_per_step') / 1e9:.3f} "
            f"| {mean('steps_per_second'):.1f} | {mean('parameters'):,.0f} "
            f"| {mean('peak_step_heap_bytes') / 2**20:.0f} MiB | {note([r['did'] for r in rows if r['did']])} |"
        )
    first = os.path.dirname(paths[0]) if paths else ""
    for task in TASKS:
        sweep = os.path.join(first, f"{task}-full+exits", "exits.md")
        if not os.path.exists(sweep):
            continue
        with open(sweep) as f:
            table = f.read().rstrip()
        print(f"\n## Early exit on {task}: accuracy against FLOPs (seed 1, test split)\n")
        print(f"![accuracy against GFLOP per example](conditional-exits-{task}.png)\n")
        print(table)


if __name__ == "__main__":
    main(sys.argv[1:])

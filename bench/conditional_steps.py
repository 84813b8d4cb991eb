"""Step time of the conditional-computation techniques against the dense model, measured in one
session and interleaved (dense, switch, act, exits, then again), so the machine's drift hits
them alike: quick ListOps, 200 steps each, the median step of each run (warm-up excluded), the
median over the repeats. Writes bench/results/conditional-steps.md.

Run from the repository root after `cargo build --release -p eft`:
    python3 bench/conditional_steps.py [REPEATS]
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

EFT = os.path.join("target", "release", "eft")
TECHNIQUES = {
    "dense (`full`, 2 blocks)": [],
    "Switch, 4 experts": ["--set", 'model.feed_forward={kind="switch",experts=4}'],
    "Switch, 8 experts": ["--set", 'model.feed_forward={kind="switch",experts=8}'],
    "Universal Transformer + ACT (1 block, ≤ 6 steps)":
        ["--set", 'model.depth={kind="act",max_steps=6}', "--set", "model.n_layers=1"],
    "dense with exits (training)": ["--set", 'model.exits={kind="confidence",threshold=0.5}'],
}


def main(repeats):
    steps = {name: [] for name in TECHNIQUES}
    flops = {}
    with tempfile.TemporaryDirectory() as out:
        for rep in range(repeats):
            for i, (name, args) in enumerate(TECHNIQUES.items()):
                run = f"t{i}-{rep}"
                subprocess.run(
                    [EFT, "train", "--task", "listops", "--preset", "quick", "--steps", "200",
                     "--no-progress", "--out", out, "--name", run] + args,
                    check=True, capture_output=True)
                with open(os.path.join(out, run, "record.json")) as f:
                    meter = json.load(f)["meter"]
                steps[name].append(meter["step_seconds"]["median"])
                flops[name] = meter["executed_flops_per_step"]
    base = statistics.median(steps[next(iter(TECHNIQUES))])
    dense_flops = flops[next(iter(TECHNIQUES))]
    lines = [
        "# Conditional computation: training step time in one session",
        "",
        "Written by `python3 bench/conditional_steps.py`: quick ListOps, 200 steps per run, the "
        f"techniques interleaved {repeats} times in one session; each run's median step "
        "(warm-up excluded), then the median over the repeats.",
        "",
        "| technique | median step | × dense | executed GFLOP/step | × dense |",
        "|---|---|---|---|---|",
    ]
    for name, times in steps.items():
        t = statistics.median(times)
        lines.append(
            f"| {name} | {1e3 * t:.1f} ms | {t / base:.2f} | {flops[name] / 1e9:.3f} "
            f"| {flops[name] / dense_flops:.2f} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join("bench", "results"), exist_ok=True)
    with open(os.path.join("bench", "results", "conditional-steps.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)

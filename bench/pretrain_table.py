"""Writes bench/results/pretraining.md from the runs bench/pretrain.sh trained (folder argv[1]):
MLM and ELECTRA pretraining at equal measured FLOPs, and Text fine-tuned from each encoder
against Text from scratch. `section` also serves bench/compression_table.py."""
import json
import os
import statistics
import sys


def record(root, name):
    with open(os.path.join(root, name, "record.json")) as f:
        return json.load(f)


def mean_sd(values):
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mlm_head_row_flops(config):
    """Forward FLOPs of the MLM model's MLP head on one position (its two layers, the ReLU, the
    log-softmax and the loss), by the meter's formula."""
    d, hidden, classes = config["model"]["d_model"], config["model"]["d_ff"], 256
    per_row = 2 * d * hidden + hidden + hidden + 2 * hidden * classes + classes + 4 * classes + 2
    return per_row


def section(root, level="##"):
    out = []
    p = out.append
    m, e = record(root, "mlm"), record(root, "electra")
    p(f"{level} Pretraining: ELECTRA against masked-byte prediction at equal FLOPs\n")
    p(
        "`bash bench/pretrain.sh`. The quick model (width 64, 4 heads, 2 layers) pretrained on "
        "64-byte windows of IMDb's training reviews and the Brown corpus (Text's test reviews "
        "never read), 15% of each window's bytes chosen (80% [MASK], 10% a random byte, 10% "
        "kept), batch 32, cosine 3e-3: by masked-byte prediction (`eft pretrain --objective "
        "mlm`) for the preset's steps, and by ELECTRA (`eft pretrain --objective electra "
        "--flops BUDGET`: a generator at ¼ of the width, heads and MLP width sharing the token "
        "and position embeddings, a replacement drawn from it at each chosen byte, the model "
        "classifying every byte as original or replaced, loss MLM + 50·RTD) for the FLOPs the "
        "MLM run measured (the meter's count of every training step, generator included). "
        "Masked-byte accuracy is the test split's; for ELECTRA it is the generator's (the "
        "discriminator does not predict bytes). The detection figures are the training "
        "steps' since the last evaluation.\n"
    )
    p("| objective | steps | FLOPs | wall s | masked bytes right (test) | replaced share | detection accuracy |")
    p("|---|---:|---:|---:|---:|---:|---:|")
    majority = 100 * m["majority_baseline"]["test_accuracy"]
    for label, r in (("MLM", m), ("ELECTRA", e)):
        stats = r["evals"][-1].get("layer_stats") or {}
        share = stats.get("replaced_share", [None])[0]
        detect = stats.get("rtd_accuracy", [None])[0]
        fmt = lambda v: "—" if v is None else f"{100 * v:.1f}%"
        p(
            f"| {label} | {r['steps_done']} | {r['meter']['total_flops']:.3g} | "
            f"{r['wall_clock_seconds']:.0f} | {100 * r['test']['accuracy']:.1f}% | "
            f"{fmt(share)} | {fmt(detect)} |"
        )
    p(f"\nThe most frequent byte is right {majority:.1f}% of the time on the test windows. ")
    if share is not None:
        p(
            f"Always answering \"original\" would score {100 * (1 - share):.1f}% on detection "
            "at the last window's replaced share.\n"
        )
    cfg = m["config"]
    per_row = mlm_head_row_flops(cfg)
    rows = cfg["train"]["batch_size"] * cfg["task"]["len"]
    graded = round(0.15 * cfg["task"]["len"]) * cfg["train"]["batch_size"]
    step = m["meter"]["total_flops"] / m["steps_done"]
    wasted = 3 * per_row * (rows - graded) / step
    p(
        f"MLM's head reads every position though {graded // cfg['train']['batch_size']} of "
        f"{cfg['task']['len']} are graded: {100 * wasted:.0f}% of its step's FLOPs go to "
        "head rows no loss reads (eft's per-position head does not gather the graded rows "
        "first). At this budget MLM therefore gets fewer useful FLOPs than ELECTRA, whose "
        "generator scores only the chosen positions; an MLM with a gathering head would run "
        f"about {1 / (1 - wasted):.2f}× the steps for the same FLOPs.\n"
    )
    for steps, prefix in ((400, "text"), (2000, "text2000")):
        runs = {}
        for init in ("none", "mlm", "electra"):
            names = [f"{prefix}-{init}-seed{s}" for s in (1, 2, 3)]
            if all(os.path.isfile(os.path.join(root, n, "record.json")) for n in names):
                runs[init] = [100 * record(root, n)["test"]["accuracy"] for n in names]
        if not runs:
            continue
        base = record(root, f"{prefix}-none-seed1")
        p(
            f"Text (quick preset, first 64 bytes, CLS pooling, {steps} steps, batch 32), test "
            f"accuracy over seeds 1–3 (majority class "
            f"{100 * base['majority_baseline']['test_accuracy']:.1f}%); a difference smaller "
            "than the larger spread is a tie:\n"
        )
        p("| start | seeds | mean ± sd | against scratch |")
        p("|---|---|---:|---|")
        scratch = mean_sd(runs["none"]) if "none" in runs else None
        labels = {"none": "from scratch", "mlm": "from the MLM encoder", "electra": "from the ELECTRA discriminator"}
        for init, acc in runs.items():
            mu, sd = mean_sd(acc)
            verdict = "—"
            if scratch and init != "none":
                gap = mu - scratch[0]
                verdict = f"{gap:+.1f} points, " + (
                    "tie" if abs(gap) <= max(sd, scratch[1]) else ("better" if gap > 0 else "worse")
                )
            seeds = ", ".join(f"{a:.1f}%" for a in acc)
            p(f"| {labels[init]} | {seeds} | {mu:.1f} ± {sd:.1f}% | {verdict} |")
        p("")
    p(
        "Fine-tuning curves, seed 1 at 2,000 steps (`eft report --curves`):\n\n"
        "![Text fine-tuning from scratch, from MLM and from ELECTRA](pretraining-finetune.png)\n"
    )
    return "\n".join(out)


if __name__ == "__main__":
    print("# Pretraining\n\nWritten by `bench/pretrain.sh`.\n")
    print(section(sys.argv[1]))

"""Writes bench/results/compression.md from the runs bench/compression.sh trained: test accuracy
of the magnitude-pruned quick ListOps and Image models against sparsity, as pruned and after
fine-tuning with the mask held, beside the unpruned source and the majority baseline."""
import json
import os
import statistics
import sys

root = sys.argv[1]
# Where the charts go (the folder compression.md is written to); none are drawn without it.
plots = sys.argv[2] if len(sys.argv) > 2 else None


def write_dot_plot(path, groups):
    """An SVG of test accuracy per (task, student): alone and distilled side by side, each a
    dot at the mean with a bar of ± one standard deviation."""
    width, height, left, top, bottom = 760, 380, 60, 50, 90
    lows = [m - s for _, a, b in groups for m, s in (a, b)]
    highs = [m + s for _, a, b in groups for m, s in (a, b)]
    lo, hi = 5 * int(min(lows) // 5), 5 * (int(max(highs) // 5) + 1)
    y = lambda v: top + (height - top - bottom) * (hi - v) / (hi - lo)
    step = (width - left - 20) / len(groups)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="22" font-size="16">Distillation: test accuracy, alone and '
        "distilled from the full teacher</text>",
    ]
    for v in range(lo, hi + 1, 5):
        out.append(
            f'<line x1="{left}" x2="{width - 20}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
            f'<text x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v}%</text>'
        )
    for i, (name, alone, taught) in enumerate(groups):
        cx = left + step * (i + 0.5)
        for dx, (m, s), color in ((-10, alone, "#888"), (10, taught, "#1f77b4")):
            out.append(
                f'<line x1="{cx + dx:.1f}" x2="{cx + dx:.1f}" y1="{y(m - s):.1f}" '
                f'y2="{y(m + s):.1f}" stroke="{color}" stroke-width="2"/>'
                f'<circle cx="{cx + dx:.1f}" cy="{y(m):.1f}" r="5" fill="{color}"/>'
            )
        task, student = name.split(", ", 1)
        for j, line in enumerate((task, student)):
            out.append(
                f'<text x="{cx:.1f}" y="{height - bottom + 20 + 15 * j}" '
                f'text-anchor="middle">{line}</text>'
            )
    for j, (label, color) in enumerate((("alone", "#888"), ("distilled", "#1f77b4"))):
        x = width - 200 + 90 * j
        out.append(
            f'<circle cx="{x}" cy="40" r="5" fill="{color}"/>'
            f'<text x="{x + 10}" y="44">{label}</text>'
        )
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def record(path):
    with open(os.path.join(path, "record.json")) as f:
        return json.load(f)


def mean_sd(values):
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


rows = {}
for name in sorted(os.listdir(os.path.join(root, "pruned"))):
    r = record(os.path.join(root, "pruned", name))
    if r["status"] != "finished":
        continue
    task = r["config"]["task"]["name"]
    steps = r["config"]["train"]["steps"]
    rows.setdefault(task, {})[(r["prune"]["asked"]["sparsity"], steps)] = r

print("# Compression\n")
print("Written by `bench/compression.sh`.\n")
print("## Magnitude pruning\n")
print(
    "The quick arena's `full` models (`eft arena --tasks listops,image --mechanisms full`), "
    "pruned by `eft prune SOURCE --sparsity s --finetune N`: the smallest-magnitude share s "
    "of the dense layers' weights (attention projections, feed-forward, head; ranked globally; "
    "embeddings, norms and biases kept) set to zero, then evaluated as they are (N = 0) or after "
    "N = 100 steps of fine-tuning with the mask re-applied after every optimiser step. "
    "Sparsity is what the record measured on the final weights. One seed.\n"
)
for task, cells in sorted(rows.items()):
    source = record(os.path.join(root, "sources", f"{task}-full"))
    base = 100 * source["majority_baseline"]["test_accuracy"]
    print(f"### {task}\n")
    print(
        f"Source: {100 * source['test']['accuracy']:.1f}% after {source['steps_done']} steps; "
        f"majority baseline {base:.1f}%.\n"
    )
    print("| sparsity asked | sparsity reached | pruned | fine-tuned 100 steps |")
    print("|---:|---:|---:|---:|")
    for s in sorted({k[0] for k in cells}):
        pruned, tuned = cells.get((s, 0)), cells.get((s, 100))
        reached = (pruned or tuned)["prune"]["sparsity"]
        acc = lambda r: "—" if r is None else f"{100 * r['test']['accuracy']:.1f}%"
        print(f"| {100 * s:.0f}% | {100 * reached:.1f}% | {acc(pruned)} | {acc(tuned)} |")
    print()
    # The controls: the source for pruned-only, the source fine-tuned unpruned for fine-tuned.
    source_acc = 100 * source["test"]["accuracy"]
    control = cells.get((0.0, 100))
    held = lambda steps, ref: max(
        (s for (s, n), r in cells.items() if n == steps and 100 * r["test"]["accuracy"] >= ref - 2.0),
        default=None,
    )
    line = f"Without fine-tuning, accuracy stays within 2 points of the source's {source_acc:.1f}% up to {100 * held(0, source_acc):.0f}% sparsity"
    if control is not None:
        c = 100 * control["test"]["accuracy"]
        line += (
            f"; 100 more steps alone (the 0% row) reach {c:.1f}%, and the fine-tuned pruned "
            f"models stay within 2 points of that control up to {100 * held(100, c):.0f}%"
        )
    print(line + ".\n")
print("![accuracy against the weights kept](pruning.png)\n")

distilled = os.path.join(root, "distilled")
if os.path.isdir(distilled):
    cells = {}
    for name in sorted(os.listdir(distilled)):
        r = record(os.path.join(distilled, name))
        if r["status"] != "finished":
            continue
        task, student, alpha, _ = name.split("-")
        cells.setdefault((task, student), {}).setdefault(alpha, []).append(
            100 * r["test"]["accuracy"]
        )
    print("## Distillation\n")
    print(
        "The same `full` models as teachers (`train.distill = { teacher, temperature = 2, "
        "alpha = 0.5 }`: loss α·T²·KL(teacher ‖ student at T) + (1 − α)·CE) of a `performer`, a "
        "`linear` and a half-width `full` student (d_model 32, MLP 64), each trained with the "
        "teacher's data and steps, against the same student without the teacher (α = 0); mean ± "
        "standard deviation of test accuracy over seeds 1–3. A difference smaller than the "
        "larger spread is marked a tie.\n"
    )
    print("| task | student | alone | distilled | difference |")
    print("|---|---|---:|---:|---:|")
    groups = []
    for (task, student), by_alpha in sorted(cells.items()):
        alone, taught = by_alpha.get("a0", []), by_alpha.get("a0.5", [])
        if not alone or not taught:
            continue
        (ma, sa), (mt, st) = mean_sd(alone), mean_sd(taught)
        diff = mt - ma
        verdict = "tie" if abs(diff) <= max(sa, st) else ("better" if diff > 0 else "worse")
        label = "full, half width" if student == "half" else student
        print(
            f"| {task} | {label} | {ma:.1f} ± {sa:.1f}% | "
            f"{mt:.1f} ± {st:.1f}% | {diff:+.1f} ({verdict}) |"
        )
        groups.append((f"{task}, {label}", (ma, sa), (mt, st)))
    print()
    if plots and groups:
        write_dot_plot(os.path.join(plots, "distillation.svg"), groups)
        print("![distilled against alone, mean ± sd over 3 seeds](distillation.svg)\n")

lottery = os.path.join(root, "lottery")
if os.path.isdir(lottery):
    print("## Lottery tickets\n")
    print(
        "Each model retrained with its initialisation kept (`--set train.keep_at=[0]`), then "
        "`eft prune SOURCE --lottery --rounds 5 --rate 0.5 --rewind 0`: round r prunes to "
        "1 − 0.5^r of the dense weights, ranked by round r − 1's trained ticket (round 1: the "
        "source), and trains the ticket from the source's initialisation under that mask, beside "
        "a control with the same mask from a fresh initialisation (the next seed, which also "
        "changes the data order). Same steps as the source; one seed.\n"
    )
    for task in ("listops", "image"):
        src = os.path.join(lottery, f"{task}-source")
        if not os.path.isdir(src):
            continue
        s0 = record(src)
        print(f"### {task}\n")
        print(f"Source (dense): {100 * s0['test']['accuracy']:.1f}%.\n")
        print("| round | sparsity | ticket | control (fresh init) | ticket − control |")
        print("|---:|---:|---:|---:|---:|")
        for r in range(1, 20):
            t = os.path.join(lottery, f"{task}-source-lottery-r{r}-ticket")
            c = os.path.join(lottery, f"{task}-source-lottery-r{r}-control")
            if not (os.path.isdir(t) and os.path.isdir(c)):
                break
            t, c = record(t), record(c)
            if t["status"] != "finished" or c["status"] != "finished":
                break
            ta, ca = 100 * t["test"]["accuracy"], 100 * c["test"]["accuracy"]
            print(
                f"| {r} | {100 * t['prune']['sparsity']:.1f}% | {ta:.1f}% | {ca:.1f}% | "
                f"{ta - ca:+.1f} |"
            )
        print()

if plots and os.path.isfile(os.path.join(plots, "lottery.png")):
    print(
        "Tickets and controls against the weights kept (`eft report runs/compression/lottery "
        "--pruning DIR`):\n\n![ticket against fresh initialisation](lottery.png)\n"
    )

heads = os.path.join(root, "heads")
if os.path.isdir(heads):
    cells = {}
    for name in sorted(os.listdir(heads)):
        path = os.path.join(heads, name)
        if not os.path.isdir(path):
            continue
        r = record(path)
        if r["status"] != "finished":
            continue
        task, share, steps, order = name.split("-")
        # The random draws are one control with a spread.
        order = "random" if order.startswith("random") else order
        cells.setdefault((task, float(share[1:]), int(steps[2:]), order), []).append(r)
    print("## Head pruning\n")
    print(
        "The same `full` models (2 layers × 4 heads), `eft prune SOURCE --heads s --finetune N`: "
        "each head's output multiplied by a gate ξ = 1, its importance |∂L/∂ξ| summed over 32 "
        "training batches and normalised per layer (Michel et al. 2019), the least important "
        "share s of the 8 heads cut out of the Q/K/V/O weights (each layer keeps one), then "
        "evaluated (N = 0) or fine-tuned for N = 100 steps. The control cuts as many heads "
        "chosen at random: mean ± standard deviation over three draws. One training seed.\n"
    )
    for task in ("listops", "image"):
        rows = sorted({(s, n) for (t, s, n, _) in cells if t == task})
        if not rows:
            continue
        source = record(os.path.join(root, "sources", f"{task}-full"))
        control = os.path.join(root, "pruned", f"{task}-s0-ft100")
        print(f"### {task}\n")
        line = f"Source: {100 * source['test']['accuracy']:.1f}%, {source['parameters']} parameters"
        if os.path.isdir(control):
            line += (
                f"; the source fine-tuned 100 more steps unpruned: "
                f"{100 * record(control)['test']['accuracy']:.1f}%"
            )
        print(line + ".\n")
        print("| heads removed | parameters | by importance, pruned | random, pruned | by importance, fine-tuned | random, fine-tuned |")
        print("|---:|---:|---:|---:|---:|---:|")
        def acc(runs):
            if not runs:
                return "—"
            a = [100 * r["test"]["accuracy"] for r in runs]
            if len(a) == 1:
                return f"{a[0]:.1f}%"
            return "{:.1f} ± {:.1f}%".format(*mean_sd(a))

        for share in sorted({s for s, _ in rows}):
            get = lambda n, o: cells.get((task, share, n, o))
            any_run = next(r[0] for r in (get(0, "importance"), get(100, "importance")) if r)
            removed = round(share * 8)
            print(
                f"| {removed} of 8 | {any_run['parameters']} | {acc(get(0, 'importance'))} | "
                f"{acc(get(0, 'random'))} | {acc(get(100, 'importance'))} | "
                f"{acc(get(100, 'random'))} |"
            )
        print()
    steps_file = os.path.join(heads, "steps.jsonl")
    if os.path.isfile(steps_file):
        with open(steps_file) as f:
            steps = [json.loads(line) for line in f if line.strip()]
        print("### The step it makes cheaper\n")
        print(
            "`eft profile attention --model quick --mechanism full --len N --repeats 5 --set "
            "model.kept_heads=…`: one forward+backward training step of the quick model "
            "(d_model 64, head dimension 16, 2 layers, batch 1) with h heads kept in each "
            "layer, each in its own process; the median over three rounds (each round runs every "
            "configuration in turn) of each process's median of 5 steps, and the peak heap over "
            "the step. Ratios are to 4 heads at the same length, measured in the same run; the "
            "FLOPs are the meter's count of the step.\n"
        )
        print("| N | heads per layer | GFLOP/step | × FLOPs | ms/step (runs) | × time | heap peak MiB | × memory |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        cells = {}
        for m in steps:
            h = len(json.loads(dict(m["sets"])["model.kept_heads"])[0])
            cells.setdefault((m["len"], h), []).append(m)
        for (n, h) in sorted(cells, key=lambda k: (k[0], -k[1])):
            runs, base = cells[(n, h)], cells.get((n, 4))
            sec = statistics.median(m["seconds"] for m in runs)
            heap = max(m["heap_peak_bytes"] for m in runs)
            flops = runs[0]["flops"]
            spread = ", ".join(f"{1e3 * m['seconds']:.0f}" for m in runs)
            if base:
                b_sec = statistics.median(m["seconds"] for m in base)
                b_heap = max(m["heap_peak_bytes"] for m in base)
                ratios = (f"{flops / base[0]['flops']:.2f}", f"{sec / b_sec:.2f}", f"{heap / b_heap:.2f}")
            else:
                ratios = ("—", "—", "—")
            print(
                f"| {n} | {h} | {flops / 1e9:.2f} | {ratios[0]} | {1e3 * sec:.0f} ({spread}) | "
                f"{ratios[1]} | {heap / 2**20:.1f} | {ratios[2]} |"
            )
        print()

# ELECTRA against MLM: the runs bench/pretrain.sh keeps beside these.
pretraining = os.path.join(os.path.dirname(os.path.normpath(root)), "pretraining")
if os.path.isfile(os.path.join(pretraining, "electra", "record.json")):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import pretrain_table

    print(pretrain_table.section(pretraining))

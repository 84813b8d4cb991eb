"""The same attention sweep as `eft profile sweep`, in PyTorch on this machine, and the ratios.

For each mechanism that PyTorch expresses directly (exact attention as the naive product and as
`scaled_dot_product_attention`, local blocks, linear attention, Linformer), one forward+backward
at B=1, H=4, D=64 and N = 1K…16K runs in a fresh process: median seconds of `--repeats` passes
after a warm-up, and peak resident memory above the process's resident memory before the inputs
existed (the kernel's VmHWM, as eft measures it). Results go to bench/results/torch-cpu.json; the
table of eft/PyTorch ratios (from bench/results/attention-cpu.json) to bench/results/torch-vs-eft.md.

Run through bench/torch-compare.sh, which installs torch into bench/.venv when asked.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# eft mechanism (default parameters) -> the PyTorch forms compared with it.
PAIRS = {
    "full": ["naive", "sdpa"],
    "flash": ["sdpa"],
    "local": ["local"],
    "linear": ["linear"],
    "linformer": ["linformer"],
}


def status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def forms():
    import torch
    import torch.nn.functional as F

    def naive(q, k, v):
        s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        return s.softmax(-1) @ v

    def sdpa(q, k, v):
        return F.scaled_dot_product_attention(q, k, v)

    def local(q, k, v, block=50):
        b, h, n, d = q.shape
        padded = -(-n // block) * block
        pad = lambda t: F.pad(t, (0, 0, 0, padded - n)).reshape(b, h, padded // block, block, d)
        qb, kb, vb = pad(q), pad(k), pad(v)
        s = qb @ kb.transpose(-2, -1) / math.sqrt(d)
        real = torch.arange(padded).reshape(padded // block, 1, block) < n
        s = s.masked_fill(~real, float("-inf"))
        return (s.softmax(-1) @ vb).reshape(b, h, padded, d)[:, :, :n]

    def linear(q, k, v):
        fq, fk = F.elu(q) + 1, F.elu(k) + 1
        kv = fk.transpose(-2, -1) @ v
        z = fk.sum(-2, keepdim=True)
        return (fq @ kv) / (fq * z).sum(-1, keepdim=True)

    def linformer(q, k, v, proj=16):
        n = q.shape[-2]
        e = torch.randn(proj, n, generator=torch.Generator().manual_seed(0)) / math.sqrt(n)
        return naive(q, e @ k, e @ v)

    return {"naive": naive, "sdpa": sdpa, "local": local, "linear": linear, "linformer": linformer}


def measure(form, n, repeats):
    """One configuration, in this (fresh) process."""
    import torch

    torch.manual_seed(0)
    before = status_bytes("VmRSS:")
    shape = (1, 4, n, 64)
    q, k, v, w = (torch.randn(shape) for _ in range(4))
    fn = forms()[form]
    times = []
    for i in range(repeats + 1):
        qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
        start = time.perf_counter()
        (fn(qq, kk, vv) * w).sum().backward()
        _ = qq.grad.sum().item()
        if i > 0:
            times.append(time.perf_counter() - start)
    times.sort()
    return {
        "form": form,
        "len": n,
        "seconds": times[len(times) // 2],
        "peak_bytes": status_bytes("VmHWM:") - before,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lens", default="1024,2048,4096,8192,16384")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-gib", type=float, default=20.0)
    p.add_argument("--one", nargs=2, metavar=("FORM", "LEN"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.repeats)))
        return
    lens = [int(x) for x in args.lens.split(",")]
    results = []
    for form in ["naive", "sdpa", "local", "linear", "linformer"]:
        for n in lens:
            # The naive form holds scores, probabilities and their gradients: ~4 N² floats per head.
            need = 4 * 4 * n * n * 4 / 2**30 if form == "naive" else 0
            if need > args.max_gib:
                results.append({"form": form, "len": n, "note": f"skipped: needs about {need:.0f} GiB"})
                continue
            print(f"torch {form} at N = {n}…", file=sys.stderr)
            out = subprocess.run(
                [sys.executable, __file__, "--one", form, str(n), "--repeats", str(args.repeats)],
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                results.append({"form": form, "len": n, "note": f"failed: {out.stderr.strip()[-200:]}"})
                continue
            results.append(json.loads(out.stdout))
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "torch-cpu.json"), "w") as f:
        json.dump(results, f, indent=1)
    table = ratios(results, lens)
    with open(os.path.join(RESULTS, "torch-vs-eft.md"), "w") as f:
        f.write(table)
    print(table)


def ratios(torch_results, lens):
    with open(os.path.join(RESULTS, "attention-cpu.json")) as f:
        eft = [m for m in json.load(f) if not m.get("params")]
    find_eft = lambda mech, n: next((m for m in eft if m["mechanism"] == mech and m["len"] == n), None)
    find_torch = lambda form, n: next((r for r in torch_results if r["form"] == form and r["len"] == n), None)
    version = next((r["torch"] for r in torch_results if "torch" in r), "?")
    s = (
        f"eft / PyTorch {version} on the same machine (B=1, H=4, D=64, forward+backward, f32 CPU):\n"
        "time ratio / peak-memory ratio; below 1 means eft is faster or smaller. Regenerate with\n"
        "`bench/torch-compare.sh --install`.\n\n| eft | PyTorch |"
    )
    s += "".join(f" N={n} |" for n in lens) + "\n|---|---|" + "---|" * len(lens) + "\n"
    for mech, torch_forms in PAIRS.items():
        for form in torch_forms:
            s += f"| {mech} | {form} |"
            for n in lens:
                e, t = find_eft(mech, n), find_torch(form, n)
                if e and t and e.get("seconds") and t.get("seconds"):
                    s += f" {e['seconds'] / t['seconds']:.2f}× / {e['peak_bytes'] / max(t['peak_bytes'], 1):.2f}× |"
                else:
                    s += " — |"
            s += "\n"
    return s


if __name__ == "__main__":
    main()

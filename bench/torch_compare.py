"""eft against plain PyTorch on this machine: attention calls and whole training steps, one table.

Every configuration runs twice in fresh processes, eft then PyTorch, before the next one starts
(so both see the same machine state): attention forward+backward at B=1, H=4, D=64; the training
step (forward, cross-entropy, backward; no optimiser step; dropout 0) of the quick and the LRA
ListOps models, written in PyTorch exactly as eft builds them (pre-LN blocks with separate q/k/v/o
projections, GELU feed-forward, learned positions, a CLS token, final LayerNorm, ReLU head); and
the f32 GEMM rate of each. Each process reports the median of `--repeats` passes after a warm-up
and its peak resident memory above its resident memory before the inputs existed (VmHWM − VmRSS,
as eft measures it). PyTorch runs eager with its default kernels and `torch.set_num_threads` left
at the machine's core count.

Results: bench/results/torch-vs-eft.json (every measurement) and bench/results/torch-vs-eft.md
(the table, with eft÷PyTorch ratios). Run through bench/torch-compare.sh.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
EFT = os.path.join(HERE, "..", "target", "release", "eft")

# (row label, eft mechanism, eft parameters, PyTorch form, lengths)
ATTENTION = [
    ("exact attention", "flash", {}, "sdpa", [1024, 2048, 4096, 8192, 16384]),
    ("materialised attention", "full", {}, "naive", [1024, 4096]),
    ("local, blocks of 64", "local", {"block": 64}, "local", [1024, 4096]),
    ("linear (elu+1)", "linear", {}, "linear", [1024, 4096]),
    ("performer m=256", "performer", {"features": 256}, "performer", [4096]),
    ("linformer k=256", "linformer", {"k": 256}, "linformer", [4096]),
    ("nystrom m=64", "nystrom", {"landmarks": 64}, "nystrom", [4096]),
]
# (preset, batch, length); each with these (eft mechanism, PyTorch form) pairs.
STEPS = [("quick", 32, 128), ("quick", 4, 1024), ("paper", 1, 1024), ("paper", 1, 4096)]
STEP_PAIRS = [("full", "naive"), ("flash", "sdpa"), ("linear", "linear")]
PRESETS = {
    "quick": {"d_model": 64, "heads": 4, "layers": 2, "d_ff": 128},
    "paper": {"d_model": 512, "heads": 8, "layers": 4, "d_ff": 1024},
}
VOCAB, CLASSES = 16, 10
GEMM_SIZE = 2048


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

    def local(q, k, v, block=64):
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

    def performer(q, k, v, m=256):
        # FAVOR+ positive random features, stabilised per query row and over all keys.
        d = q.shape[-1]
        omega = torch.randn(m, d, generator=torch.Generator().manual_seed(0))

        def features(x, query):
            x = x / d**0.25
            proj = x @ omega.t()
            shift = proj.amax(-1, keepdim=True) if query else proj.amax()
            return torch.exp(proj - (x * x).sum(-1, keepdim=True) / 2 - shift.detach()) / math.sqrt(m)

        return linear_from(features(q, True), features(k, False), v)

    def linear_from(fq, fk, v):
        kv = fk.transpose(-2, -1) @ v
        z = fk.sum(-2, keepdim=True)
        return (fq @ kv) / (fq * z).sum(-1, keepdim=True)

    def linformer(q, k, v, proj=256):
        n = q.shape[-2]
        e = torch.randn(proj, n, generator=torch.Generator().manual_seed(0)) / math.sqrt(n)
        return naive(q, e @ k, e @ v)

    def nystrom(q, k, v, m=64, iters=6):
        b, h, n, d = q.shape
        scale = 1 / math.sqrt(d)
        ql = q.reshape(b, h, m, n // m, d).mean(-2)
        kl = k.reshape(b, h, m, n // m, d).mean(-2)
        k1 = (q @ kl.transpose(-2, -1) * scale).softmax(-1)
        k2 = (ql @ kl.transpose(-2, -1) * scale).softmax(-1)
        k3 = (ql @ k.transpose(-2, -1) * scale).softmax(-1)
        # Newton–Schulz iterations for the pseudo-inverse of k2, as Nyströmformer does.
        eye = torch.eye(m)
        z = k2.transpose(-2, -1) / (k2.abs().sum(-1).amax() * k2.abs().sum(-2).amax())
        for _ in range(iters):
            kz = k2 @ z
            z = 0.25 * z @ (13 * eye - kz @ (15 * eye - kz @ (7 * eye - kz)))
        return k1 @ (z @ (k3 @ v))

    return {
        "naive": naive,
        "sdpa": sdpa,
        "local": local,
        "linear": linear,
        "performer": performer,
        "linformer": linformer,
        "nystrom": nystrom,
    }


def model(preset, n, form):
    """The eft ListOps classifier of `preset`, in PyTorch."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    p = PRESETS[preset]
    d, heads, attend = p["d_model"], p["heads"], forms()[form]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
            self.q, self.k, self.v = (nn.Linear(d, d, bias=False) for _ in range(3))
            self.o = nn.Linear(d, d)
            self.up, self.down = nn.Linear(d, p["d_ff"]), nn.Linear(p["d_ff"], d)

        def forward(self, x):
            b, n, _ = x.shape
            h = self.norm1(x)
            split = lambda t: t.reshape(b, n, heads, d // heads).transpose(1, 2)
            a = attend(split(self.q(h)), split(self.k(h)), split(self.v(h)))
            x = x + self.o(a.transpose(1, 2).reshape(b, n, d))
            return x + self.down(F.gelu(self.up(self.norm2(x))))

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens = nn.Embedding(VOCAB, d)
            self.positions = nn.Embedding(n + 1, d)
            self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
            self.blocks = nn.ModuleList(Block() for _ in range(p["layers"]))
            self.norm = nn.LayerNorm(d, eps=1e-6)
            self.hidden, self.out = nn.Linear(d, p["d_ff"]), nn.Linear(p["d_ff"], CLASSES)

        def forward(self, tokens):
            x = self.tokens(tokens)
            x = torch.cat([self.cls.expand(x.shape[0], 1, d), x], 1)
            x = x + self.positions(torch.arange(x.shape[1]))[None]
            for block in self.blocks:
                x = block(x)
            return self.out(F.relu(self.hidden(self.norm(x)[:, 0])))

    return Classifier()


def median_time(step, repeats):
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        step()
        if i > 0:
            times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def measure(kind, name, n, batch, repeats):
    """One PyTorch configuration, in this (fresh) process."""
    import torch

    torch.manual_seed(0)
    before = status_bytes("VmRSS:")
    if kind == "attention":
        shape = (1, 4, n, 64)
        q, k, v, w = (torch.randn(shape) for _ in range(4))
        fn = forms()[name]

        def step():
            qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
            (fn(qq, kk, vv) * w).sum().backward()
            _ = qq.grad.sum().item()

    elif kind == "gemm":
        a, b = torch.randn(n, n), torch.randn(n, n)

        def step():
            _ = (a @ b)[0, 0].item()

    else:
        preset, form = kind, name
        net = model(preset, n, form)
        tokens = torch.randint(1, VOCAB, (batch, n))
        labels = torch.randint(0, CLASSES, (batch,))

        def step():
            net.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(tokens), labels).backward()

    seconds = median_time(step, repeats)
    result = {"seconds": seconds, "peak_bytes": status_bytes("VmHWM:") - before}
    result.update(torch=torch.__version__, threads=torch.get_num_threads())
    if kind == "gemm":
        result["gflops"] = 2 * n**3 / seconds / 1e9
    return result


def run_json(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"note": f"failed: {out.stderr.strip()[-300:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def eft(kind, name, params, n, batch, repeats):
    if kind == "gemm":
        return run_json([EFT, "profile", "matmul", "--size", str(n), "--repeats", str(repeats)])
    cmd = [EFT, "profile", "attention", "--mechanism", name, "--len", str(n)]
    cmd += ["--batch", str(batch), "--repeats", str(repeats)]
    for key, value in params.items():
        cmd += ["--param", f"{key}={value}"]
    if kind != "attention":
        cmd += ["--model", kind]
    return run_json(cmd)


def torch_run(kind, name, n, batch, repeats):
    cmd = [sys.executable, __file__, "--one", kind, name, str(n), str(batch), "--repeats", str(repeats)]
    return run_json(cmd)


def configurations():
    yield ("gemm", f"f32 GEMM {GEMM_SIZE}²", "matmul", {}, "matmul", GEMM_SIZE, 1)
    for label, mech, params, form, lens in ATTENTION:
        for n in lens:
            yield ("attention", label, mech, params, form, n, 1)
    for preset, batch, n in STEPS:
        for mech, form in STEP_PAIRS:
            yield (preset, f"{preset} model step", mech, {}, form, n, batch)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", help="run only rows whose label contains this text")
    p.add_argument("--one", nargs=4, metavar=("KIND", "FORM", "LEN", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        kind, form, n, batch = args.one
        print(json.dumps(measure(kind, form, int(n), int(batch), args.repeats)))
        return
    if not os.access(EFT, os.X_OK):
        sys.exit(f"{EFT} is missing: run `cargo build --release -p eft` first")
    rows = []
    for kind, label, mech, params, form, n, batch in configurations():
        if args.only and args.only not in label:
            continue
        print(f"{label}: eft {mech} / torch {form}, B={batch} N={n}…", file=sys.stderr)
        e = eft(kind, mech, params, n, batch, args.repeats)
        t = torch_run(kind, form, n, batch, args.repeats)
        rows.append({"kind": kind, "label": label, "eft": mech, "params": params, "torch_form": form,
                     "len": n, "batch": batch, "eft_result": e, "torch_result": t})
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "torch-vs-eft.json"), "w") as f:
        json.dump(rows, f, indent=1)
    table = render(rows)
    with open(os.path.join(RESULTS, "torch-vs-eft.md"), "w") as f:
        f.write(table)
    print(table)


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "—"


def render(rows):
    version = next((r["torch_result"].get("torch") for r in rows if "torch" in r["torch_result"]), "?")
    threads = next((r["torch_result"].get("threads") for r in rows if "threads" in r["torch_result"]), "?")
    s = (
        f"# eft vs PyTorch {version} on the same CPU\n\n"
        f"Regenerate with `bench/torch-compare.sh --install` (PyTorch eager, {threads} threads, its\n"
        "default kernels; eft release build). Each configuration runs in a fresh process, eft then\n"
        "PyTorch; time is the median of the passes after a warm-up, memory the peak resident memory\n"
        "above the process's resident memory before the inputs existed. Ratios below 1 mean eft is\n"
        "faster or smaller. Attention rows: B=1, H=4, D=64, forward+backward. Model steps: forward,\n"
        "cross-entropy and backward of the ListOps classifier (quick: d64, 2 layers; paper: d512,\n"
        "4 layers), dropout 0.\n\n"
        "| what | B | N | eft | PyTorch | eft s | PyTorch s | time eft÷PyTorch | eft MiB | PyTorch MiB | memory eft÷PyTorch |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    mib = lambda r: f"{r['peak_bytes'] / 2**20:.0f}" if r.get("peak_bytes") is not None else "—"
    secs = lambda r: f"{r['seconds']:.4f}" if r.get("seconds") else r.get("note", "—")[:60]
    gemm = {}
    for r in rows:
        e, t = r["eft_result"], r["torch_result"]
        mech = r["eft"] + "".join(f" {k}={v}" for k, v in r["params"].items())
        s += (
            f"| {r['label']} | {r['batch']} | {r['len']} | {mech} | {r['torch_form']} | {secs(e)} | {secs(t)} "
            f"| {ratio(e.get('seconds'), t.get('seconds'))} | {mib(e)} | {mib(t)} "
            f"| {ratio(e.get('peak_bytes'), t.get('peak_bytes'))} |\n"
        )
        if r["kind"] == "gemm":
            gemm = {"eft": e.get("gflops"), "torch": t.get("gflops")}
    flash = [r for r in rows if r["kind"] == "attention" and r["eft"] == "flash" and r["eft_result"].get("seconds")]
    if flash and gemm.get("eft"):
        best = max(g for g in gemm.values() if g)
        s += (
            f"\n## flash against the GEMM rate\n\nf32 GEMM {GEMM_SIZE}² in this run: eft (burn Flex) "
            f"{gemm['eft']:.1f} GFLOP/s, PyTorch {gemm['torch'] or 0:.1f} GFLOP/s. flash FLOPs counted as "
            "4·B·H·N²·D forward and 2.5× that backward.\n\n| N | flash GFLOP/s | share of the faster GEMM |\n|---|---|---|\n"
        )
        for r in flash:
            n = r["len"]
            flops = 4 * 4 * n * n * 64 * 3.5
            rate = flops / r["eft_result"]["seconds"] / 1e9
            s += f"| {n} | {rate:.1f} | {rate / best:.0%} |\n"
    return s


if __name__ == "__main__":
    main()

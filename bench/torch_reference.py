"""eft's LRA classifier written in plain PyTorch, for weights from `eft export --format pytorch`.

It covers what the reference needs to be obviously right: `full` attention (exact softmax), learned
or sinusoidal positions, CLS or mean pooling, pre-norm blocks, one sequence per row (not the paired
retrieval task). Anything else is refused by name rather than computed differently.

    python torch_reference.py RUN_DIR WEIGHTS.safetensors CHECK.safetensors

loads WEIGHTS with `load_state_dict(strict=True)`, runs the check batch that `eft export
--check-batch` wrote, compares the logits with eft's and prints one Markdown table row. Exit
status 1 if they differ by more than 1e-5.
"""

import argparse
import math
import sys
import tomllib
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

TOLERANCE = 1e-5
EPSILON = 1e-6  # eft's LayerNorm epsilon


class SelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal):
        super().__init__()
        self.query = nn.Linear(d_model, d_model, bias=False)
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.output = nn.Linear(d_model, d_model)
        self.n_heads, self.causal = n_heads, causal

    def forward(self, x, padding):
        b, n, d = x.shape
        h = self.n_heads

        def heads(proj):
            return proj(x).view(b, n, h, d // h).transpose(1, 2)  # [B, H, N, D]

        q, k, v = heads(self.query), heads(self.key), heads(self.value)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
        scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
        if self.causal:
            future = torch.ones(n, n, dtype=torch.bool).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        out = scores.softmax(-1) @ v
        return self.output(out.transpose(1, 2).reshape(b, n, d))


class FeedForward(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.up = nn.Linear(d_model, d_ff)
        self.down = nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.down(nn.functional.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention_norm = nn.LayerNorm(c["d_model"], eps=EPSILON)
        self.attention = SelfAttention(c["d_model"], c["n_heads"], c.get("causal", False))
        self.feed_forward_norm = nn.LayerNorm(c["d_model"], eps=EPSILON)
        self.feed_forward = FeedForward(c["d_model"], c["d_ff"])

    def forward(self, x, padding):
        x = x + self.attention(self.attention_norm(x), padding)
        return x + self.feed_forward(self.feed_forward_norm(x))


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["n_layers"]))
        self.final_norm = nn.LayerNorm(c["d_model"], eps=EPSILON)

    def forward(self, x, padding):
        for block in self.blocks:
            x = block(x, padding)
        return self.final_norm(x)


def sinusoid(n, d):
    """sin(p / 10000^(2i/d)) at column 2i, cos at 2i + 1, as eft computes it (in float64)."""
    p = torch.arange(n, dtype=torch.float64)[:, None]
    c = torch.arange(d)
    angle = p / 10000.0 ** ((c - c % 2).double() / d)
    return torch.where(c % 2 == 0, angle.sin(), angle.cos()).float()


class Embeddings(nn.Module):
    def __init__(self, c, vocab, max_len):
        super().__init__()
        d = c["d_model"]
        self.tokens = nn.Embedding(vocab, d)
        self.learned = c.get("positions", "learned") == "learned"
        if self.learned:
            self.positions = nn.Embedding(max_len, d)
        self.with_cls = c.get("pool", "cls") == "cls"
        if self.with_cls:
            self.cls = nn.Parameter(torch.zeros(1, 1, d))

    def forward(self, tokens, padding):
        x = self.tokens(tokens)
        if self.with_cls:
            x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], 1)
            padding = torch.cat([torch.zeros_like(padding[:, :1]), padding], 1)
        n, d = x.shape[1], x.shape[2]
        pos = self.positions.weight[:n] if self.learned else sinusoid(n, d)
        return x + pos, padding


class Classifier(nn.Module):
    """The model of `eft-model`'s Classifier, parameter for parameter."""

    def __init__(self, c, vocab, max_len, classes):
        super().__init__()
        kind = c.get("attention", {}).get("kind", "full")
        if kind != "full":
            raise SystemExit(f"the reference implements full attention only, not {kind}")
        if c.get("layer_attention"):
            raise SystemExit("the reference has one mechanism for every layer")
        if c.get("pool", "cls") not in ("cls", "mean"):
            raise SystemExit("the reference pools by cls or mean")
        self.embeddings = Embeddings(c, vocab, max_len)
        self.encoder = Encoder(c)
        self.head_hidden = nn.Linear(c["d_model"], c["d_ff"])
        self.head_out = nn.Linear(c["d_ff"], classes)
        self.mean = c.get("pool", "cls") == "mean"

    def forward(self, tokens, padding):
        x, padding = self.embeddings(tokens, padding)
        x = self.encoder(x, padding)
        if self.mean:
            real = (~padding).float()[..., None]
            pooled = (x * real).sum(1) / real.sum(1).clamp_min(1.0)
        else:
            pooled = x[:, 0]
        return self.head_out(torch.relu(self.head_hidden(pooled)))


def main():
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("run", type=Path)
    args.add_argument("weights", type=Path)
    args.add_argument("check", type=Path)
    a = args.parse_args()
    config = tomllib.loads((a.run / "config.toml").read_text())
    if config["task"].get("name") == "retrieval":
        raise SystemExit("the reference does not implement the paired retrieval task")
    state = load_file(a.weights)
    vocab = state["embeddings.tokens.weight"].shape[0]
    classes = state["head_out.weight"].shape[0]
    max_len = state["embeddings.positions.weight"].shape[0] if "embeddings.positions.weight" in state else 0
    model = Classifier(config["model"], vocab, max_len, classes)
    model.load_state_dict(state, strict=True)
    model.eval()
    check = load_file(a.check)
    tokens = check["tokens"].long()
    padding = check["padding"] > 0.5
    with torch.no_grad():
        logits = model(tokens, padding)
    want = check["logits"]
    diff = (logits - want).abs().max().item()
    ok = diff <= TOLERANCE
    line = (
        f"| {config['name']} | {config['model']['attention'].get('kind', 'full')} | "
        f"{tuple(tokens.shape)} | {classes} | {diff:.2e} | {'yes' if ok else 'NO'} |"
    )
    print(line)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

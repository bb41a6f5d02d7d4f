#!/usr/bin/env python3
"""`governance-sidecar policy generate` against `kernite policy generate`, side by side.

Takes the largest documents of the authoring corpus (tests/authoring/documents.jsonl.gz),
plus any JSON files named on the command line, and runs both commands on each in turn
(sidecar, Kernite, sidecar, Kernite, ...), whole processes as a user runs them, start-up
included. Prints the median wall and CPU seconds of each, their ratio, and whether the
three files each wrote are the same bytes. Needs a release build
(cargo build --release) and Kernite 0.1.6 importable by python3.

    python3 benches/authoring.py [--runs 5] [--largest 3] [EXTRA.json ...]
"""

import argparse
import gzip
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIDECAR = ROOT / "target/release/governance-sidecar"


def timed(argv):
    """Wall and CPU seconds of one run of argv (children's rusage), and its exit status."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    status = subprocess.run(argv, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, status


def files(directory):
    directory = Path(directory)
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())} if directory.exists() else {}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--largest", type=int, default=3)
    parser.add_argument("extra", nargs="*")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="authoring-bench-"))
    documents = []
    with gzip.open(ROOT / "tests/authoring/documents.jsonl.gz", "rt", encoding="utf-8") as corpus:
        entries = [json.loads(line) for line in corpus]
    entries = [e for e in entries if e["name"].startswith("real/")]
    # The largest that Kernite generates from (some real documents have $ref cycles).
    with gzip.open(ROOT / "tests/authoring/cases.jsonl.gz", "rt", encoding="utf-8") as cases:
        generated = set()
        for line in cases:
            case = json.loads(line)
            if case["name"].endswith("#generate") and (case.get("http") or {}).get("status") == 200:
                generated.add(case["document"])
    generated = [e for e in entries if e["name"] in generated]
    for entry in sorted(generated, key=lambda e: len(e["text"]), reverse=True)[: args.largest]:
        path = work / (entry["name"].replace("/", "__") + ".json")
        path.write_text(entry["text"], encoding="utf-8")
        documents.append(path)
    documents += [Path(p) for p in args.extra]

    print(f"{'document':<48} {'MB':>6} {'sidecar s':>10} {'Kernite s':>10} {'wall ratio':>10} {'CPU ratio':>10}  same files")
    for document in documents:
        ours, kernite = work / "ours", work / "kernite"
        sidecar_argv = [str(SIDECAR), "policy", "generate", "--schema", str(document), "--out-dir", str(ours)]
        kernite_argv = [sys.executable, "-m", "kernite.cli", "policy", "generate", "--schema", str(document),
                        "--out-dir", str(kernite)]
        # A warm-up, whose files and exit statuses are compared.
        same = timed(sidecar_argv)[2] == timed(kernite_argv)[2] and files(ours) == files(kernite)
        runs = [(timed(sidecar_argv), timed(kernite_argv)) for _ in range(args.runs)]
        wall = [statistics.median(r[i][0] for r in runs) for i in (0, 1)]
        cpu = [statistics.median(r[i][1] for r in runs) for i in (0, 1)]
        size = os.path.getsize(document) / 1e6
        print(f"{document.stem[:48]:<48} {size:>6.1f} {wall[0]:>10.3f} {wall[1]:>10.3f} "
              f"{wall[1] / wall[0]:>9.1f}x {cpu[1] / cpu[0]:>9.1f}x  {same}")
        shutil.rmtree(ours, ignore_errors=True), shutil.rmtree(kernite, ignore_errors=True)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()

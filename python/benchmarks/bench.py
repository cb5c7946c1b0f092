"""Measurements for docs/python.md (not a test): features/s from Python vs the CLI, and the
client's evaluate round trip vs raw httpx on the same server.

    python python/benchmarks/bench.py --bin target/release/preflight --url URL --api-key KEY [--n 300]

The CLI is timed over one process converting N copies of the file (`features --jsonl`), so
its start-up is amortized as a long-running pipeline's would be.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

import preflight

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("PREFLIGHT_DATA_DIR") or ROOT.parent / "shared" / "data")
DOC = DATA / "extractors/textract/analyze_document/multi-page-forms-samples-2-page.json"


def runs(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--url")
    ap.add_argument("--api-key")
    ap.add_argument("--n", type=int, default=300)
    a = ap.parse_args()
    n = a.n
    raw = DOC.read_bytes()
    parsed = json.loads(raw)
    tmp = Path(tempfile.mkdtemp())
    try:
        files = []
        for i in range(n):
            p = tmp / f"doc-{i:04d}.json"
            shutil.copyfile(DOC, p)
            files.append(str(p))
        preflight.features(DOC)  # warm-up
        # Each result is dropped once made, as a pipeline handles one document at a time (and
        # as the CLI's output goes to /dev/null); "kept" holds all N, which makes Python's
        # garbage collector walk the growing heap.
        def each(inputs):
            for x in inputs:
                preflight.features(x)

        cases = {
            "python features(path)": lambda: each(files),
            "python features(bytes)": lambda: each([raw] * n),
            "python features(bytes) kept": lambda: [preflight.features(raw) for _ in range(n)],
            "python features(dict)": lambda: each([parsed] * n),
            "cli features --jsonl": lambda: subprocess.run(
                [a.bin, "features", "--jsonl", *files], stdout=subprocess.DEVNULL, check=True),
        }
        for name, fn in cases.items():
            t = runs(fn)
            print(f"{name:28s} runs {' '.join(f'{x:.3f}' for x in t)} s  median {statistics.median(t):.3f} s"
                  f"  -> {n / statistics.median(t):.0f} docs/s")
    finally:
        shutil.rmtree(tmp)

    if a.url:
        feats = preflight.features(DOC)
        body = json.dumps(feats.request(), separators=(",", ":")).encode()
        headers = {"X-API-Key": a.api_key, "Content-Type": "application/json"}
        with preflight.Client(a.url, a.api_key) as c, httpx.Client() as h:
            c.evaluate(feats)
            h.post(a.url + "/v1/evaluate", content=body, headers=headers).raise_for_status()

            def client_loop():
                for _ in range(n):
                    c.evaluate(feats)

            def raw_loop():
                for _ in range(n):
                    r = h.post(a.url + "/v1/evaluate", content=body, headers=headers)
                    r.raise_for_status()
                    r.json()

            for name, fn in (("raw httpx post", raw_loop), ("Client.evaluate(Features)", client_loop),
                             ("raw httpx post (again)", raw_loop)):
                t = runs(fn)
                med = statistics.median(t)
                print(f"{name:28s} runs {' '.join(f'{x:.3f}' for x in t)} s  median {med:.3f} s"
                      f"  -> {med / n * 1000:.2f} ms per evaluation")


if __name__ == "__main__":
    main()

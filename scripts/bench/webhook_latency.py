#!/usr/bin/env python3
"""Commit → first delivery attempt of webhooks, on loopback (docs/BENCHMARKS.md).

Starts a receiver on 127.0.0.1, registers it as the tenant's endpoint, then sends N
evaluations one after another, each from an extractor vendor the tenant has never used, so
each raises a new `unknown_provider` alert (a built-in rule) and one delivery. The answer of
an evaluation is sent only after its commit, so (arrival at the receiver − answer received)
is the commit-to-first-attempt delay, give or take the answer's trip back. Prints p50/p90/p99.

Needs a running server whose SSRF guard lets loopback receivers through
(`WEBHOOK_ALLOWED_CIDRS=127.0.0.0/8`) and an API key with `evaluate` and `alerts:manage`.
Standard library only.

    scripts/bench/webhook_latency.py --url http://127.0.0.1:18500 --key pf_... --n 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

arrivals: dict[str, float] = {}
lock = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers["content-length"]))
        now = time.monotonic()
        event = json.loads(body)
        if event.get("type") == "alert.created":
            with lock:
                arrivals.setdefault(event["data"]["evaluation_id"], now)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def call(url: str, key: str, method: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(
        url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"X-API-Key": key, "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
    return json.loads(raw) if raw else {}


def document(vendor: str) -> dict:
    boxes = [
        {"x": 0.1, "y": 0.05 + 0.09 * i, "width": 0.8, "height": 0.05, "element_type": "text",
         "confidence": 0.95, "reading_order": i}
        for i in range(10)
    ]
    return {
        "structural_features": {
            "element_count": 10, "table_count": 0, "text_block_count": 10, "image_count": 0,
            "page_count": 1, "text_density": 0.4, "layout_complexity": 0.3, "column_count": 1,
            "has_header": False, "has_footer": False, "bounding_boxes": boxes,
        },
        "extractor_metadata": {"vendor": vendor, "model": "bench", "version": "1",
                               "confidence": 0.95, "latency_ms": 100.0},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--gap-ms", type=float, default=50.0, help="pause between evaluations")
    a = p.parse_args()

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{server.server_port}/hook"
    endpoint = call(a.url, a.key, "POST", "/v1/webhooks",
                    {"url": hook, "metrics": ["unknown_provider"]})
    answered: dict[str, float] = {}
    run = time.time_ns()
    try:
        for i in range(a.n):
            e = call(a.url, a.key, "POST", "/v1/evaluate", document(f"bench-{run}-{i}"))
            answered[e["evaluation_id"]] = time.monotonic()
            time.sleep(a.gap_ms / 1000)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if len(arrivals) >= len(answered):
                    break
            time.sleep(0.05)
    finally:
        call(a.url, a.key, "DELETE", f"/v1/webhooks/{endpoint['id']}")
    with lock:
        delays = sorted((arrivals[k] - t) * 1000 for k, t in answered.items() if k in arrivals)
    missing = len(answered) - len(delays)
    q = statistics.quantiles(delays, n=100)
    print(json.dumps({
        "evaluations": len(answered), "delivered": len(delays), "missing": missing,
        "p50_ms": round(q[49], 1), "p90_ms": round(q[89], 1), "p99_ms": round(q[98], 1),
        "max_ms": round(delays[-1], 1),
    }))


if __name__ == "__main__":
    main()

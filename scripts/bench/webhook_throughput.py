#!/usr/bin/env python3
"""Delivery throughput of the webhook worker from a full queue, on loopback (docs/BENCHMARKS.md).

For each of T tenants (the first is the key's, the others sign up), registers a receiver on
127.0.0.1 as an endpoint and sends N/T evaluations, each from an extractor vendor the tenant
has never used, so each raises one `unknown_provider` alert and one delivery; waits until all
arrived. Then it asks for every delivery again at once (POST .../deliveries/redeliver over
the whole run), which fills the queue with N due deliveries, and times how long the worker
takes to get all of them to the receiver. Events of one tenant without a template share one
ordering key and go one at a time; tenants are independent streams, so T=1 measures an
ordered stream and T=8 the worker's parallel throughput. Prints deliveries per second.

Needs a running server with `WEBHOOK_ALLOWED_CIDRS=127.0.0.0/8` and signup allowed (the
development default), and an admin API key. Standard library only.

    scripts/bench/webhook_throughput.py --url http://127.0.0.1:18500 --key pf_... --n 2000 --tenants 8
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from webhook_latency import document  # the same evaluation: layout metadata, a vendor

received = 0
lock = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without it a keep-alive connection stalls ~40 ms a request (Nagle + delayed ACK).
    disable_nagle_algorithm = True

    def do_POST(self):  # noqa: N802 (the stdlib's name)
        global received
        body = self.rfile.read(int(self.headers["content-length"]))
        if json.loads(body).get("type") == "alert.created":
            with lock:
                received += 1
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def call(url: str, auth: tuple[str, str], method: str, path: str, body: dict | None = None):
    req = urllib.request.Request(
        url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={auth[0]: auth[1], "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
    return json.loads(raw) if raw else {}


def wait_for(n: int, limit: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        with lock:
            if received >= n:
                return time.monotonic()
        time.sleep(0.005)
    raise SystemExit(f"only {received} of {n} deliveries arrived within {limit} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--tenants", type=int, default=8)
    a = p.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{server.server_port}/hook"
    tenants = [("X-API-Key", a.key)]
    for _ in range(a.tenants - 1):
        tag = uuid.uuid4().hex
        s = call(a.url, ("X-Nothing", ""), "POST", "/v1/auth/signup", {
            "tenant_name": f"bench {tag}", "email": f"bench-{tag}@example.com",
            "password": "correct horse battery staple 42"})
        tenants.append(("Authorization", f"Bearer {s['access_token']}"))
    endpoints = [call(a.url, t, "POST", "/v1/webhooks",
                      {"url": hook, "metrics": ["unknown_provider"]})["id"] for t in tenants]
    began = datetime.now(timezone.utc) - timedelta(minutes=1)
    run = time.time_ns()
    per = a.n // len(tenants)
    workers = [threading.Thread(target=lambda t=t, k=k: [
        call(a.url, t, "POST", "/v1/evaluate", document(f"bench-{run}-{k}-{i}"))
        for i in range(per)]) for k, t in enumerate(tenants)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    total = per * len(tenants)
    wait_for(total, 300)

    window = {"from": began.isoformat(),
              "to": (datetime.now(timezone.utc) + timedelta(minutes=1)).isoformat()}
    start = time.monotonic()
    queued = sum(call(a.url, t, "POST", f"/v1/webhooks/{e}/deliveries/redeliver", window)["queued"]
                 for t, e in zip(tenants, endpoints))
    done = wait_for(total + queued, 300)
    for t, e in zip(tenants, endpoints):
        call(a.url, t, "DELETE", f"/v1/webhooks/{e}")
    print(json.dumps({"tenants": len(tenants), "deliveries": queued,
                      "seconds": round(done - start, 2),
                      "deliveries_per_second": round(queued / (done - start), 1)}))


if __name__ == "__main__":
    main()

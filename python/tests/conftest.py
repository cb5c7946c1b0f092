"""Shared fixtures: the shared extractor data, the `preflight` binary, a real embedded server.

Environment (set by scripts/test-python):

* ``PREFLIGHT_DATA_DIR`` — the shared data (default ``../shared/data`` from the repo root).
  Missing data fails the run: these tests exist to compare against real outputs.
* ``PREFLIGHT_BIN`` — the ``preflight`` binary (default ``target/debug/preflight``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import pytest

ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    d = Path(os.environ.get("PREFLIGHT_DATA_DIR") or ROOT.parent / "shared" / "data")
    if not (d / "extractors").is_dir():
        raise RuntimeError(f"shared data not found at {d} (set PREFLIGHT_DATA_DIR)")
    return d


def extractor_files() -> List[Path]:
    """Every file under the shared data's extractors/, sorted (what the Rust data test reads)."""
    return sorted(p for p in (data_dir() / "extractors").rglob("*") if p.is_file())


def preflight_bin() -> Path:
    b = Path(os.environ.get("PREFLIGHT_BIN") or ROOT / "target" / "debug" / "preflight")
    if not b.is_file():
        raise RuntimeError(f"preflight binary not found at {b} (set PREFLIGHT_BIN)")
    return b


def cli_features(files: List[Path], *flags: str) -> Dict[str, object]:
    """``preflight features --jsonl [flags] FILE...``: path → printed object (without
    ``file``), or path → the error message the CLI printed for it."""
    proc = subprocess.run(
        [str(preflight_bin()), "features", "--jsonl", *flags, *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    out: Dict[str, object] = {}
    for line in proc.stdout.splitlines():
        doc = json.loads(line)
        out[doc.pop("file")] = doc
    for line in proc.stderr.splitlines():
        for f in files:
            prefix = f"preflight: {f}: "
            if line.startswith(prefix):
                out[str(f)] = line[len(prefix):]
    missing = [str(f) for f in files if str(f) not in out]
    assert not missing, f"CLI gave neither output nor error for {missing[:3]}; stderr: {proc.stderr[:500]}"
    assert proc.returncode in (0, 1), proc.stderr
    return out


class Server:
    """A real `preflight serve` on an embedded SQLite database in a temporary directory."""

    def __init__(self, env: Optional[Dict[str, str]] = None):
        self.dir = Path(tempfile.mkdtemp(prefix="preflight-pytest-"))
        self.log_path = self.dir / "server.log"
        full_env = dict(os.environ)
        for k in ("DATABASE_URL", "REDIS_URL", "PREFLIGHT_API_KEY", "PREFLIGHT_URL"):
            full_env.pop(k, None)
        full_env.update(
            {
                # The server's own data directory (the same variable names the shared data for
                # the tests; the child gets its temporary one).
                "PREFLIGHT_DATA_DIR": str(self.dir / "data"),
                "API_HOST": "127.0.0.1",
                "API_PORT": "0",
                "LOG_FORMAT": "json",
                "LOG_LEVEL": "info",
                "RATE_LIMIT_PER_MINUTE": "1000000",
                # Signups (the `tenant` fixture) are unauthenticated requests, limited per IP.
                "RATE_LIMIT_UNAUTHENTICATED": "1000000",
            }
        )
        full_env.update(env or {})
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(preflight_bin()), "serve"],
            cwd=self.dir,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.url, self.api_key = self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        key = address = None
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            m = re.search(r"export PREFLIGHT_API_KEY=(\S+)", text)
            if m:
                key = m.group(1)
            for line in text.splitlines():
                if "preflight listening" in line:
                    try:
                        doc = json.loads(line)
                        # tracing's JSON lines put fields at the top level or under "fields".
                        address = doc.get("address") or doc.get("fields", {}).get("address")
                    except ValueError:
                        pass
            if key and address:
                return f"http://{address}", key
            if self.proc.poll() is not None:
                raise RuntimeError(f"preflight serve exited {self.proc.returncode}:\n{text[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"preflight serve not ready in {timeout}s:\n{text[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


@pytest.fixture()
def client(server):
    import preflight

    with preflight.Client(server.url, server.api_key) as c:
        yield c


ALL_SCOPES = ("evaluate", "read", "templates:write", "keys:manage", "admin", "alerts:manage")


class Tenant:
    """A tenant of its own on the session's server, signed up through the API (signup is on
    in development), so a test can count its evaluations, queue and suggestions exactly
    and another tenant's ids can be tried against it."""

    def __init__(self, server: Server):
        import httpx

        self.server = server
        tag = uuid.uuid4().hex[:12]
        r = httpx.post(server.url + "/v1/auth/signup", json={
            "tenant_name": f"pytest {tag}",
            "email": f"admin-{tag}@example.com",
            "password": "correct horse battery staple 42",
        })
        assert r.status_code == 201, r.text
        self.token = r.json()["access_token"]
        self.api_key = self.mint_key("pytest admin", ALL_SCOPES)

    def mint_key(self, name: str, scopes: Sequence[str]) -> str:
        """A new API key of this tenant (another identity: the audit trail and the review
        queue's ``claimed_by`` tell it apart)."""
        import httpx

        r = httpx.post(self.server.url + "/v1/api-keys",
                       headers={"Authorization": f"Bearer {self.token}"},
                       json={"name": name, "scopes": list(scopes)})
        assert r.status_code == 201, r.text
        return r.json()["key"]


@pytest.fixture()
def tenant(server) -> Tenant:
    return Tenant(server)

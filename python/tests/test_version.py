"""The package version is the Cargo workspace's; the lock files agree."""

import re

import preflight
from conftest import ROOT


def _workspace_version():
    text = (ROOT / "Cargo.toml").read_text()
    section = text.split("[workspace.package]", 1)[1]
    return re.search(r'^version\s*=\s*"([^"]+)"', section, re.M).group(1)


def test_version_is_the_workspace_version():
    assert preflight.__version__ == _workspace_version()
    crate = (ROOT / "python/Cargo.toml").read_text()
    assert re.search(r'^version\s*=\s*"([^"]+)"', crate, re.M).group(1) == _workspace_version()
    from importlib.metadata import version

    assert version("preflight") == _workspace_version()


def _lock(path):
    pairs = re.findall(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', path.read_text())
    out = {}
    for name, version in pairs:
        out.setdefault(name, set()).add(version)
    return out


def test_lock_files_agree():
    # The adapters and engine must be built from the same dependency versions as the CLI:
    # every version the Python build uses of a package the workspace also locks is one the
    # workspace locks (a package may be locked in several versions).
    ws, py = _lock(ROOT / "Cargo.lock"), _lock(ROOT / "python/Cargo.lock")
    shared = set(ws) & set(py)
    assert {"serde_json", "serde", "sha2", "quick-xml", "preflight-adapters"} <= shared
    assert {n: (ws[n], py[n]) for n in shared if not py[n] <= ws[n]} == {}
    # Only PyO3 and the crate itself are new.
    assert set(py) - set(ws) <= {"preflight-python", "pyo3", "pyo3-build-config", "pyo3-ffi",
                                 "pyo3-macros", "pyo3-macros-backend", "target-lexicon"}

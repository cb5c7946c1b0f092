"""Type stubs of the native module (Rust, PyO3). Use the ``preflight`` package's API instead."""

from typing import List, Optional, Tuple

VERSION: str
"""The package version (the Cargo workspace version)."""
ENGINE_VERSION: str
"""preflight-engine's decision-logic version (part of every replay hash)."""

class AdapterError(ValueError):
    kind: str
    unrecognized: bool

class EngineError(Exception):
    errors: List[Tuple[str, str]]

def features_json(
    data: bytes,
    from_: Optional[str] = None,
    page_width: Optional[float] = None,
    page_height: Optional[float] = None,
) -> str:
    """The adapters' output for one extractor output, as JSON text."""

class Engine:
    def __init__(self, templates_json: str) -> None: ...
    def __len__(self) -> int: ...
    def evaluate_json(self, request_json: str) -> str:
        """The engine's evaluation of one evaluate-request body, as JSON text."""

"""Only layout metadata leaves the process: no text of any shared extractor sample appears in
what the package returns (features, errors, decisions) or sends (every request body).

The document text is collected independently of the adapters, as the Rust data test does
(crates/preflight-adapters/tests/common/mod.rs): JSON string values under text keys,
PaddleOCR strings, TSV column 12, hOCR text between tags. A leak is a source line (with a
space) found verbatim, or a 4+ character source word found as a token, outside the package's
and the server's own vocabulary (taken from their source code) and the extractor's identity.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

import preflight
from conftest import ROOT, extractor_files
from test_client import Recording

TEXT_KEYS = {"Text", "text", "content", "description", "valueString", "valuePhoneNumber",
             "valueDate", "valueTime", "valueCountryRegion", "mentionText", "normalizedValue",
             "DetectedText"}
IDENTITY_KEYS = {"AnalyzeDocumentModelVersion", "DetectDocumentTextModelVersion",
                 "AnalyzeExpenseModelVersion", "AnalyzeIDModelVersion", "version", "apiVersion",
                 "modelId", "docType", "processor"}
TOKEN = re.compile(r"[^\W_]+")


def tokens(s):
    return TOKEN.findall(s)


def _vocabulary():
    """Every word of a string literal in the adapters', engine's and server's evaluation
    code and of this package's sources: what the software itself may write."""
    words = set()
    sources = list((ROOT / "crates/preflight-adapters/src").glob("*.rs"))
    sources += list((ROOT / "crates/preflight-engine/src").glob("*.rs"))
    sources += [ROOT / "crates/preflight-server/src/http/evaluate.rs",
                ROOT / "crates/preflight-server/src/http/templates.rs",
                ROOT / "crates/preflight-server/src/error.rs"]
    sources += list((ROOT / "python/preflight").glob("*.py"))
    for f in sources:
        for lit in re.findall(r'"((?:[^"\\\n]|\\.)*)"', f.read_text()):
            words.update(t.lower() for t in tokens(lit))
    # The API's field names (processing_time_ms, created_at, ...): fixed by the schema.
    for name in preflight.__all__:
        model = getattr(preflight, name)
        for field in getattr(model, "model_fields", {}):
            words.update(t.lower() for t in tokens(field))
    return words


VOCABULARY = _vocabulary()


class Source:
    def __init__(self, path: Path):
        self.strings = set()
        self.identity = set()
        raw = path.read_bytes()
        name = path.name
        if name.endswith(".tsv"):
            for line in raw.decode("utf-8", "replace").splitlines()[1:]:
                cols = line.split("\t")
                if len(cols) > 11:
                    self._add(cols[11])
        elif name.endswith((".hocr", ".html")):
            s = raw.decode("utf-8", "replace")
            for piece in re.findall(r">([^<]*)", s):
                self._add(piece)
            m = re.search(r"ocr-system[^>]*content=['\"]([^'\"]*)", s)
            if m:
                self.identity.update(tokens(m.group(1)))
        else:
            try:
                v = json.loads(raw.decode("utf-8-sig"))
            except ValueError:
                for line in raw.decode("utf-8", "replace").splitlines():
                    self._add(line)
                return
            if isinstance(v, list):
                self._strings(v)
            else:
                self._walk(v, None)

    def _add(self, s):
        s = s.strip()
        if len(s) >= 4:
            self.strings.add(s)

    def _strings(self, v):
        if isinstance(v, str):
            self._add(v)
        elif isinstance(v, list):
            for x in v:
                self._strings(x)

    def _walk(self, v, key):
        if isinstance(v, dict):
            for k, x in v.items():
                self._walk(x, k)
        elif isinstance(v, list):
            for x in v:
                self._walk(x, key if key in TEXT_KEYS else None)
        elif isinstance(v, str):
            if key in TEXT_KEYS:
                self._add(v)
            elif key in IDENTITY_KEYS:
                self.identity.update(tokens(v))

    def assert_absent(self, label, text, allowed=()):
        ok = VOCABULARY | {t.lower() for t in self.identity} | {a.lower() for a in allowed}
        out_tokens = set(tokens(text))
        for s in self.strings:
            if " " in s:
                assert s not in text, f"{label}: a source line leaked"
            for t in tokens(s):
                if len(t) >= 4 and any(c.isalpha() for c in t) and t.lower() not in ok:
                    assert t not in out_tokens, f"{label}: source word {t!r} leaked"


def test_the_check_can_fail():
    src = Source(next(f for f in extractor_files() if f.name.endswith(".tsv")))
    word = next(t for s in src.strings for t in tokens(s)
                if len(t) >= 4 and t.isalpha() and t.lower() not in VOCABULARY)
    try:
        src.assert_absent("planted", json.dumps({"x": word}))
    except AssertionError:
        return
    raise AssertionError("a planted source word was not detected")


def test_nothing_returned_or_sent_contains_document_text(server):
    files = extractor_files()
    sources = {f: Source(f) for f in files}
    assert sum(len(s.strings) for s in sources.values()) > 10000  # the check has text to look for
    convertible = []
    for f in files:
        try:
            out = preflight.features(f)
        except preflight.AdapterError as e:
            sources[f].assert_absent(f"{f}: error", str(e))
            continue
        sources[f].assert_absent(f"{f}: features", out.model_dump_json())
        convertible.append(f)
    assert len(convertible) == 219

    rec = Recording()
    answers = []

    def keep(response):
        response.read()
        answers.append(response)

    http = httpx.Client(transport=rec, event_hooks={"response": [keep]})
    # Each document is checked against what was sent and received for it: a batch holds other
    # documents, whose extractor identity (e.g. a model named "receipt") may be this one's text.
    per_file = {}

    def exchange():
        r, a = rec.requests[-1], answers[-1]
        head = str(r.url) + repr({k: v for k, v in r.headers.items() if k != "x-api-key"})
        return r, a, head

    with preflight.Client(server.url, server.api_key, http_client=http) as c:
        c.register_template(convertible[0], template_id="py-privacy", name="privacy")
        r, a, head = exchange()
        per_file[convertible[0]] = [r.content.decode(), a.content.decode(), head]
        for i in range(0, len(convertible), 10):
            chunk = convertible[i:i + 10]
            c.evaluate_batch(chunk, pipeline_id="py-privacy")
            r, a, head = exchange()
            sent_docs = json.loads(r.content)["documents"]
            got = json.loads(a.content)["results"]
            assert len(sent_docs) == len(got) == len(chunk)
            for f, sd, g in zip(chunk, sent_docs, got):
                per_file.setdefault(f, []).extend([json.dumps(sd), json.dumps(g), head])
        single = c.evaluate(convertible[1])
        per_file[convertible[1]].extend(x.content.decode() if hasattr(x, "content") else x
                                        for x in exchange())
        c.get_evaluation(single.evaluation_id)
        per_file[convertible[1]].append(answers[-1].content.decode())
        c.get_template("py-privacy", include_exemplars=True)
        per_file[convertible[0]].append(answers[-1].content.decode())
    http.close()
    # Words of the fixed headers httpx and the client add (Connection: keep-alive, ...).
    allowed = {"privacy", "py"} | {
        t for r in rec.requests for k in ("connection", "accept-encoding", "accept",
                                          "content-type", "user-agent", "host")
        for t in tokens(r.headers.get(k, ""))}
    assert set(per_file) == set(convertible)
    for f, texts in per_file.items():
        sources[f].assert_absent(f"{f}: sent or received", "\n".join(texts), allowed)
    assert all("x-api-key" in {k.lower() for k in r.headers} for r in rec.requests)

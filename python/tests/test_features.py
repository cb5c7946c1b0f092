"""preflight.features() gives what `preflight features` prints, for every shared extractor file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import preflight
from conftest import cli_features, data_dir, extractor_files

FILES = extractor_files()


@pytest.fixture(scope="module")
def cli_detected():
    return cli_features(FILES)


def test_the_data_is_all_there():
    # The shared data's README counts 260 files under extractors/; a partial copy would make
    # the comparisons below vacuous.
    assert len(FILES) >= 250


def _compare(ours, theirs, where):
    assert isinstance(theirs, dict), f"{where}: the CLI failed ({theirs}) but the package did not"
    got = ours.to_dict()
    # Same values and the same JSON types (an int where the CLI printed an int, ...).
    assert json.dumps(got, sort_keys=True) == json.dumps(theirs, sort_keys=True), where


def test_paths_equal_the_cli_for_every_file(cli_detected):
    converted = failed = 0
    for f in FILES:
        expected = cli_detected[str(f)]
        if isinstance(expected, str):
            with pytest.raises(preflight.AdapterError) as e:
                preflight.features(f)
            assert str(e.value) == expected, f
            failed += 1
        else:
            _compare(preflight.features(f), expected, f)
            _compare(preflight.features(str(f)), expected, f)
            converted += 1
    # docs/features.md: 219 files convert, the rest are refused (labels, manifests, no layout).
    assert converted == 219 and failed == len(FILES) - 219, (converted, failed)


def test_bytes_text_and_parsed_json_equal_the_cli(cli_detected):
    for f in FILES:
        expected = cli_detected[str(f)]
        if isinstance(expected, str):
            continue
        raw = f.read_bytes()
        _compare(preflight.features(raw), expected, f)
        _compare(preflight.features(bytearray(raw)), expected, f)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            continue
        _compare(preflight.features(text), expected, f)
        if text.lstrip()[:1] in ("{", "["):
            _compare(preflight.features(json.loads(text)), expected, f)


def test_forced_formats_equal_cli_from(cli_detected):
    by_format = {}
    for f in FILES:
        expected = cli_detected[str(f)]
        if isinstance(expected, dict):
            by_format.setdefault(expected["format"], []).append(f)
    assert set(by_format) == {"textract", "azure", "google", "tesseract-tsv", "hocr", "paddleocr"}
    for fmt, files in by_format.items():
        cli = cli_features(files, "--from", fmt)
        for f in files:
            _compare(preflight.features(f, from_=fmt), cli[str(f)], (fmt, f))
    # `tesseract` is settled by content, as on the command line, and refuses other formats.
    tess = by_format["tesseract-tsv"][:3] + by_format["hocr"][:3] + by_format["textract"][:2]
    cli = cli_features(tess, "--from", "tesseract")
    for f in tess:
        if isinstance(cli[str(f)], str):
            with pytest.raises(preflight.AdapterError) as e:
                preflight.features(f, from_="tesseract")
            assert e.value.kind == "not_tesseract"
            # The CLI prefixes the flag it was given.
            assert cli[str(f)] == f"--from {e.value}"
        else:
            _compare(preflight.features(f, from_="tesseract"), cli[str(f)], f)


def test_page_size_equals_cli_page_width_and_height(cli_detected):
    paddle = [f for f in FILES if isinstance(cli_detected[str(f)], dict)
              and cli_detected[str(f)]["format"] == "paddleocr"][:5]
    assert paddle
    cli = cli_features(paddle, "--page-width", "1700", "--page-height", "2200")
    for f in paddle:
        ours = preflight.features(f, page_size=(1700, 2200))
        _compare(ours, cli[str(f)], f)
        # ... and the option changes something, so this comparison can fail.
        assert ours.to_dict() != cli_detected[str(f)]


def test_errors_are_python_exceptions_with_the_adapters_message():
    with pytest.raises(preflight.AdapterError) as e:
        preflight.features(b'{"foo": 1}')
    assert e.value.kind == "unrecognized" and e.value.unrecognized
    assert str(e.value).startswith("unrecognized input:")
    with pytest.raises(preflight.AdapterError) as e:
        preflight.features(b'{"Blocks": 3}', from_="textract")
    assert e.value.kind == "malformed" and not e.value.unrecognized
    with pytest.raises(preflight.AdapterError) as e:
        preflight.features(b"{}", from_="pdf")
    assert e.value.kind == "unknown_format_name" and "(or tesseract)" in str(e.value)
    with pytest.raises(preflight.AdapterError) as e:
        preflight.features(b"[]", from_="paddleocr", page_size=(0, 10))
    assert e.value.kind == "invalid_option"
    with pytest.raises(preflight.UnsupportedInputError):
        preflight.features(object())
    with pytest.raises(FileNotFoundError):
        preflight.features("no-such-file.json")
    with pytest.raises(preflight.AdapterError) as e:
        preflight.features({"Blocks": [], "x": float("nan")})
    assert e.value.kind == "malformed"
    assert isinstance(e.value, preflight.PreflightError) and isinstance(e.value, ValueError)


def test_typed_result():
    f = data_dir() / "extractors/textract/analyze_document/multi-page-forms-samples-2-page.json"
    r = preflight.features(f)
    assert r.format == "textract" and r.pages == 2
    assert r.structural_features.page_count == 2
    assert len(r.structural_features.bounding_boxes) == r.structural_features.element_count
    assert all(isinstance(b, preflight.BoundingBox) for b in r.structural_features.bounding_boxes)
    assert r.extractor_metadata.vendor == "aws-textract"
    assert len(r.layout_fingerprint) == 64

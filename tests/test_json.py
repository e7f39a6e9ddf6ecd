"""``azml_client._json.loads``: orjson first, the stdlib's reading of NaN and Infinity when orjson refuses."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from azml_client import _json


@pytest.mark.parametrize(
    "data", [b'{"a": [1, 2.5, "x", null, true]}', '{"a": 1}', bytearray(b"[1]"), memoryview(b"[2]")]
)
def test_what_orjson_reads_orjson_reads(data: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = orjson.loads(data)

    def no_stdlib(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the stdlib was called for JSON orjson reads")

    monkeypatch.setattr(json, "loads", no_stdlib)
    assert _json.loads(data) == expected


@pytest.mark.parametrize(
    ("data", "check"),
    [
        (b"NaN", math.isnan),
        (b"Infinity", lambda value: value == math.inf),
        (b"-Infinity", lambda value: value == -math.inf),
        (
            b'{"logprobs": [NaN, -Infinity, 1.5]}',
            lambda v: math.isnan(v["logprobs"][0]) and v["logprobs"][1:] == [-math.inf, 1.5],
        ),
        ('[{"0": "x", "score": Infinity}]', lambda v: v == [{"0": "x", "score": math.inf}]),
        (memoryview(b"[NaN]"), lambda v: math.isnan(v[0])),
        (b"[18446744073709551616]", lambda v: v == [2**64]),  # beyond 64 bits, as json.loads reads it
    ],
)
def test_what_only_the_stdlib_reads(data: Any, check: Any) -> None:
    assert check(_json.loads(data))


@pytest.mark.parametrize(
    "data",
    [b"", b"   ", b"{oops", b"<html>", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000, "nan", b"[1]x"],
)
def test_what_neither_reads_raises_orjsons_error(data: Any) -> None:
    with pytest.raises(orjson.JSONDecodeError) as info:
        _json.loads(data)
    assert isinstance(info.value, json.JSONDecodeError)
    assert isinstance(info.value, ValueError)
    assert _json.JSONDecodeError is orjson.JSONDecodeError


def test_nesting_up_to_orjsons_limit_is_read() -> None:
    assert _json.loads(b"[" * 1024 + b"]" * 1024) is not None


finite = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=15,
)


@given(value=finite)
def test_it_reads_what_json_dumps_writes(value: Any) -> None:
    assert _json.loads(json.dumps(value)) == json.loads(json.dumps(value))

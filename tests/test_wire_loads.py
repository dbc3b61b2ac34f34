"""``wire.loads`` refuses a repeated key exactly where the standard library's pair hook
does, and otherwise returns what orjson returns: generated documents, written with and
without repeated keys, colons in strings, ``\\u`` escapes and whitespace."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.wire import DuplicateKey, _refuse_duplicates, loads

KEYS = st.sampled_from(["a", "b", "t:x", ":", "id", "é", "type"])
TEXT = st.text(alphabet=st.sampled_from(list('ab:é"\\\x00 /')), max_size=6)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), TEXT)


def write(value: Any, draw: st.DrawFn) -> str:
    """``value`` as JSON text, pairs possibly repeated, strings possibly escaped."""
    if isinstance(value, list) and value and value[0] == "__pairs__":
        pairs = [f"{write_str(k, draw)}: {write(v, draw)}" for k, v in value[1:]]
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, list):
        return "[" + ",".join(write(v, draw) for v in value) + "]"
    if isinstance(value, str):
        return write_str(value, draw)
    return json.dumps(value)


def write_str(text: str, draw: st.DrawFn) -> str:
    return json.dumps(text, ensure_ascii=draw(st.booleans()))


def values(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return SCALARS
    inner = values(depth - 1)
    objects = st.lists(st.tuples(KEYS, inner), max_size=4).map(lambda ps: ["__pairs__", *ps])
    return st.one_of(SCALARS, st.lists(inner, max_size=3), objects)


@st.composite
def documents(draw: st.DrawFn) -> str:
    return write(draw(values(3)), draw)


def reference(raw: bytes) -> Any:
    """What ``loads`` must do: refuse a repeated key, else orjson's value."""
    json.loads(raw, object_pairs_hook=_refuse_duplicates)
    return orjson.loads(raw)


@settings(max_examples=600, deadline=None)
@given(documents(), st.booleans())
def test_loads_refuses_repeated_keys_exactly_like_the_pair_hook(text: str, as_bytes: bool) -> None:
    raw = text.encode()
    try:
        expected = reference(raw)
    except DuplicateKey:
        with pytest.raises(DuplicateKey):
            loads(raw if as_bytes else text)
        return
    assert loads(raw if as_bytes else text) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1, "a": 2}',
        b'{"a": "x:y", "a": "z"}',
        b'{"a": {"b": 1, "b": 1}}',
        b'[{"a": 1}, {"c": ":", "c": ":"}]',
        b'{"a": 1, "\\u0061": 2}',
        b'{"t:x": 1, "t\\u003ax": 2}',
    ],
)
def test_a_repeated_key_is_refused(raw: bytes) -> None:
    with pytest.raises(DuplicateKey):
        loads(raw)
    with pytest.raises(DuplicateKey):
        loads(raw.decode())


def test_a_repeated_key_deeper_than_orjson_writes_is_refused() -> None:
    deep = b"[" * 300 + b'{"a": 1, "a": 2}' + b"]" * 300
    with pytest.raises(DuplicateKey):
        loads(deep)
    assert loads(b"[" * 300 + b'{"a": 1, "b": 2}' + b"]" * 300)

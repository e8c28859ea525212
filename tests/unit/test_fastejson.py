"""fastejson, the relay's C renderer: it renders what the general path renders, or falls back.

The general path is pymongo's decoder with `RENDER_OPTIONS`, then orjson and json_util. fastejson
may be stricter than it (fall back where pymongo succeeds) but never laxer: bytes pymongo rejects
must raise `FallBackError`, never become JSON.
"""

import contextlib
import datetime as dt
import json
import math
import random
import sys
import tracemalloc
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import fastejson
import orjson
import pytest
from bson import (
    DBRef,
    Decimal128,
    Int64,
    MaxKey,
    MinKey,
    ObjectId,
    Regex,
    Timestamp,
    decode,
    encode,
)
from bson.binary import Binary
from bson.code import Code
from bson.datetime_ms import DatetimeMS
from bson.errors import InvalidBSON
from bson.raw_bson import RawBSONDocument
from hypothesis import given, settings
from hypothesis import strategies as st

from change_contract.ejson import CODEC_OPTIONS, RENDER_OPTIONS, decoded, render
from tests.unit.bson_strategies import documents_of

FallBackError = fastejson.FallBackError

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# The dates Python's datetime holds (0001-01-01 to 9999-12-31T23:59:59.999Z), in BSON milliseconds.
MIN_DATETIME_MS, MAX_DATETIME_MS = -62_135_596_800_000, 253_402_300_799_999
# decimal128 (BID): both bits set mean NaN, infinity or the large form, which drivers never write.
BID_LARGE_FORM = 0x6000_0000_0000_0000
BID_MAX_COEFFICIENT = 10**34 - 1


# --- The two paths -------------------------------------------------------------------------------


def general_path(raw: bytes) -> bytes:
    """What the contract renders when fastejson falls back: the reference for every comparison."""
    return render(decoded(RawBSONDocument(raw, CODEC_OPTIONS)))


def general_path_or_none(raw: bytes) -> bytes | None:
    try:
        return general_path(raw)
    except Exception:  # noqa: BLE001 - any error: what it cannot render, fastejson must not either
        return None


def fast_render(raw: bytes) -> bytes | None:
    """fastejson's JSON, or None when it falls back (any other exception fails the test)."""
    try:
        rendered: bytes = fastejson.render(raw)
    except FallBackError:
        return None
    return rendered


def fast_scan(raw: bytes, rendered: frozenset[str]) -> dict[str, Any] | None:
    """fastejson's top level with rendered fields as raw JSON bytes, or None when it falls back."""
    return fast_scan_with(raw, rendered, bytes)


def fast_scan_with(
    raw: bytes, rendered: frozenset[str], fragment: Callable[[bytes], Any]
) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = fastejson.scan(raw, rendered, fragment, Timestamp)
    except FallBackError:
        return None
    return result


def json_value(text: bytes) -> Any:
    """The JSON value of `text`, with key order and number types kept: 1 and 1.0 differ, as do
    0.0 and -0.0, while 1.5e-07 and 1.5e-7 (Python's and orjson's spellings) are the same.

    Duplicate keys collapse as pymongo collapses them: first position, last value.
    """
    return _typed(json.loads(text))


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        return [(key, _typed(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [_typed(item) for item in value]
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def same_decoded(ours: Any, theirs: Any) -> bool:
    """Whether a value `scan` decoded is the one pymongo decodes with `RENDER_OPTIONS`, type too.

    pymongo's Int64 counts as an int (scan gives plain ints); everything else must match exactly.
    """
    if isinstance(theirs, dict):
        return (
            type(ours) is dict
            and list(ours) == list(theirs)
            and all(same_decoded(ours[key], theirs[key]) for key in theirs)
        )
    if isinstance(theirs, list):
        return (
            type(ours) is list
            and len(ours) == len(theirs)
            and all(same_decoded(a, b) for a, b in zip(ours, theirs, strict=True))
        )
    if theirs is None or isinstance(theirs, bool):
        return ours is theirs
    if isinstance(theirs, int):
        return type(ours) is int and ours == theirs
    if isinstance(theirs, float):
        return type(ours) is float and repr(ours) == repr(theirs)
    if isinstance(theirs, dt.datetime):
        return type(ours) is dt.datetime and ours.tzinfo is None and ours == theirs
    if type(theirs) in (str, Timestamp):
        return type(ours) is type(theirs) and ours == theirs
    return False


# --- What must fall back -------------------------------------------------------------------------


def decimal_falls_back(bid: bytes) -> bool:
    """NaN, infinities, the large form and coefficients over 34 digits: left to pymongo."""
    bits = int.from_bytes(bid, "little")
    large_form = (bits >> 64) & BID_LARGE_FORM == BID_LARGE_FORM
    return large_form or bits & ((1 << 113) - 1) > BID_MAX_COEFFICIENT


def render_falls_back(value: Any) -> bool:
    """Whether `render` must fall back for a document holding `value`, by fastejson's contract."""
    if isinstance(value, Regex | Code | MinKey | MaxKey | DBRef):
        return True
    if isinstance(value, Binary):
        return value.subtype == 2  # the old binary layout
    if isinstance(value, Decimal128):
        return decimal_falls_back(value.bid)
    if isinstance(value, Mapping):
        # pymongo reads a document with `$ref` as a DBRef; fastejson leaves all of them to it.
        return "$ref" in value or any(render_falls_back(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(render_falls_back(item) for item in value)
    return False


def scan_falls_back(value: Any) -> bool:
    """Whether `scan` must fall back when it decodes a top-level field holding `value`."""
    if value is None or isinstance(value, bool | int | Timestamp | dt.datetime):
        return False
    if isinstance(value, Code):
        return True
    if isinstance(value, str):
        return False
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, DatetimeMS):
        return not MIN_DATETIME_MS <= int(value) <= MAX_DATETIME_MS
    if isinstance(value, Mapping):
        return "$ref" in value or any(scan_falls_back(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(scan_falls_back(item) for item in value)
    return True  # ObjectId, binary, decimal128, regex, code, MinKey, MaxKey, DBRef


def has_finite_float(value: Any) -> bool:
    """Whether `value` holds a finite double, the one value the two paths may spell differently."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return any(has_finite_float(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(has_finite_float(item) for item in value)
    return False


# --- BSON built by hand, for what pymongo does not encode from Python values ---------------------


def int32(value: int) -> bytes:
    return value.to_bytes(4, "little", signed=True)


def bson_document(*elements: bytes) -> bytes:
    body = b"".join(elements)
    return int32(len(body) + 5) + body + b"\x00"


def bson_element(kind: int, key: bytes, payload: bytes) -> bytes:
    return bytes([kind]) + key + b"\x00" + payload


def bson_string(text: bytes) -> bytes:
    return int32(len(text) + 1) + text + b"\x00"


def symbol_document(text: str) -> RawBSONDocument:
    """A document holding a symbol (deprecated; pymongo reads it as a str)."""
    return RawBSONDocument(bson_document(bson_element(0x0E, b"sym", bson_string(text.encode()))))


UNDEFINED_DOCUMENT = RawBSONDocument(bson_document(bson_element(0x06, b"undef", b"")))


def db_pointer_document(oid: bytes) -> RawBSONDocument:
    """A document holding a DBPointer (deprecated; pymongo reads it as a DBRef)."""
    payload = bson_string(b"db.coll") + oid
    return RawBSONDocument(bson_document(bson_element(0x0C, b"ptr", payload)))


# --- Strategies ----------------------------------------------------------------------------------

# Text with what JSON must escape (quotes, backslashes, control characters) and what it must not
# (DEL, line separators, BOM, astral characters) well represented.
awkward_characters = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from('"\\\x01\x08\t\n\x0b\x0c\r\x1f\x7f\x80\u2028\u2029\ufeff\uffff\U0010ffff'),
)
keys = st.one_of(
    st.text(awkward_characters, max_size=8).filter(lambda key: "\x00" not in key),
    st.sampled_from(["_id", "$ref", "$id", "$db", "$oid", "$date", "a.b", "", "é", '"', "\\"]),
)
strings = st.text(st.one_of(awkward_characters, st.just("\x00")), max_size=20)

floats = st.one_of(
    st.floats(),
    st.sampled_from(
        [0.0, -0.0, 5e-324, 1.7976931348623157e308, 1e16, 1e-7, 1.5e-7, 0.1, 1e22, 123456789.125]
    ),
)
integers = st.one_of(
    st.integers(INT32_MIN, INT32_MAX),
    st.integers(INT64_MIN, INT64_MAX),
    st.sampled_from([INT32_MIN, INT32_MAX, INT64_MIN, INT64_MAX, 0, -1]),
    st.integers(INT64_MIN, INT64_MAX).map(Int64),  # int64 even when small
)
date_edges = [
    MIN_DATETIME_MS - 1,
    MIN_DATETIME_MS,
    -1001,
    -1000,
    -1,
    0,
    1,
    999,
    1000,
    MAX_DATETIME_MS,
    MAX_DATETIME_MS + 1,
    INT64_MIN,
    INT64_MAX,
]
dates = st.one_of(
    st.datetimes(timezones=st.sampled_from([dt.UTC, None])),
    st.integers(MIN_DATETIME_MS - 10**6, MAX_DATETIME_MS + 10**6).map(DatetimeMS),
    st.integers(INT64_MIN, INT64_MAX).map(DatetimeMS),
    st.sampled_from(date_edges).map(DatetimeMS),
)


def decimal_bid(negative: bool, exponent: int, coefficient: int) -> bytes:
    """decimal128's bits for a small-form value (the layout drivers write)."""
    bits = coefficient | (exponent + 6176) << 113 | int(negative) << 127
    return bits.to_bytes(16, "little")


decimal_bids = st.one_of(
    st.binary(min_size=16, max_size=16),
    st.builds(
        decimal_bid,
        st.booleans(),
        st.integers(-6176, 6111),
        st.one_of(
            st.integers(0, BID_MAX_COEFFICIENT),
            st.integers(0, 10**6),
            st.sampled_from([BID_MAX_COEFFICIENT, 10**34, 2**113 - 1]),
        ),
    ),
    st.builds(
        decimal_bid,
        st.booleans(),
        st.integers(-40, 10),
        st.integers(0, 10**12),
    ),
)

binary_subtypes = st.sampled_from([*range(10), 0x80, 0xFE, 0xFF])

# Values fastejson renders itself (and, for some of them, `scan` decodes).
rendered_scalars = st.one_of(
    st.none(),
    st.booleans(),
    integers,
    floats,
    strings,
    dates,
    st.builds(Timestamp, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    st.binary(min_size=12, max_size=12).map(ObjectId),
    decimal_bids.map(Decimal128.from_bid),
    st.builds(Binary, st.binary(max_size=20), binary_subtypes),
    st.binary(max_size=20),
    st.uuids(),
    st.one_of(strings.map(symbol_document), st.just(UNDEFINED_DOCUMENT)),
)
# Values fastejson leaves to pymongo.
general_scalars = st.one_of(
    st.builds(Regex, st.text(max_size=6).filter(lambda text: "\x00" not in text), st.just("imx")),
    st.builds(Code, st.text(max_size=6).filter(lambda text: "\x00" not in text)),
    st.builds(Code, st.just("f()"), st.dictionaries(st.sampled_from("xyz"), integers, max_size=2)),
    st.sampled_from([MinKey(), MaxKey()]),
    st.builds(DBRef, st.sampled_from(["coll", "c"]), st.integers(0, 9)),
    st.builds(Binary, st.binary(max_size=20), st.just(2)),
    st.binary(min_size=12, max_size=12).map(db_pointer_document),
    st.sampled_from(["NaN", "-NaN", "sNaN", "Infinity", "-Infinity"]).map(Decimal128),
    st.fixed_dictionaries({"$ref": st.sampled_from(["coll", 1]), "$id": integers}),
    st.fixed_dictionaries({"$ref": strings}),
)


supported_documents = documents_of(keys, rendered_scalars)
any_documents = documents_of(keys, st.one_of(rendered_scalars, rendered_scalars, general_scalars))


# --- render: agreement with the general path -----------------------------------------------------


def assert_agrees_or_falls_back_as_specified(document: dict[str, Any]) -> None:
    # GIVEN the document as BSON, and what the general path renders for it
    raw = encode(document, codec_options=CODEC_OPTIONS)
    expected = general_path(raw)

    # WHEN fastejson renders it
    rendered = fast_render(raw)

    # THEN it falls back exactly for what it leaves to pymongo, and otherwise writes the same JSON
    # value, byte for byte unless a double is spelled the other way
    should_fall_back = render_falls_back(document)
    assert (rendered is None) == should_fall_back, (raw, expected, rendered)
    if rendered is not None:
        assert json_value(rendered) == json_value(expected), (raw, expected, rendered)
        if not has_finite_float(document):
            assert rendered == expected, raw


@settings(max_examples=400, deadline=None)
@given(supported_documents)
def test_render_writes_what_the_general_path_writes_for_every_supported_type(document):
    assert_agrees_or_falls_back_as_specified(document)


@settings(max_examples=400, deadline=None)
@given(any_documents)
def test_render_falls_back_exactly_for_what_it_leaves_to_pymongo(document):
    assert_agrees_or_falls_back_as_specified(document)


@pytest.mark.parametrize(
    "value",
    [
        Regex("^a", "i"),
        Code("f()"),
        Code("f()", {"x": 1}),
        MinKey(),
        MaxKey(),
        DBRef("coll", 1),
        Binary(b"old", 2),
        Decimal128("NaN"),
        Decimal128("-Infinity"),
        Decimal128.from_bid(decimal_bid(False, 0, 10**34)),  # 35 digits: not canonical
        {"$ref": "coll"},
        db_pointer_document(b"\x01" * 12),
    ],
    ids=repr,
)
def test_each_value_left_to_pymongo_falls_back_wherever_it_is(value):
    # GIVEN the value at the top, nested in a document and inside an array
    placements = [{"v": value}, {"a": 1, "d": {"e": {"v": value}}}, {"l": [1, [2, value], 3]}]
    for document in placements:
        raw = encode(document, codec_options=CODEC_OPTIONS)
        assert general_path_or_none(raw) is not None  # pymongo renders it: a fallback, not an error

        # WHEN fastejson renders it, THEN it leaves it to the general path
        with pytest.raises(FallBackError):
            fastejson.render(raw)


def test_symbols_and_undefined_read_as_pymongo_reads_them():
    # GIVEN a symbol and an undefined, at the top and nested (pymongo does not write them)
    symbol = bson_element(0x0E, b"s", bson_string(b'sy"m\x00\xc3\xa9'))
    undefined = bson_element(0x06, b"u", b"")
    raw = bson_document(symbol, undefined, bson_element(0x04, b"l", bson_document(symbol)))

    # WHEN rendered
    rendered = fastejson.render(raw)

    # THEN the symbol is a string and undefined is null, as on the general path
    assert rendered == general_path(raw)
    assert rendered == b'{"s":"sy\\"m\\u0000\xc3\xa9","u":null,"l":["sy\\"m\\u0000\xc3\xa9"]}'


@pytest.mark.parametrize(
    ("millis", "text"),
    [
        (MIN_DATETIME_MS - 1, b'{"$date":{"$numberLong":"-62135596800001"}}'),
        (-1, b'{"$date":{"$numberLong":"-1"}}'),
        (0, b'{"$date":"1970-01-01T00:00:00Z"}'),
        (1, b'{"$date":"1970-01-01T00:00:00.001Z"}'),
        (951_782_400_000, b'{"$date":"2000-02-29T00:00:00Z"}'),
        (MAX_DATETIME_MS, b'{"$date":"9999-12-31T23:59:59.999Z"}'),
        (MAX_DATETIME_MS + 1, b'{"$date":{"$numberLong":"253402300800000"}}'),
        (INT64_MIN, b'{"$date":{"$numberLong":"-9223372036854775808"}}'),
    ],
)
def test_dates_are_spelled_as_json_util_spells_them(millis, text):
    raw = encode({"d": DatetimeMS(millis)}, codec_options=CODEC_OPTIONS)
    assert fastejson.render(raw) == general_path(raw) == b'{"d":' + text + b"}"


def nested(depth: int) -> dict[str, Any]:
    """A document whose deepest document or array is `depth` levels below the top."""
    value: Any = {"leaf": 1}
    for level in range(depth - 1):
        value = [value] if level % 2 else {"d": value}
    return {"v": value}


def test_depth_up_to_the_limit_renders_and_beyond_it_falls_back():
    # GIVEN documents nested 200 levels below the top (the limit) and one more
    at_limit = encode(nested(200), codec_options=CODEC_OPTIONS)
    beyond = encode(nested(201), codec_options=CODEC_OPTIONS)

    # WHEN rendered or scanned, THEN the first reads as on the general path
    expected = general_path(at_limit)
    assert fastejson.render(at_limit) == expected
    assert fastejson.scan(at_limit, frozenset(["v"]), bytes, Timestamp) == {"v": expected[5:-1]}
    assert same_decoded(
        fastejson.scan(at_limit, frozenset(), bytes, Timestamp), decode(at_limit, RENDER_OPTIONS)
    )

    # AND the second falls back, however it is read
    with pytest.raises(FallBackError):
        fastejson.render(beyond)
    with pytest.raises(FallBackError):
        fastejson.scan(beyond, frozenset(), bytes, Timestamp)
    with pytest.raises(FallBackError):
        fastejson.scan(beyond, frozenset(["v"]), bytes, Timestamp)


def test_large_documents_render_as_on_the_general_path():
    # GIVEN a few megabytes: long strings of characters JSON escapes (six bytes out for one in),
    # long binaries, thousands of fields
    document = {
        "escaped": "\x01" * 1_000_000,
        "mixed": ('"\\\n é 😀' * 100_000),
        "binary": Binary(bytes(range(256)) * 4000, 0),
        "many": {str(index): [index, str(index), None] for index in range(20_000)},
    }
    raw = encode(document, codec_options=CODEC_OPTIONS)

    # WHEN rendered and scanned, THEN the text is the general path's
    expected = general_path(raw)
    assert fastejson.render(raw) == expected
    top = fastejson.scan(raw, frozenset(document), orjson.Fragment, Timestamp)
    assert orjson.dumps(top) == expected


def test_far_deeper_nesting_falls_back_without_crashing():
    # Built by hand: pymongo's encoder and decoder would hit Python's recursion limit first.
    raw = bson_document()
    for _ in range(20_000):
        raw = bson_document(bson_element(0x03, b"d", raw))
    with pytest.raises(FallBackError):
        fastejson.render(raw)
    with pytest.raises(FallBackError):
        fastejson.scan(raw, frozenset(), bytes, Timestamp)


# --- decimal128 ----------------------------------------------------------------------------------


def assert_decimal_renders_as_pymongo_prints_it(bid: bytes) -> None:
    raw = encode({"d": Decimal128.from_bid(bid)}, codec_options=CODEC_OPTIONS)
    rendered = fast_render(raw)
    if decimal_falls_back(bid):
        assert rendered is None, bid
        return
    text = str(Decimal128.from_bid(bid)).encode()
    assert rendered == b'{"d":{"$numberDecimal":"' + text + b'"}}', bid
    assert rendered == general_path(raw), bid


@settings(max_examples=1500, deadline=None)
@given(decimal_bids)
def test_decimal128_is_printed_as_pymongo_prints_it_or_falls_back(bid):
    assert_decimal_renders_as_pymongo_prints_it(bid)


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "-0",
        "0E-6176",
        "-0E-6176",
        "0E+6111",
        "0E+3",
        "0.000",
        "1E+6111",
        "1E-6176",
        "9999999999999999999999999999999999E+6111",
        "-9999999999999999999999999999999999E-6176",
        "1234567890123456789012345678901234",
        "1.234567890123456789012345678901234",
        "1E+3",
        "1000",
        "1.000",
        "0.000001",
        "0.0000001",
        "1E-7",
        "-1.5E-7",
        "123.456",
        "0.001234",
        "12345E-10",
        "12345E-11",
        "NaN",
        "-NaN",
        "sNaN",
        "Infinity",
        "-Infinity",
    ],
)
def test_decimal128_edges(text):
    assert_decimal_renders_as_pymongo_prints_it(Decimal128(text).bid)


@pytest.mark.parametrize(
    "high",
    [
        0x6000_0000_0000_0000,
        0x77FF_FFFF_FFFF_FFFF,
        0xE000_0000_0000_0000,
        0x7800_0000_0000_0000,
        0xF800_0000_0000_0000,
        0x7C00_0000_0000_0000,
        0x7E00_0000_0000_0000,
    ],
    ids=hex,
)
def test_decimal128_large_form_nan_and_infinity_bits_fall_back(high):
    bid = (0x1234).to_bytes(8, "little") + high.to_bytes(8, "little")
    raw = encode({"d": Decimal128.from_bid(bid)}, codec_options=CODEC_OPTIONS)
    with pytest.raises(FallBackError):
        fastejson.render(raw)


# --- Strictness: malformed BSON ------------------------------------------------------------------


@dataclass
class Layout:
    """Where the parts of a valid document are, so mutations can aim at them."""

    types: list[int] = field(default_factory=list)  # each element's type byte
    lengths: list[int] = field(default_factory=list)  # each int32 length prefix
    # (length prefix, first byte it counts, end): the prefixes an insertion at a byte must grow
    spans: list[tuple[int, int, int]] = field(default_factory=list)
    # [start, end) of each key, string and regex, and whether it is NUL-terminated text
    texts: list[tuple[int, int, bool]] = field(default_factory=list)
    bools: list[int] = field(default_factory=list)


FIXED_SIZES = {0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8}
FIXED_SIZES |= {0x12: 8, 0x13: 16, 0x7F: 0, 0xFF: 0}


def layout_of(raw: bytes) -> Layout:
    layout = Layout()
    assert _walk_document(raw, 0, layout) == len(raw)
    return layout


def _read_int32(raw: bytes | bytearray, at: int) -> int:
    return int.from_bytes(raw[at : at + 4], "little", signed=True)


def _walk_document(raw: bytes, start: int, layout: Layout) -> int:
    end = start + _read_int32(raw, start)
    layout.lengths.append(start)
    layout.spans.append((start, start + 4, end))
    at = start + 4
    while at < end - 1:
        layout.types.append(at)
        at = _walk_value(raw, raw[at], _walk_cstring(raw, at + 1, layout), layout)
    return end


def _walk_cstring(raw: bytes, start: int, layout: Layout) -> int:
    end = raw.index(0, start)
    layout.texts.append((start, end, True))
    return end + 1


def _walk_string(raw: bytes, start: int, layout: Layout) -> int:
    end = start + 4 + _read_int32(raw, start)
    layout.lengths.append(start)
    layout.spans.append((start, start + 4, end))
    layout.texts.append((start + 4, end - 1, False))
    return end


def _walk_value(raw: bytes, kind: int, at: int, layout: Layout) -> int:
    if kind == 0x08:
        layout.bools.append(at)
    if kind in FIXED_SIZES:
        return at + FIXED_SIZES[kind]
    if kind in (0x02, 0x0D, 0x0E):  # string, code, symbol
        return _walk_string(raw, at, layout)
    if kind in (0x03, 0x04):
        return _walk_document(raw, at, layout)
    if kind == 0x05:
        end = at + 5 + _read_int32(raw, at)
        layout.lengths.append(at)
        if raw[at + 4] == 2:
            layout.lengths.append(at + 5)  # the old layout repeats the length inside
        return end
    if kind == 0x0B:  # regex: pattern and flags
        return _walk_cstring(raw, _walk_cstring(raw, at, layout), layout)
    if kind == 0x0C:  # DBPointer: namespace and ObjectId
        return _walk_string(raw, at, layout) + 12
    assert kind == 0x0F, kind  # code with scope: total length, code, scope
    end = at + _read_int32(raw, at)
    layout.lengths.append(at)
    layout.spans.append((at, at + 4, end))
    _walk_document(raw, _walk_string(raw, at + 4, layout), layout)
    return end


# Overlong forms, surrogates, beyond U+10FFFF, stray continuation bytes, cut sequences.
INVALID_UTF8 = [
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xc0\xaf",
    b"\xc1\xbf",
    b"\xe0\x80\xaf",
    b"\xe0\x9f\xbf",
    b"\xf0\x80\x80\x80",
    b"\xf0\x8f\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\x80",
    b"\xbf",
    b"\xc3",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    b"\xe2\x28\xa1",
    b"\xc3\x28",
    b"\xfe",
    b"\xff",
]
# The first and last of each well-formed range, which a too-strict check would refuse.
VALID_UTF8 = [
    b"\x7f",
    b"\xc2\x80",
    b"\xdf\xbf",
    b"\xe0\xa0\x80",
    b"\xed\x9f\xbf",
    b"\xee\x80\x80",
    b"\xef\xbf\xbf",
    b"\xf0\x90\x80\x80",
    b"\xf4\x8f\xbf\xbf",
    "😀".encode(),
]

# Valid documents to mutate: every BSON type, nested, with multibyte text.
SEED_DOCUMENTS: list[dict[str, Any]] = [
    {"a": 1, "b": "texto", "c": True},
    {
        "_id": ObjectId("6750a1f0c2b4a1e0f0a1b001"),
        "nombre": "Leche entera ñandú 😀",
        "precio": 1.25,
        "cantidad": Int64(3),
        "activo": False,
        "nada": None,
        "cuando": dt.datetime(2026, 12, 3, 11, 33, 20, 123000, tzinfo=dt.UTC),
        "antes": dt.datetime(1969, 7, 20, 20, 17, 40, tzinfo=dt.UTC),
        "lejos": DatetimeMS(2**60),
        "ts": Timestamp(1_796_300_000, 7),
        "dec": Decimal128("-12.345E+3"),
        "bin": Binary(b"\x00\x01\x02\xff", 0x80),
        "uuid": uuid.UUID("0f7c1f7e-9a5b-4c43-8d1e-3b4b3c2a1d00"),
        "bytes": b"abc",
    },
    {
        "lista": [1, "dos", 3.0, [True, None], {"x": "é", "y": [{"z": Int64(-1)}]}],
        "doc": {"ß": {"深": {"🔥": '\x00\n"\\', "n": -(2**31)}}},
        "vacío": {},
        "vacía": [],
    },
    {"regex": Regex("^é+", "i"), "code": Code("f()"), "scope": Code("g()", {"k": "v"})},
    {"min": MinKey(), "max": MaxKey(), "old": Binary(b"viejo", 2), "nan": float("nan")},
    {"ref": DBRef("coll", 5), "inf": Decimal128("Infinity"), "x": [Regex("a", "")]},
    {"raw": symbol_document("símbolo"), "u": UNDEFINED_DOCUMENT, "n": -0.0},
    {"p": db_pointer_document(b"\x07" * 12), "s": "ok"},
    {"txt": "a" * 40, "k€y": "vä", "ключ": ["значение", "ünï"]},
]
FUZZ_SEEDS = [encode(document, codec_options=CODEC_OPTIONS) for document in SEED_DOCUMENTS]


def mutate(raw: bytes, rng: random.Random) -> bytes:
    """A copy of a valid document with one thing broken (or, sometimes, changed but still valid)."""
    layout = layout_of(raw)
    data = bytearray(raw)
    choice = rng.randrange(10)
    if choice == 0:  # flip a bit anywhere
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif choice == 1:  # any byte to a telling value
        data[rng.randrange(len(data))] = rng.choice([0, 1, 2, 0x7F, 0x80, 0xC0, 0xFF])
    elif choice == 2:  # cut short
        data = data[: rng.randrange(len(data))]
        if rng.random() < 0.5:
            data += b"\x00"
    elif choice == 3:  # a length prefix off by a little, or absurd
        at = rng.choice(layout.lengths)
        old = _read_int32(raw, at)
        new = rng.choice([old + rng.randint(-6, 6), 0, 1, 4, 5, -1, INT32_MIN, INT32_MAX])
        data[at : at + 4] = int32(new)
    elif choice == 4 and layout.types:  # another type, known or not
        data[rng.choice(layout.types)] = rng.choice([*range(0x14), 0x7F, 0xFF, rng.randrange(256)])
    elif choice == 5:  # a boolean that is neither 0 nor 1
        if layout.bools:
            data[rng.choice(layout.bools)] = rng.randrange(2, 256)
    elif choice in (6, 7) and layout.texts:  # a UTF-8 sequence written over text, same lengths
        start, end, _ = rng.choice(layout.texts)
        sequence = rng.choice(INVALID_UTF8 if choice == 6 else VALID_UTF8)
        if end - start >= len(sequence):
            at = rng.randint(start, end - len(sequence))
            data[at : at + len(sequence)] = sequence
    elif choice == 8 and layout.texts:  # UTF-8 (or a NUL, in a string) inserted, lengths grown
        start, end, cstring = rng.choice(layout.texts)
        sequence = rng.choice([*INVALID_UTF8, *VALID_UTF8, *([] if cstring else [b"\x00"])])
        at = rng.randint(start, end)
        for prefix, first, stop in layout.spans:
            if first <= at < stop:
                data[prefix : prefix + 4] = int32(_read_int32(data, prefix) + len(sequence))
        data[at:at] = sequence
    elif len(data) > 5:  # bytes dropped or added in the middle
        at = rng.randrange(4, len(data))
        if rng.random() < 0.5:
            del data[at : at + rng.randint(1, 8)]
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    if rng.random() < 0.6 and len(data) >= 4:
        # Most mutations keep the outer size true, so they reach the parser inside.
        data[0:4] = int32(len(data))
    return bytes(data)


def assert_never_laxer_than_pymongo(raw: bytes, seed_keys: frozenset[str]) -> bool:
    """Checks fastejson on (possibly malformed) bytes; returns whether pymongo accepted them."""
    # GIVEN what pymongo and the general path make of the bytes
    expected = general_path_or_none(raw)

    # WHEN fastejson renders and scans them (any exception but FallBackError fails the test)
    rendered = fast_render(raw)
    scans = {
        rendered_keys: fast_scan(raw, rendered_keys) for rendered_keys in (frozenset(), seed_keys)
    }

    # THEN when pymongo refuses them, so does fastejson, every way it is called
    if expected is None:
        assert rendered is None, (raw, rendered)
        assert all(result is None for result in scans.values()), (raw, scans)
        return False

    # AND when pymongo accepts them, fastejson falls back or agrees with the general path
    if rendered is not None:
        assert json_value(rendered) == json_value(expected), (raw, expected, rendered)
    by_key = dict(json_value(expected))
    decoded_top = decode(raw, RENDER_OPTIONS)
    for rendered_keys, result in scans.items():
        if result is None:
            continue
        assert list(result) == list(decoded_top), raw
        for key, value in result.items():
            if key in rendered_keys:
                assert json_value(value) == by_key[key], (raw, key, value)
            else:
                assert same_decoded(value, decoded_top[key]), (raw, key, value)
    return True


def test_mutated_documents_fall_back_whenever_pymongo_refuses_them():
    # GIVEN thousands of mutations of valid documents, the same ones on every run
    rng = random.Random(20261203)
    accepted = refused = rendered = 0
    for case in range(20_000):
        seed = FUZZ_SEEDS[case % len(FUZZ_SEEDS)]
        seed_keys = frozenset(decode(seed, RENDER_OPTIONS))
        raw = mutate(seed, rng)

        # WHEN fastejson reads each, THEN it never renders what pymongo refuses
        if assert_never_laxer_than_pymongo(raw, seed_keys):
            accepted += 1
            rendered += fast_render(raw) is not None
        else:
            refused += 1

    # AND the mutations exercised both sides: refused bytes, and accepted bytes fastejson rendered
    assert refused > 5000, (accepted, refused, rendered)
    assert rendered > 2000, (accepted, refused, rendered)


def string_in(place: str, text: bytes) -> bytes:
    """A document with `text` (maybe not UTF-8) as a key or string at one place."""
    string = bson_element(0x02, b"s", bson_string(text))
    keyed = bson_element(0x10, text, int32(7))
    if place == "top key":
        return bson_document(bson_element(0x10, b"n", int32(1)), keyed)
    if place == "top string":
        return bson_document(string)
    if place == "nested key":
        return bson_document(bson_element(0x03, b"d", bson_document(keyed)))
    if place == "string in an array":
        return bson_document(bson_element(0x04, b"l", bson_document(string)))
    if place == "symbol":
        return bson_document(bson_element(0x0E, b"y", bson_string(text)))
    assert place == "deep string"
    inner = bson_element(0x03, b"b", bson_document(string))
    return bson_document(
        bson_element(0x04, b"a", bson_document(bson_element(0x03, b"0", bson_document(inner))))
    )


PLACES = ["top key", "top string", "nested key", "string in an array", "symbol", "deep string"]


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("sequence", INVALID_UTF8, ids=repr)
def test_invalid_utf8_falls_back_wherever_it_is(place, sequence):
    # GIVEN invalid UTF-8 between valid characters, which pymongo refuses
    raw = string_in(place, b"ok" + sequence + b"ok")
    with pytest.raises(InvalidBSON):
        decode(raw, RENDER_OPTIONS)

    # WHEN fastejson reads it, THEN it falls back, rendering or decoding, top field or not
    with pytest.raises(FallBackError):
        fastejson.render(raw)
    for rendered in (frozenset(), frozenset(["s", "d", "l", "y", "a", "n"])):
        with pytest.raises(FallBackError):
            fastejson.scan(raw, rendered, bytes, Timestamp)


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("sequence", VALID_UTF8, ids=repr)
def test_valid_utf8_at_the_edges_of_each_range_renders(place, sequence):
    raw = string_in(place, b"ok" + sequence + b"ok")
    assert fastejson.render(raw) == general_path(raw)


def test_array_keys_are_not_checked_as_pymongo_does_not_check_them():
    # GIVEN arrays whose keys are not UTF-8, or are `$ref` and `$id` (pymongo ignores array keys)
    not_utf8 = bson_document(
        bson_element(0x10, b"\xff", int32(1)), bson_element(0x10, b"", int32(2))
    )
    dbref_like = bson_document(
        bson_element(0x10, b"$ref", int32(1)), bson_element(0x10, b"$id", int32(2))
    )
    for array in (not_utf8, dbref_like):
        raw = bson_document(bson_element(0x04, b"l", array))

        # WHEN rendered or scanned, THEN both paths agree: the values, in order
        assert fastejson.render(raw) == general_path(raw) == b'{"l":[1,2]}'
        assert fastejson.scan(raw, frozenset(), bytes, Timestamp) == {"l": [1, 2]}
        assert fastejson.scan(raw, frozenset(["l"]), bytes, Timestamp) == {"l": b"[1,2]"}


@pytest.mark.parametrize("value", [2, 0x80, 0xFF])
def test_a_boolean_neither_0_nor_1_falls_back(value):
    # GIVEN a boolean byte pymongo refuses, at the top and inside an array
    for raw in (
        bson_document(bson_element(0x08, b"b", bytes([value]))),
        bson_document(
            bson_element(0x04, b"l", bson_document(bson_element(0x08, b"0", bytes([value]))))
        ),
    ):
        with pytest.raises(InvalidBSON):
            decode(raw, RENDER_OPTIONS)

        # WHEN fastejson reads it, THEN it falls back
        with pytest.raises(FallBackError):
            fastejson.render(raw)
        for rendered in (frozenset(), frozenset(["b", "l"])):
            with pytest.raises(FallBackError):
                fastejson.scan(raw, rendered, bytes, Timestamp)


# --- Not a whole document ------------------------------------------------------------------------

VALID = encode({"a": 1}, codec_options=CODEC_OPTIONS)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x05",
        b"\x05\x00\x00\x00",
        b"\x05\x00\x00\x00\x01",  # no terminator
        b"\x06\x00\x00\x00\x00",  # size over the bytes
        b"\x04\x00\x00\x00\x00",  # size under the bytes
        b"\x05\x00\x00\x00\x00\x00",  # a byte after the document
        b"\xff\xff\xff\xff\x00",
        b"\xff\xff\xff\x7f\x00",
        VALID[:-1],
        VALID + b"\x00",
        VALID + VALID,
        int32(len(VALID) + 1) + VALID[4:],
        int32(len(VALID) - 1) + VALID[4:],
    ],
    ids=repr,
)
def test_bytes_that_are_not_one_whole_document_fall_back(raw):
    with pytest.raises(InvalidBSON):
        decode(raw, RENDER_OPTIONS)
    with pytest.raises(FallBackError):
        fastejson.render(raw)
    with pytest.raises(FallBackError):
        fastejson.scan(raw, frozenset(["a"]), bytes, Timestamp)


def test_the_empty_document_renders():
    assert fastejson.render(b"\x05\x00\x00\x00\x00") == b"{}"
    assert fastejson.scan(b"\x05\x00\x00\x00\x00", frozenset(), bytes, Timestamp) == {}


def test_fall_back_error_is_a_value_error():
    assert issubclass(FallBackError, ValueError)


# --- scan ----------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(any_documents, st.data())
def test_scan_renders_the_fields_asked_for_and_decodes_the_rest(document, data):
    # GIVEN a document and a choice of its top-level fields to render
    raw = encode(document, codec_options=CODEC_OPTIONS)
    rendered_keys = frozenset(
        data.draw(st.sets(st.sampled_from(sorted(document))) if document else st.just(set()))
    )

    # WHEN scanned
    result = fast_scan(raw, rendered_keys)

    # THEN it falls back exactly when a rendered field has a value render leaves to pymongo, or a
    # decoded one a value it does not decode
    should_fall_back = any(
        render_falls_back(value) if key in rendered_keys else scan_falls_back(value)
        for key, value in document.items()
    )
    assert (result is None) == should_fall_back, (raw, rendered_keys)
    if result is None:
        return

    # AND rendered fields are what render writes for them, decoded ones what pymongo decodes
    expected_top = decode(raw, RENDER_OPTIONS)
    assert list(result) == list(expected_top)
    for key, value in result.items():
        if key in rendered_keys:
            alone = encode({key: document[key]}, codec_options=CODEC_OPTIONS)
            assert json_value(value) == json_value(general_path(alone))[0][1], (raw, key, value)
            if key != "$ref":  # render falls back for a document with `$ref`, even at the top
                assert b"{" + orjson.dumps(key) + b":" + value + b"}" == fastejson.render(alone)
        else:
            assert same_decoded(value, expected_top[key]), (raw, key, value)


@settings(max_examples=150, deadline=None)
@given(supported_documents)
def test_scan_with_orjson_fragments_gives_the_documents_json(document):
    # GIVEN a document of supported values, whose every field is rendered
    raw = encode(document, codec_options=CODEC_OPTIONS)

    # WHEN scanned as the relay does, and the result written by orjson
    top = fast_scan_with(raw, frozenset(document), orjson.Fragment)

    # THEN it falls back only for a value render leaves to pymongo (a `$ref` key at the top is no
    # DBRef: pymongo keeps it a plain field there)
    assert (top is None) == any(render_falls_back(value) for value in document.values()), raw
    if top is None:
        return

    # AND orjson writes the general path's text, the rendered fields as they are
    assert all(type(value) is orjson.Fragment for value in top.values())
    text = orjson.dumps(top)
    expected = general_path(raw)
    assert json_value(text) == json_value(expected), (raw, expected, text)
    if not has_finite_float(document):
        assert text == expected, raw


def test_scan_decodes_each_type_it_reads_as_pymongo_does():
    # GIVEN every type scan decodes, at the top and nested, plus a symbol and an undefined
    when = dt.datetime(2026, 12, 3, 11, 33, 20, 123000, tzinfo=dt.UTC)
    document = {
        "s": "texto \x00 é",
        "i": -(2**31),
        "l": Int64(2**40),
        "small_long": Int64(5),
        "f": 1.5e-7,
        "z": -0.0,
        "t": True,
        "no": False,
        "n": None,
        "when": when,
        "first": DatetimeMS(MIN_DATETIME_MS),
        "last": DatetimeMS(MAX_DATETIME_MS),
        "before": dt.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC),
        "ts": Timestamp(4_294_967_295, 4_294_967_295),
        "doc": {"a": [1, {"b": when, "c": Timestamp(1, 2)}, []], "e": {}},
    }
    raw = encode(document, codec_options=CODEC_OPTIONS)[:-1]
    raw += bson_element(0x0E, b"sym", bson_string(b"abc")) + bson_element(0x06, b"u", b"") + b"\x00"
    raw = int32(len(raw)) + raw[4:]

    # WHEN scanned with no field rendered
    result = fastejson.scan(raw, frozenset(), bytes, Timestamp)

    # THEN each value is pymongo's, of the type the relay expects
    expected = decode(raw, RENDER_OPTIONS)
    assert same_decoded(result, expected)
    assert type(result["l"]) is int
    assert type(result["ts"]) is Timestamp
    assert result["ts"] == Timestamp(4_294_967_295, 4_294_967_295)
    assert result["when"] == dt.datetime(2026, 12, 3, 11, 33, 20, 123000)
    assert result["first"] == dt.datetime(1, 1, 1)
    assert result["last"] == dt.datetime(9999, 12, 31, 23, 59, 59, 999000)
    assert result["sym"] == "abc"
    assert result["u"] is None
    assert math.copysign(1, result["z"]) == -1


def test_scan_passes_each_rendered_field_to_fragment_as_render_writes_it():
    # GIVEN a document with a field of each kind, and a fragment that records what it gets
    document = {
        "_id": {"_data": "826750A1F0000000012B0429296E1404"},
        "oid": ObjectId("6750a1f0c2b4a1e0f0a1b001"),
        "dec": Decimal128("0.000001"),
        "when": dt.datetime(2026, 12, 3, 11, 33, 20, tzinfo=dt.UTC),
        "bin": Binary(b"\x01\x02\x03", 5),
        "list": [1, "a", None],
        "kept": 3,
    }
    raw = encode(document, codec_options=CODEC_OPTIONS)
    seen: list[bytes] = []

    def fragment(text: bytes) -> str:
        seen.append(text)
        return "fragment"

    # WHEN scanned with all fields but one rendered
    rendered = {"_id", "oid", "dec", "when", "bin", "list"}  # a set works as well as a frozenset
    result = fastejson.scan(raw, rendered, fragment, Timestamp)

    # THEN fragment got each rendered field's JSON, in order; the other field is decoded
    assert seen == [
        b'{"_data":"826750A1F0000000012B0429296E1404"}',
        b'{"$oid":"6750a1f0c2b4a1e0f0a1b001"}',
        b'{"$numberDecimal":"0.000001"}',
        b'{"$date":"2026-12-03T11:33:20Z"}',
        b'{"$binary":{"base64":"AQID","subType":"05"}}',
        b'[1,"a",null]',
    ]
    assert result == dict.fromkeys(rendered, "fragment") | {"kept": 3}


@pytest.mark.parametrize(
    "value",
    [
        ObjectId("6750a1f0c2b4a1e0f0a1b001"),
        Binary(b"x", 0),
        b"x",
        uuid.UUID("0f7c1f7e-9a5b-4c43-8d1e-3b4b3c2a1d00"),
        Decimal128("1"),
        Regex("a", ""),
        Code("f()"),
        MinKey(),
        MaxKey(),
        DBRef("coll", 1),
        float("nan"),
        float("inf"),
        float("-inf"),
        DatetimeMS(MIN_DATETIME_MS - 1),
        DatetimeMS(MAX_DATETIME_MS + 1),
        {"$ref": "coll", "$id": 1},
        db_pointer_document(b"\x01" * 12),
    ],
    ids=repr,
)
def test_scan_falls_back_for_a_type_it_does_not_decode(value):
    # GIVEN the value at the top, in a document and in an array, in a field scan decodes
    for document in ({"v": value}, {"d": {"v": value}}, {"l": [0, value]}):
        raw = encode(document, codec_options=CODEC_OPTIONS)

        # WHEN scanned with that field decoded
        result = fast_scan(raw, frozenset())

        # THEN it falls back
        assert scan_falls_back(value)
        assert result is None, raw

        # AND rendering that field instead is render's business
        assert (fast_scan(raw, frozenset(document)) is None) == render_falls_back(value)


def test_scan_does_not_take_a_top_level_ref_for_a_dbref():
    # GIVEN `$ref` and `$id` at the top, which pymongo keeps as plain fields there
    raw = encode({"$ref": "coll", "$id": 1}, codec_options=CODEC_OPTIONS)

    # WHEN scanned, THEN they are decoded as pymongo decodes them
    assert fastejson.scan(raw, frozenset(), bytes, Timestamp) == decode(raw, RENDER_OPTIONS)
    assert fastejson.scan(raw, frozenset(["$ref"]), bytes, Timestamp) == {
        "$ref": b'"coll"',
        "$id": 1,
    }


def test_errors_of_the_callbacks_propagate_unchanged():
    raw = encode({"a": {"b": 1}, "t": Timestamp(1, 2)}, codec_options=CODEC_OPTIONS)

    def refuse(*_: object) -> None:
        raise RuntimeError("callback refused")

    with pytest.raises(RuntimeError, match="callback refused"):
        fastejson.scan(raw, frozenset(["a"]), refuse, Timestamp)
    with pytest.raises(RuntimeError, match="callback refused"):
        fastejson.scan(raw, frozenset(), bytes, refuse)


BUFFERS = {
    "bytearray": bytearray,
    "memoryview": memoryview,
    # A view into the middle of a larger buffer: only the view's bytes are the document.
    "slice": lambda raw: memoryview(b"\x10\x00\x00\x00" + raw + b"\x00")[4:-1],
}


@pytest.mark.parametrize("make", BUFFERS.values(), ids=BUFFERS.keys())
def test_any_buffer_reads_as_its_bytes_do(make):
    # GIVEN a valid document and a malformed one, as bytes and as another buffer
    raw = encode(
        {"a": [1, "é", {"b": Timestamp(1, 2)}], "o": ObjectId()}, codec_options=CODEC_OPTIONS
    )
    malformed = raw[:-1] + b"\x01"  # no terminator

    # WHEN rendered and scanned from the buffer, THEN the results are those of the bytes
    assert fastejson.render(make(raw)) == fastejson.render(raw)
    for rendered in (frozenset(["o"]), frozenset(["a", "o"])):
        expected = fastejson.scan(raw, rendered, bytes, Timestamp)
        assert fastejson.scan(make(raw), rendered, bytes, Timestamp) == expected
    with pytest.raises(FallBackError):
        fastejson.render(make(malformed))
    with pytest.raises(FallBackError):
        fastejson.scan(make(malformed), frozenset(["o"]), bytes, Timestamp)


def test_a_callback_rewriting_the_buffer_cannot_make_scan_read_out_of_bounds():
    # GIVEN a bytearray that the callbacks scribble over and try to shrink while scan reads it
    raw = encode(
        {f"k{index}": {"t": Timestamp(index, 1), "s": "x" * 50} for index in range(50)},
        codec_options=CODEC_OPTIONS,
    )
    buffer = bytearray(raw)

    def scribble(*args: object) -> object:
        buffer[4:] = b"\xff" * (len(buffer) - 4)  # same size: allowed while scan holds it
        # A held buffer cannot be resized: what keeps scan's bounds true.
        with contextlib.suppress(BufferError):
            del buffer[10:]
        return args

    # WHEN scanned, decoding (timestamp callback) or rendering (fragment callback)
    for rendered in (frozenset(), frozenset(f"k{index}" for index in range(50))):
        buffer[:] = raw
        try:
            result = fastejson.scan(buffer, rendered, scribble, scribble)
        except FallBackError:
            continue

        # THEN it falls back or returns, without crashing
        assert isinstance(result, dict)


def test_calls_that_fall_back_midway_keep_no_memory_or_references():
    # GIVEN documents that fall back after fields were already rendered or decoded
    valid = {f"f{index}": {"t": Timestamp(index, 1), "s": "x" * 100} for index in range(20)}
    documents = [
        encode({**valid, "z": ObjectId()}, codec_options=CODEC_OPTIONS),
        encode({**valid, "z": {"a": [1, Regex("x", "")]}}, codec_options=CODEC_OPTIONS),
        encode({**valid, "z": "ok"}, codec_options=CODEC_OPTIONS)[:-2] + b"\x80\x00\x00",
    ]
    rendered = frozenset(valid) | {"z"}
    made = object()

    def callback(*_: object) -> object:
        return made

    def read_all() -> None:
        for raw in documents:
            for keys in (frozenset(), rendered):
                with contextlib.suppress(FallBackError):
                    fastejson.scan(raw, keys, callback, callback)
            with contextlib.suppress(FallBackError):
                fastejson.render(raw)

    read_all()  # caches and free lists warmed up
    references = sys.getrefcount(made)

    # WHEN they are read many times over
    tracemalloc.start()
    try:
        for _ in range(300):
            read_all()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # THEN nothing they made is still held: no object, no buffer
    assert sys.getrefcount(made) == references
    assert kept < 10_000


TIMESTAMP_ONLY = encode({"t": Timestamp(1, 2)}, codec_options=CODEC_OPTIONS)


@pytest.mark.parametrize(
    ("function", "args", "kwargs"),
    [
        pytest.param(fastejson.render, ("not bytes",), {}, id="render str"),
        pytest.param(fastejson.render, (None,), {}, id="render None"),
        pytest.param(fastejson.render, (), {}, id="render no argument"),
        pytest.param(fastejson.render, (VALID, VALID), {}, id="render two arguments"),
        pytest.param(fastejson.render, (), {"raw": VALID}, id="render keyword"),
        pytest.param(fastejson.scan, (VALID, frozenset(), bytes), {}, id="scan three arguments"),
        pytest.param(
            fastejson.scan, (VALID, frozenset(), bytes, Timestamp, None), {}, id="scan five"
        ),
        pytest.param(
            fastejson.scan, (VALID.decode("latin-1"), frozenset(), bytes, Timestamp), {}, id="str"
        ),
        pytest.param(fastejson.scan, (VALID, ["a"], bytes, Timestamp), {}, id="rendered list"),
        pytest.param(fastejson.scan, (VALID, {"a": 1}, bytes, Timestamp), {}, id="rendered dict"),
        pytest.param(fastejson.scan, (VALID, None, bytes, Timestamp), {}, id="rendered None"),
        pytest.param(
            fastejson.scan, (VALID, frozenset(["a"]), None, Timestamp), {}, id="fragment None"
        ),
        pytest.param(
            fastejson.scan, (TIMESTAMP_ONLY, frozenset(), bytes, None), {}, id="timestamp None"
        ),
    ],
)
def test_bad_arguments_are_type_errors(function, args, kwargs):
    with pytest.raises(TypeError):
        function(*args, **kwargs)

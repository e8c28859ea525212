"""MongoDB Relaxed Extended JSON v2 in both directions, with one set of options.

Relaxed mode keeps int32, int64 and doubles as plain JSON numbers, so EventBridge numeric
patterns work on them, while ObjectId, Decimal128, dates, binary and UUIDs keep their type.
Must never lose a value: whatever `to_json` writes, `from_json` gives back equal.
"""

import datetime as dt
import decimal
import functools
import json
import math
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, Final

from bson import Decimal128, Int64, ObjectId, Timestamp, decode, encode, json_util
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions, DatetimeConversion, TypeDecoder, TypeRegistry
from bson.json_util import DatetimeRepresentation, JSONMode, JSONOptions
from bson.raw_bson import RawBSONDocument
from bson.tz_util import utc as BSON_UTC


def _optional_orjson() -> ModuleType | None:
    # The C fast path: the relay image installs orjson; the Lambda layer does without it.
    try:
        import orjson
    except ImportError:  # pragma: no cover - exercised where orjson is absent
        return None
    return orjson


def _optional_native() -> ModuleType | None:
    # The relay's C renderer (native/fastejson): BSON straight to JSON text, no Python objects
    # between. Built for the relay image and the dev virtualenv; absent in the Lambda layer.
    try:
        import fastejson
    except ImportError:  # pragma: no cover - exercised where fastejson is absent
        return None
    return fastejson


_ORJSON: Final = _optional_orjson()
# Used only beside orjson, which writes the fields it renders into the detail as they are.
_NATIVE: Final = _optional_native() if _ORJSON is not None else None

# Dates outside Python's range (years 1-9999) are legal BSON: they stay DatetimeMS, not an error.
RELAXED_OPTIONS: Final = JSONOptions(
    json_mode=JSONMode.RELAXED,
    datetime_representation=DatetimeRepresentation.ISO8601,
    tz_aware=True,
    tzinfo=dt.UTC,
    uuid_representation=UuidRepresentation.STANDARD,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
)

# Codec options the relay reads change events with, so values decode as `from_json` restores them.
CODEC_OPTIONS: Final = CodecOptions(
    document_class=RawBSONDocument,
    tz_aware=True,
    tzinfo=dt.UTC,
    uuid_representation=UuidRepresentation.STANDARD,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
)


class NonFiniteDouble:
    """A NaN or infinite BSON double on the fast path: JSON has no number for it."""

    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value


class _NonFiniteDoubles(TypeDecoder):
    """Wraps NaN and infinities, which orjson would otherwise write as `null`."""

    bson_type = float

    def transform_bson(self, value: Any) -> Any:
        return value if math.isfinite(value) else NonFiniteDouble(value)


# How the fast path decodes BSON before rendering: plain dicts; naive datetimes, which are UTC
# (cheaper to build and to print than aware ones; dates outside Python's range as DatetimeMS);
# UUIDs left as Binary, which orjson cannot mistake for a string.
RENDER_OPTIONS: Final = CodecOptions(
    document_class=dict,
    tz_aware=False,
    uuid_representation=UuidRepresentation.UNSPECIFIED,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    type_registry=TypeRegistry([_NonFiniteDoubles()]),
)
# Datetimes are rendered by `_default` ({"$date": ...}), subclasses (Int64, Code, SON) by type.
_ORJSON_OPTIONS: Final = (
    (_ORJSON.OPT_PASSTHROUGH_DATETIME | _ORJSON.OPT_PASSTHROUGH_SUBCLASS) if _ORJSON else 0
)
_UTC_ZONES: Final = (None, BSON_UTC, dt.UTC)  # None: a naive datetime, UTC as BSON has it


class ChangeDocument(RawBSONDocument):
    """A change event as the relay reads it: a `RawBSONDocument` that finds its token cheaply.

    pymongo reads every change's `_id` (its resume token) as it hands the change over. A plain
    `RawBSONDocument` answers by inflating its whole top level in Python, ~4 µs a change on the
    read-ahead thread that the relay waits on. mongod writes `_id` first in every change event, so
    this document reads just that leading field; any other layout, and every other read, is
    `RawBSONDocument`'s own.
    """

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        if key == "_id":
            token = self._leading_token()
            if token is not None:
                return token
        return super().__getitem__(key)

    def _leading_token(self) -> RawBSONDocument | None:
        # BSON: the document's int32 size, then its elements, each a type byte (3: a document),
        # the key as a NUL-terminated string and the value (a document starts with its int32 size).
        raw = self.raw
        if len(raw) < 13 or raw[4] != 0x03 or raw[5:9] != b"_id\x00":
            return None
        size = int.from_bytes(raw[9:13], "little")
        # The constructor checks the size against the bytes: a bad one raises `InvalidBSON`.
        return RawBSONDocument(raw[9 : 9 + size], CODEC_OPTIONS)


# How the relay's change stream decodes its batches: each change a `ChangeDocument`.
STREAM_OPTIONS: Final = CODEC_OPTIONS.with_options(document_class=ChangeDocument)


def fast_path_available() -> bool:
    """Whether the C renderer (orjson) is installed."""
    return _ORJSON is not None


def renderer_name() -> str:
    """Which renderer the fast path uses here, for the relay's start-up log."""
    if _ORJSON is None:
        return "json_util"
    return "fastejson" if _NATIVE is not None else "orjson"


def to_json(document: Mapping[str, Any], *, fast: bool = True) -> str:
    """Render a BSON document as Relaxed Extended JSON text.

    With `fast` and orjson installed, the document's BSON is rendered by fastejson where it can be
    (see `scanned`); otherwise it is decoded from BSON once (`decoded`) and rendered by orjson,
    calling back into Python only for BSON-specific values. Without `fast`, `json_util` walks it.
    All give the same JSON value; only whitespace and number spelling differ.
    """
    if not fast or _ORJSON is None:
        return json_util.dumps(document, json_options=RELAXED_OPTIONS)
    if _NATIVE is None:
        return render(decoded(document)).decode("utf-8")
    raw = _bson_of(document)
    try:
        rendered: bytes = _NATIVE.render(raw)
    except _NATIVE.FallBackError:
        # Not a failure: the general path renders it, or raises naming what is wrong.
        rendered = render(_decoded_bson(raw))
    return rendered.decode("utf-8")


def decoded(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document as the fast path renders it: decoded from its BSON with `RENDER_OPTIONS`.

    A `RawBSONDocument` is decoded from its bytes; any other mapping is encoded to BSON first, so
    both fail alike (`BSONError`, `TypeError`, ...) on a value BSON cannot carry.
    """
    return _decoded_bson(_bson_of(document))


def scanned(document: Mapping[str, Any], rendered: frozenset[str]) -> dict[str, Any]:
    """The document's top level for the fast path: `decoded`, or better, where it can be.

    fastejson reads the top level from the BSON bytes (a `RawBSONDocument`'s own, or the
    mapping encoded, as `decoded` does) and renders the fields named in `rendered` straight to
    JSON text, as `orjson.Fragment`s that `render` writes as they are: no Python objects for
    their content. It takes only what it renders exactly as `decoded` + `render` do; anything
    else (rarer BSON types, malformed bytes) is decoded, which renders it or raises naming what
    is wrong.
    """
    if _NATIVE is None or _ORJSON is None:
        return decoded(document)
    raw = _bson_of(document)
    try:
        result: dict[str, Any] = _NATIVE.scan(raw, rendered, _ORJSON.Fragment, Timestamp)
    except _NATIVE.FallBackError:
        # Not a failure: the general path renders it, or raises naming what is wrong.
        result = _decoded_bson(raw)
    return result


def _decoded_bson(raw: bytes | memoryview) -> dict[str, Any]:
    result: dict[str, Any] = decode(raw, RENDER_OPTIONS)
    return result


def _bson_of(document: Mapping[str, Any]) -> bytes | memoryview:
    # pymongo may hand a change's bytes over as a view into its batch.
    if isinstance(document, RawBSONDocument):
        return document.raw
    return encode(document, codec_options=CODEC_OPTIONS)


def render(document: Mapping[str, Any]) -> bytes:
    """UTF-8 Relaxed Extended JSON of a document made of `decoded` values (and plain JSON ones)."""
    if _ORJSON is None:  # pragma: no cover - exercised where orjson is absent
        return json_util.dumps(document, json_options=RELAXED_OPTIONS).encode("utf-8")
    text: bytes = _ORJSON.dumps(document, default=_default, option=_ORJSON_OPTIONS)
    return text


def _datetime(value: dt.datetime) -> Any:
    # json_util's own spelling (milliseconds only when non-zero, `Z`), without its strftime calls;
    # a BSON date has no digits below the millisecond.
    if value.tzinfo in _UTC_ZONES and value.year >= 1970:
        text = value.isoformat(timespec="milliseconds" if value.microsecond >= 1000 else "seconds")
        if value.tzinfo is not None:
            text = text[:-6]  # "+00:00"
        return {"$date": text + "Z"}
    return json_util.default(value, RELAXED_OPTIONS)


# IEEE 754-2008 decimal128, binary integer decimal (BID) layout, as BSON stores it.
_BID_LARGE_FORM: Final = 0x6000_0000_0000_0000  # both bits set: a large coefficient, NaN or Inf
_BID_EXPONENT_BIAS: Final = 6176
_BID_MAX_COEFFICIENT: Final = 10**34 - 1


@functools.lru_cache(maxsize=4096)
def _decimal_text(bid: bytes) -> str:
    """`str(Decimal128.from_bid(bid))`, the common case without pymongo's digit-by-digit walk.

    A finite decimal with a coefficient of at most 34 digits (every value a driver writes) is read
    straight from the bits and printed by the C `decimal` module; the rest (NaN, infinities,
    out-of-range coefficients, which mean 0) are left to pymongo.
    """
    bits = int.from_bytes(bid, "little")
    high = bits >> 64
    if high & _BID_LARGE_FORM == _BID_LARGE_FORM:
        return str(Decimal128.from_bid(bid))
    coefficient = bits & ((1 << 113) - 1)
    if coefficient > _BID_MAX_COEFFICIENT:
        return str(Decimal128.from_bid(bid))
    exponent = ((high >> 49) & 0x3FFF) - _BID_EXPONENT_BIAS
    sign = "-" if high >> 63 else ""
    # The constructor keeps every digit and the exponent as given; no context rounds it.
    return str(decimal.Decimal(f"{sign}{coefficient}E{exponent}"))


def _non_finite(value: NonFiniteDouble) -> Any:
    return json_util.default(value.value, RELAXED_OPTIONS)


# The BSON values every product change carries, rendered without json_util's generic dispatch.
_RENDERERS: Final[dict[type, Callable[[Any], Any]]] = {
    ObjectId: lambda value: {"$oid": str(value)},
    dt.datetime: _datetime,
    Decimal128: lambda value: {"$numberDecimal": _decimal_text(value.bid)},
    Int64: int,
    NonFiniteDouble: _non_finite,
}


def _default(value: Any) -> Any:
    """orjson's callback for what it does not render itself."""
    kind = type(value)
    # The two most frequent in product changes first, without the table's lookup.
    if kind is dt.datetime:
        return _datetime(value)
    if kind is ObjectId:
        return {"$oid": str(value)}
    renderer = _RENDERERS.get(kind)
    if renderer is not None:
        return renderer(value)
    if isinstance(value, RawBSONDocument):
        return decode(value.raw, RENDER_OPTIONS)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return json_util.default(value, RELAXED_OPTIONS)


def from_json(text: str | bytes) -> Any:
    """Parse Relaxed (or canonical) Extended JSON text, restoring BSON types."""
    return json_util.loads(text, json_options=RELAXED_OPTIONS)


def restore(value: Any) -> Any:
    """Restore BSON types in a value already parsed by a plain JSON parser (Lambda's event)."""
    if isinstance(value, Mapping):
        converted = {key: restore(item) for key, item in value.items()}
        return json_util.object_hook(converted, RELAXED_OPTIONS)
    if isinstance(value, list):
        return [restore(item) for item in value]
    return value


def to_plain(value: Any) -> Any:
    """Render BSON values back to the plain JSON structure (dicts, lists, numbers, strings)."""
    return json.loads(json_util.dumps(value, json_options=RELAXED_OPTIONS))

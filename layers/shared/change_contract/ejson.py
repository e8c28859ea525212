"""MongoDB Relaxed Extended JSON v2 in both directions, with one set of options.

Relaxed mode keeps int32, int64 and doubles as plain JSON numbers, so EventBridge numeric
patterns work on them, while ObjectId, Decimal128, dates, binary and UUIDs keep their type.
Must never lose a value: whatever `to_json` writes, `from_json` gives back equal.
"""

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any, Final

from bson import encode, json_util
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from bson.json_util import DatetimeRepresentation, JSONMode, JSONOptions
from bson.raw_bson import RawBSONDocument

try:  # the C fast path; the Lambda layer does without it and uses json_util
    import bsonjs
except ImportError:  # pragma: no cover - exercised where python-bsonjs is absent
    bsonjs = None

RELAXED_OPTIONS: Final = JSONOptions(
    json_mode=JSONMode.RELAXED,
    datetime_representation=DatetimeRepresentation.ISO8601,
    tz_aware=True,
    tzinfo=dt.UTC,
    uuid_representation=UuidRepresentation.STANDARD,
)

# Codec options the relay reads change events with, so values decode as `from_json` restores them.
CODEC_OPTIONS: Final = CodecOptions(
    document_class=RawBSONDocument,
    tz_aware=True,
    tzinfo=dt.UTC,
    uuid_representation=UuidRepresentation.STANDARD,
)


def fast_path_available() -> bool:
    """Whether the C encoder (python-bsonjs) is installed."""
    return bsonjs is not None


def to_json(document: Mapping[str, Any], *, fast: bool = True) -> str:
    """Render a BSON document as Relaxed Extended JSON text.

    With `fast` and python-bsonjs installed, the document is encoded to BSON once (embedded
    `RawBSONDocument` values are copied as bytes) and rendered in C; otherwise `json_util` walks it.
    Both give the same JSON value; only whitespace differs.

    Known gap: this is the relay's largest own CPU cost per event (~30 % of its samples in
    `bench/results/relay-profile.txt`), mostly because a dict detail is encoded to BSON once more
    before rendering. Splicing the raw sub-documents' JSON into the detail would avoid that second
    encode; it was left for a measured change, since the output must stay byte-for-byte stable.
    """
    if fast and bsonjs is not None:
        raw = (
            document.raw
            if isinstance(document, RawBSONDocument)
            else encode(document, codec_options=CODEC_OPTIONS)
        )
        text: str = bsonjs.dumps(raw, mode=bsonjs.RELAXED)
        return text
    return json_util.dumps(document, json_options=RELAXED_OPTIONS)


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

"""Change-stream event (as pymongo returns it) -> PutEvents request entry.

The relay's hot path: it must stay cheap per event and must never guess. A change it cannot
encode raises `ContractError` naming the field and the reason, so the caller can dead-letter it.
"""

import datetime as dt
import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from bson import Timestamp
from bson import encode as bson_encode
from bson.errors import BSONError

from change_contract import ejson
from change_contract.constants import (
    BACKFILL_ORIGIN,
    CONTENT_FIELDS,
    DEFAULT_SOURCE,
    DETAIL_TYPE_CHANGE,
    DETAIL_TYPE_GAP,
    DOCUMENT_OPERATIONS,
    OPERATION_TYPES,
    SCHEMA_VERSION,
)
from change_contract.errors import ContractError
from change_contract.size import entry_size

# Fields copied from the change event into `detail`, in this order, when present.
_COPIED_FIELDS = (
    "ns",
    "to",
    "documentKey",
    "updateDescription",
    "fullDocument",
    "fullDocumentBeforeChange",
)
_SESSION_FIELDS = ("txnNumber", "lsid")
# Every field copied into `detail` as it is: the fast path renders them straight from BSON.
_RENDERED_FIELDS: frozenset[str] = frozenset((*_COPIED_FIELDS, *_SESSION_FIELDS))
_ALL_CONTENT: frozenset[str] = frozenset(CONTENT_FIELDS)
_NOTHING: frozenset[str] = frozenset()


class PutEventsEntry(TypedDict):
    """One entry of a PutEvents request, as boto3 takes it."""

    Source: str
    DetailType: str
    Detail: str
    Time: dt.datetime
    EventBusName: NotRequired[str]


@dataclass(frozen=True, slots=True)
class PayloadRef:
    """Where an offloaded detail was stored."""

    bucket: str
    key: str


# Not frozen: built once per change on the relay's hot path, where a frozen dataclass's
# `object.__setattr__` per field costs ~0.7 µs a change; nothing mutates it after it is returned.
@dataclass(slots=True)
class EncodedChange:
    """A change ready to send, with what the relay needs to checkpoint and to shrink it."""

    event_id: str
    operation_type: str
    cluster_time: Timestamp
    resume_token: Mapping[str, Any]
    entry: PutEventsEntry
    size: int


def event_id_of(token: Any) -> str:
    """The stable id of a change: its resume token's `_data` string.

    A token with no string `_data` (never seen on mongod, possible on other servers) gets a
    SHA-256 of its Extended JSON, stable across re-sends just the same.
    """
    # A decoded token is a dict: skip the abstract-class check, the costlier one, for it.
    if type(token) is not dict and not isinstance(token, Mapping):
        raise ContractError("missing `_id` (the resume token)")
    data = token.get("_data")
    if isinstance(data, str) and data:
        return data
    try:
        canonical = ejson.to_json(token, fast=False)
    except (BSONError, TypeError, ValueError) as error:
        raise ContractError(f"`_id` is not a usable resume token: {error}") from error
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def encode_change(
    change: Mapping[str, Any],
    *,
    bus_name: str | None = None,
    source: str = DEFAULT_SOURCE,
    omit: Collection[str] = (),
    payload_ref: PayloadRef | None = None,
    fast: bool = True,
) -> EncodedChange:
    """Encode one change-stream event as a PutEvents entry.

    `omit` names content fields (`CONTENT_FIELDS`) to leave out; those actually present are listed
    in `detail.truncated`. With `payload_ref`, every content field is left out and the detail
    points at the stored full detail instead (`detail.payloadRef`).
    """
    if not isinstance(change, Mapping):
        raise ContractError(f"expected a document, got {type(change).__name__}")
    fast = fast and ejson.fast_path_available()
    if fast:
        # Read once, in C: the content fields rendered straight from BSON where fastejson can,
        # the rest decoded; the detail is then built from these and rendered by orjson.
        change = _scanned(change)

    # Identity and ordering: the fields every event must have.
    event_id = event_id_of(change.get("_id"))
    operation_type = change.get("operationType")
    if not isinstance(operation_type, str):
        raise ContractError("missing `operationType`", event_id=event_id)
    if operation_type not in OPERATION_TYPES:
        raise ContractError(f"unknown operationType {operation_type!r}", event_id=event_id)
    cluster_time = change.get("clusterTime")
    if not isinstance(cluster_time, Timestamp):
        raise ContractError("missing or non-timestamp `clusterTime`", event_id=event_id)
    if operation_type in DOCUMENT_OPERATIONS and "documentKey" not in change:
        raise ContractError(f"{operation_type} without `documentKey`", event_id=event_id)
    wall_time = change.get("wallTime")
    if wall_time is not None and not isinstance(wall_time, dt.datetime):
        raise ContractError("`wallTime` is not a date", event_id=event_id)
    # The detail keeps the date as decoded (naive UTC on the fast path renders the same text, with
    # no UTC offset to look up); the entry's Time must be aware.
    detail_wall_time = wall_time
    if wall_time is not None and wall_time.tzinfo is None:
        wall_time = wall_time.replace(tzinfo=dt.UTC)  # BSON dates are UTC

    # The detail, in a fixed key order.
    dropped = _ALL_CONTENT if payload_ref else (frozenset(omit) if omit else _NOTHING)
    snapshot_time = _backfill_snapshot(change, operation_type, event_id)
    detail: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "eventId": event_id,
        "operationType": operation_type,
    }
    if snapshot_time is not None:
        detail["origin"] = BACKFILL_ORIGIN
    truncated = []
    for field in _COPIED_FIELDS:
        if field not in change:
            continue
        if field in dropped:
            truncated.append(field)
            continue
        detail[field] = change[field]
    detail["clusterTime"] = {"t": cluster_time.time, "i": cluster_time.inc}
    if snapshot_time is not None:
        detail["snapshotTime"] = {"t": snapshot_time.time, "i": snapshot_time.inc}
    if detail_wall_time is not None:
        detail["wallTime"] = detail_wall_time
    if payload_ref is None:
        for field in _SESSION_FIELDS:
            if field in change:
                detail[field] = change[field]
    if truncated:
        detail["truncated"] = truncated
    if payload_ref is not None:
        detail["payloadRef"] = {"bucket": payload_ref.bucket, "key": payload_ref.key}

    # Render: a value BSON cannot carry (invalid UTF-8 from a legacy driver, say) is bad input.
    try:
        if fast:
            rendered = ejson.render(detail)
            detail_bytes: int | None = len(rendered)
            detail_json = rendered.decode("utf-8")
        else:
            detail_bytes = None
            detail_json = ejson.to_json(detail, fast=False)
    except (BSONError, UnicodeError, TypeError, ValueError, OverflowError) as error:
        raise ContractError(
            f"cannot render as Extended JSON: {error}", event_id=event_id
        ) from error

    entry: PutEventsEntry = {
        "Source": source,
        "DetailType": DETAIL_TYPE_CHANGE,
        "Detail": detail_json,
        "Time": wall_time or dt.datetime.fromtimestamp(cluster_time.time, tz=dt.UTC),
    }
    if bus_name:
        entry["EventBusName"] = bus_name
    return EncodedChange(
        event_id=event_id,
        operation_type=operation_type,
        cluster_time=cluster_time,
        resume_token=change["_id"],
        entry=entry,
        size=entry_size(entry, detail_bytes=detail_bytes),
    )


def _scanned(change: Mapping[str, Any]) -> Mapping[str, Any]:
    """The change read for the fast path; bad BSON is a `ContractError` naming the event."""
    try:
        return ejson.scanned(change, _RENDERED_FIELDS)
    except (BSONError, UnicodeError, TypeError, ValueError, OverflowError) as error:
        try:
            event_id: str | None = event_id_of(change.get("_id"))
        except (ContractError, BSONError, UnicodeError):
            event_id = None
        raise ContractError(
            f"cannot render as Extended JSON: {error}", event_id=event_id
        ) from error


def _backfill_snapshot(
    change: Mapping[str, Any], operation_type: str, event_id: str
) -> Timestamp | None:
    """The snapshot time of a backfill read (see `backfill_change`), None for a real change."""
    origin = change.get("origin")
    if origin is None:
        return None
    if origin != BACKFILL_ORIGIN:
        raise ContractError(f"unknown origin {origin!r}", event_id=event_id)
    snapshot_time = change.get("snapshotTime")
    if not isinstance(snapshot_time, Timestamp):
        raise ContractError("backfill read without a timestamp `snapshotTime`", event_id=event_id)
    if operation_type != "insert" or "fullDocument" not in change:
        raise ContractError("a backfill read is an insert with `fullDocument`", event_id=event_id)
    return snapshot_time


def backfill_event_id(ns: Mapping[str, Any], document_id: Any, snapshot_time: Timestamp) -> str:
    """The id of a backfill read: the same document read for the same snapshot, the same id.

    So a backfill resumed after a crash re-sends what was in flight under the ids it had, and the
    consumers' idempotency absorbs it; a new backfill (new snapshot) makes new ids.
    """
    key = {
        "db": ns.get("db"),
        "coll": ns.get("coll"),
        "_id": document_id,
        "snapshotTime": snapshot_time,
    }
    try:
        digest = hashlib.sha256(bson_encode(key)).hexdigest()
    except (BSONError, TypeError, ValueError, OverflowError) as error:
        raise ContractError(f"document `_id` cannot be hashed: {error}") from error
    return f"backfill:{digest[:40]}"


def backfill_change(
    document: Mapping[str, Any],
    ns: Mapping[str, Any],
    snapshot_time: Timestamp,
    *,
    read_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """A backfill read shaped as a change-stream insert, so `encode_change` (and everything the
    relay builds on it: shrinking, offloading, dead letters) handles it like any other change.

    `clusterTime` is the snapshot time, not the read time: every real change after the snapshot
    then orders after the read, so no consumer drops one as older than the baseline.
    """
    if not isinstance(document, Mapping) or "_id" not in document:
        raise ContractError("a backfill read needs a document with `_id`")
    document_id = document["_id"]
    change: dict[str, Any] = {
        "_id": {"_data": backfill_event_id(ns, document_id, snapshot_time)},
        "operationType": "insert",
        "clusterTime": snapshot_time,
        "wallTime": read_at or dt.datetime.now(dt.UTC),
        "fullDocument": document,
        "ns": {"db": ns.get("db"), "coll": ns.get("coll")},
        "documentKey": {"_id": document_id},
        "origin": BACKFILL_ORIGIN,
        "snapshotTime": snapshot_time,
    }
    return change


def encode_backfill(
    document: Mapping[str, Any],
    ns: Mapping[str, Any],
    snapshot_time: Timestamp,
    *,
    read_at: dt.datetime | None = None,
    bus_name: str | None = None,
    source: str = DEFAULT_SOURCE,
    omit: Collection[str] = (),
    payload_ref: PayloadRef | None = None,
    fast: bool = True,
) -> EncodedChange:
    """Encode one existing document as a backfill read: an `insert` marked `origin: backfill`."""
    change = backfill_change(document, ns, snapshot_time, read_at=read_at)
    return encode_change(
        change, bus_name=bus_name, source=source, omit=omit, payload_ref=payload_ref, fast=fast
    )


def encode_gap(
    *,
    scope: Mapping[str, Any],
    lost_after: Timestamp | None,
    resumed_at: Timestamp,
    reason: str,
    bus_name: str | None = None,
    source: str = DEFAULT_SOURCE,
) -> PutEventsEntry:
    """A `gap` event: the relay lost history and restarted from now, so consumers can tell.

    `lost_after` is the cluster time of the last change known forwarded (None when unknown);
    `resumed_at` where streaming started again. Changes strictly between them were not seen.
    """
    lost = {"t": lost_after.time, "i": lost_after.inc} if lost_after else None
    resumed = {"t": resumed_at.time, "i": resumed_at.inc}
    event_id = (
        f"gap:{lost['t'] if lost else 0}.{lost['i'] if lost else 0}:{resumed['t']}.{resumed['i']}"
    )
    detail = {
        "schemaVersion": SCHEMA_VERSION,
        "eventId": event_id,
        "kind": "gap",
        "scope": dict(scope),
        "lostAfter": lost,
        "resumedAt": resumed,
        "reason": reason,
    }
    entry: PutEventsEntry = {
        "Source": source,
        "DetailType": DETAIL_TYPE_GAP,
        "Detail": ejson.to_json(detail, fast=False),
        "Time": dt.datetime.fromtimestamp(resumed_at.time, tz=dt.UTC),
    }
    if bus_name:
        entry["EventBusName"] = bus_name
    return entry

"""A change event -> the audit record of who changed what, and when. Pure: no I/O, no clock.

The record keeps BSON values (ObjectId, Decimal128, dates) as the contract's decoder restored
them; each store decides how to write them. Document bodies are kept, dropped or redacted here,
before any store sees them.
"""

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import bson
from bson import Binary, ObjectId

from audit_writer import paths
from audit_writer.settings import DocumentPolicy, RecordSettings
from change_contract import ChangeDetail, ClusterTime, ejson

# The operations that change one document: the ones the audit trail records.
AUDITED_OPERATIONS: Final = frozenset({"insert", "update", "replace", "delete"})

UNKNOWN_ACTOR: Final = "unknown"
# A backfill read (`python -m relay backfill`) is not a change: its record is the document's
# baseline, with this operation type and actor, so the history never shows a false insert.
BASELINE_OPERATION: Final = "baseline"
BACKFILL_ACTOR: Final = "backfill"


class ActorSource(StrEnum):
    """Where the actor of a record came from, so readers can judge how far to trust it."""

    UPDATE_DESCRIPTION = "updateDescription"
    FULL_DOCUMENT = "fullDocument"
    SESSION = "session"
    BACKFILL = "backfill"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Changes:
    """What an update changed. `updated` is a list of (dotted path, new value) pairs, because
    dotted keys cannot be stored or queried as keys of a MongoDB document."""

    updated: tuple[tuple[str, Any], ...]
    removed: tuple[str, ...]
    truncated_arrays: tuple[tuple[str, int], ...]

    def as_document(self) -> dict[str, Any]:
        return {
            "updatedFields": [{"field": path, "value": value} for path, value in self.updated],
            "removedFields": list(self.removed),
            "truncatedArrays": [
                {"field": path, "newSize": size} for path, size in self.truncated_arrays
            ],
        }


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited change. `as_document` gives the stored layout (camelCase, BSON values)."""

    event_id: str
    operation_type: str
    db: str
    coll: str
    document_key: Mapping[str, Any]
    actor: str
    actor_source: ActorSource
    changed_fields: tuple[str, ...]
    changes: Changes | None
    full_document: Mapping[str, Any] | None
    full_document_before_change: Mapping[str, Any] | None
    cluster_time: ClusterTime
    wall_time: dt.datetime | None
    recorded_at: dt.datetime
    # "changeStream", or "backfill" for a baseline read of an existing document.
    origin: str = "changeStream"
    # Content the relay left out of an oversized event (`detail.truncated`).
    truncated: tuple[str, ...] = field(default=())

    @property
    def document_id(self) -> Any:
        return self.document_key.get("_id")

    def as_document(self) -> dict[str, Any]:
        """The record with BSON values: what the MongoDB store inserts."""
        return {
            "eventId": self.event_id,
            "operationType": self.operation_type,
            "ns": {"db": self.db, "coll": self.coll},
            "documentKey": dict(self.document_key),
            "actor": self.actor,
            "actorSource": self.actor_source.value,
            "changedFields": list(self.changed_fields),
            "changes": None if self.changes is None else self.changes.as_document(),
            "fullDocument": _copy(self.full_document),
            "fullDocumentBeforeChange": _copy(self.full_document_before_change),
            "clusterTime": self.cluster_time.as_timestamp(),
            "wallTime": self.wall_time,
            "recordedAt": self.recorded_at,
            "origin": self.origin,
            "truncated": list(self.truncated),
        }


def build_record(
    detail: ChangeDetail, settings: RecordSettings, *, recorded_at: dt.datetime
) -> AuditRecord:
    """The audit record of one document change (`AUDITED_OPERATIONS` only)."""
    if detail.operation_type not in AUDITED_OPERATIONS:
        raise ValueError(f"{detail.operation_type} is not a document change")
    # The contract guarantees both for document operations; checked again for the type checker.
    if detail.ns is None or detail.ns.coll is None or detail.document_key is None:
        raise ValueError(f"{detail.operation_type} without a namespace or document key")

    baseline = detail.is_backfill
    if baseline:
        actor, source = BACKFILL_ACTOR, ActorSource.BACKFILL
    else:
        actor, source = find_actor(detail, settings.actor_fields)
    redacted = [paths.split(path) for path in settings.redact_fields]
    return AuditRecord(
        event_id=detail.event_id,
        operation_type=BASELINE_OPERATION if baseline else detail.operation_type,
        db=detail.ns.db,
        coll=detail.ns.coll,
        document_key=detail.document_key,
        actor=actor,
        actor_source=source,
        changed_fields=tuple(changed_fields(detail)),
        changes=_changes(detail, redacted),
        full_document=_apply(detail.full_document, settings.full_document, redacted),
        full_document_before_change=_apply(
            detail.full_document_before_change, settings.before_change, redacted
        ),
        cluster_time=detail.cluster_time,
        wall_time=detail.wall_time,
        recorded_at=recorded_at,
        origin=detail.origin,
        truncated=tuple(detail.truncated),
    )


def find_actor(detail: ChangeDetail, actor_fields: tuple[str, ...]) -> tuple[str, ActorSource]:
    """Who made the change, as far as the event can tell.

    Change events do not name the writer. The application's own fields are read first: for an
    update only the fields this update set (the post-image would still hold the previous
    writer's name); for an insert or replace the new document. A delete carries no document the
    writer wrote. Then the session's user hash (`lsid.uid`, present for writes in an
    authenticated session), then `unknown`.
    """
    field_parts = [paths.split(path) for path in actor_fields]
    description = detail.update_description
    if detail.operation_type == "update" and description is not None:
        for parts in field_parts:
            actor = _as_actor(paths.updated_value_at(description.updated_fields, parts))
            if actor is not None:
                return actor, ActorSource.UPDATE_DESCRIPTION
    # An update whose description the relay had to drop is judged by its post-image, the best
    # evidence left; `actorSource` says so.
    from_document = detail.operation_type in {"insert", "replace"} or (
        detail.operation_type == "update" and description is None
    )
    if from_document and detail.full_document is not None:
        for parts in field_parts:
            actor = _as_actor(paths.value_at(detail.full_document, parts))
            if actor is not None:
                return actor, ActorSource.FULL_DOCUMENT
    uid = None if detail.lsid is None else detail.lsid.get("uid")
    if isinstance(uid, bytes) and uid:
        return "uid:" + bytes(uid).hex(), ActorSource.SESSION
    return UNKNOWN_ACTOR, ActorSource.NONE


def changed_fields(detail: ChangeDetail) -> list[str]:
    """Paths the change touched: an update's paths; for a replace with its pre-image, the
    top-level fields that differ; nothing for inserts and deletes (the whole document)."""
    if detail.update_description is not None:
        return detail.update_description.changed_fields
    before, after = detail.full_document_before_change, detail.full_document
    if detail.operation_type == "replace" and before is not None and after is not None:
        keys = dict.fromkeys([*before, *after])
        return [key for key in keys if _differs(key, before, after)]
    return []


def _differs(key: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    if key not in before or key not in after:
        return True
    # Compared as BSON, as MongoDB stores them: an int32 turned double (2 -> 2.0) is a change.
    return _bson(before[key]) != _bson(after[key])


def _bson(value: Any) -> bytes:
    return bson.encode({"v": value}, codec_options=ejson.CODEC_OPTIONS)


def _as_actor(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Binary | bytes):
        return "bin:" + bytes(value).hex()
    if isinstance(value, ObjectId):
        return str(value)
    # Anything else (a number, a sub-document naming the user) as compact Extended JSON.
    return json.dumps(ejson.to_plain(value), separators=(",", ":"), ensure_ascii=False)


def _changes(detail: ChangeDetail, redacted: list[tuple[str, ...]]) -> Changes | None:
    description = detail.update_description
    if description is None:
        return None
    updated = description.updated_fields
    if redacted:
        updated = paths.redact_updated_fields(updated, redacted)
    return Changes(
        updated=tuple(updated.items()),
        removed=tuple(description.removed_fields),
        truncated_arrays=tuple(
            (array.field, array.new_size) for array in description.truncated_arrays
        ),
    )


def _apply(
    document: Mapping[str, Any] | None, policy: DocumentPolicy, redacted: list[tuple[str, ...]]
) -> Mapping[str, Any] | None:
    if document is None or policy is DocumentPolicy.DROP:
        return None
    if policy is DocumentPolicy.REDACT:
        return paths.redact(document, redacted)
    return document


def _copy(document: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if document is None else dict(document)

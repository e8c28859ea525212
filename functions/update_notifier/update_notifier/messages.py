"""The change notification: readable text for people, a JSON document for programs.

`default` and `email` are the readable summary; `sqs`, `lambda`, `http` and `https` subscribers
get a JSON document with the same content, values in MongoDB Relaxed Extended JSON.
"""

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from bson import Decimal128, ObjectId

from change_contract.ejson import to_plain
from reaction_runtime import SnsMessage, fit_chars
from update_notifier.summary import UNKNOWN, ChangeSummary, FieldChange

# Enough to read; a notification is not a copy of the document. SNS caps a publish at 256 KiB,
# body and attributes together; fewer changes are listed until the message fits.
SNS_MAX_MESSAGE_BYTES = 262_144
LISTING_LIMITS = (50, 20, 5, 0)
MAX_VALUE_CHARS = 200
MAX_JSON_VALUE_BYTES = 256
# Field names in the `changedFields` attribute: enough for any filter policy in practice.
MAX_ATTRIBUTE_FIELDS = 100
MAX_ATTRIBUTE_FIELD_CHARS = 128
_MACHINE_PROTOCOLS = ("sqs", "lambda", "http", "https")


@dataclass(frozen=True, slots=True)
class Notification:
    event_id: str
    operation_type: str
    database: str
    collection: str
    document_id: str
    when: dt.datetime
    summary: ChangeSummary
    replay_name: str | None = None


def render_value(value: Any) -> str:
    """A field value as a person reads it: numbers and text plainly, other types by content."""
    if value is UNKNOWN:
        return "?"
    if isinstance(value, Decimal128 | ObjectId):
        text = str(value)
    elif isinstance(value, dt.datetime):
        text = value.isoformat()
    else:
        text = json.dumps(to_plain(value), ensure_ascii=False, separators=(", ", ": "))
    return fit_chars(text, MAX_VALUE_CHARS)


def _line(change: FieldChange, with_old: bool) -> str:
    if change.kind == "removed":
        old = f" (was {render_value(change.old)})" if with_old and change.old is not UNKNOWN else ""
        return f"- {change.path}: removed{old}"
    if change.kind == "truncated":
        return f"- {change.path}: array truncated to {change.new_size} elements"
    if change.kind == "added":
        return f"- {change.path}: added, {render_value(change.new)}"
    if with_old:
        return f"- {change.path}: {render_value(change.old)} -> {render_value(change.new)}"
    return f"- {change.path}: {render_value(change.new)}"


def readable(notification: Notification, limit: int = LISTING_LIMITS[0]) -> str:
    summary = notification.summary
    verb = "Replaced" if notification.operation_type == "replace" else "Updated"
    when = notification.when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"{verb} {notification.database}.{notification.collection} "
        f"document {notification.document_id} at {when}.",
        "",
    ]
    if summary.omitted:
        lines.append("The change was too large to include in the event; see the audit trail.")
    listed = summary.changes[:limit]
    lines += [_line(change, summary.has_pre_image) for change in listed]
    if len(summary.changes) > len(listed):
        lines.append(f"- and {len(summary.changes) - len(listed)} more fields")
    if not summary.has_pre_image and not summary.omitted:
        lines += ["", "Old values are not shown: the collection has no pre-images enabled."]
    if notification.replay_name:
        lines += ["", f"Re-delivered from the event archive ({notification.replay_name})."]
    lines += ["", f"Event: {notification.event_id}"]
    return "\n".join(lines) + "\n"


def _json_value(value: Any) -> Any:
    if value is UNKNOWN:
        return None
    plain = to_plain(value)
    size = len(json.dumps(plain, ensure_ascii=False).encode("utf-8"))
    return plain if size <= MAX_JSON_VALUE_BYTES else {"omitted": "too large", "bytes": size}


def machine(notification: Notification, limit: int = LISTING_LIMITS[0]) -> str:
    summary = notification.summary
    changes = []
    for change in summary.changes[:limit]:
        entry: dict[str, Any] = {"field": change.path, "kind": change.kind}
        if change.kind in ("updated", "added"):
            entry["new"] = _json_value(change.new)
        if summary.has_pre_image and change.kind in ("updated", "removed"):
            entry["old"] = _json_value(change.old)
        if change.new_size is not None:
            entry["newSize"] = change.new_size
        changes.append(entry)
    document = {
        "eventId": notification.event_id,
        "operationType": notification.operation_type,
        "ns": {"db": notification.database, "coll": notification.collection},
        "documentId": notification.document_id,
        "time": notification.when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "changedFields": filterable_fields(summary),
        "changes": changes,
        "changesOmitted": summary.omitted or len(summary.changes) > limit,
        "hasPreImage": summary.has_pre_image,
        "replayName": notification.replay_name,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def filterable_fields(summary: ChangeSummary) -> list[str]:
    """The top-level fields a subscriber can filter on: bounded in number and length."""
    names = [name for name in summary.changed_fields if len(name) <= MAX_ATTRIBUTE_FIELD_CHARS]
    return names[:MAX_ATTRIBUTE_FIELDS]


def change_message(notification: Notification) -> SnsMessage:
    """The notification as one SNS message, listing as many changes as fit in a publish."""
    message = _message(notification, LISTING_LIMITS[0])
    for limit in LISTING_LIMITS[1:]:
        if message_bytes(message) <= SNS_MAX_MESSAGE_BYTES:
            break
        message = _message(notification, limit)
    return message


def message_bytes(message: SnsMessage) -> int:
    """The size SNS counts against its limit: the message body plus every attribute."""
    request = message.request("arn")
    size = len(request["Message"].encode("utf-8"))
    for name, value in request["MessageAttributes"].items():
        size += len(name.encode("utf-8")) + len(value["DataType"].encode("utf-8"))
        size += len(value["StringValue"].encode("utf-8"))
    return size


def _message(notification: Notification, limit: int) -> SnsMessage:
    text = readable(notification, limit)
    data = machine(notification, limit)
    fields = notification.summary.changed_fields
    verb = "Replaced" if notification.operation_type == "replace" else "Updated"
    subject = f"{verb} {notification.collection} {notification.document_id}"
    if fields:
        subject += ": " + ", ".join(fields)
    attributes: dict[str, str | list[str]] = {
        "collection": notification.collection,
        "operationType": notification.operation_type,
    }
    filterable = filterable_fields(notification.summary)
    if filterable:
        # SNS refuses an empty attribute value; no list means "fields unknown".
        attributes["changedFields"] = filterable
    texts = {"default": text, "email": text} | dict.fromkeys(_MACHINE_PROTOCOLS, data)
    return SnsMessage(texts=texts, subject=subject, attributes=attributes)

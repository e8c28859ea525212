"""The change notification: readable text for people, a JSON document for programs.

`default` and `email` are the readable summary; `sqs`, `lambda`, `http` and `https` subscribers
get a JSON document with the same content, values in MongoDB Relaxed Extended JSON.
"""

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from bson import Decimal128, ObjectId
from reaction_runtime import SnsMessage, fit_chars

from change_contract.ejson import to_plain
from update_notifier.summary import UNKNOWN, ChangeSummary, FieldChange

# Enough to read; a notification is not a copy of the document (SNS caps a message at 256 KB).
MAX_LISTED_CHANGES = 50
MAX_VALUE_CHARS = 200
MAX_JSON_VALUE_BYTES = 1024
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


def readable(notification: Notification) -> str:
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
    listed = summary.changes[:MAX_LISTED_CHANGES]
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


def machine(notification: Notification) -> str:
    summary = notification.summary
    changes = []
    for change in summary.changes[:MAX_LISTED_CHANGES]:
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
        "changedFields": summary.changed_fields,
        "changes": changes,
        "changesOmitted": summary.omitted or len(summary.changes) > MAX_LISTED_CHANGES,
        "hasPreImage": summary.has_pre_image,
        "replayName": notification.replay_name,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def change_message(notification: Notification) -> SnsMessage:
    text = readable(notification)
    data = machine(notification)
    fields = notification.summary.changed_fields
    verb = "Replaced" if notification.operation_type == "replace" else "Updated"
    subject = f"{verb} {notification.collection} {notification.document_id}"
    if fields:
        subject += ": " + ", ".join(fields)
    attributes: dict[str, str | list[str]] = {
        "collection": notification.collection,
        "operationType": notification.operation_type,
    }
    if fields:
        # SNS refuses an empty attribute value; no list means "fields unknown".
        attributes["changedFields"] = fields
    texts = {"default": text, "email": text} | dict.fromkeys(_MACHINE_PROTOCOLS, data)
    return SnsMessage(texts=texts, subject=subject, attributes=attributes)

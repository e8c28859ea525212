"""Bare baseline for audit_writer: one MongoDB insert of the event's detail per event.

No validation, no idempotency, no logging or metrics: what a hand-written pymongo handler does.
"""

import os
from typing import Any

from pymongo import MongoClient

_client: MongoClient[dict[str, Any]] = MongoClient(os.environ["MONGODB_URI"])
_collection = _client[os.environ.get("AUDIT_DATABASE", "clase")]["bare_audit_log"]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    detail = event["detail"]
    result = _collection.insert_one({"_id": detail["eventId"], "detail": detail})
    return {"inserted": str(result.inserted_id)}

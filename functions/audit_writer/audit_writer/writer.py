"""One decoded change event -> at most one audit record. Knows nothing of Lambda.

Skips what is not a document change and the audit collection's own changes (so watching a whole
database cannot loop); store failures propagate for the platform to retry.
"""

import datetime as dt
from collections.abc import Callable
from enum import StrEnum

from audit_writer.log import logger
from audit_writer.record import AUDITED_OPERATIONS, build_record
from audit_writer.settings import RecordSettings
from audit_writer.stores import AuditStore
from change_contract import ChangeEvent


class Outcome(StrEnum):
    RECORDED = "recorded"
    ALREADY_RECORDED = "already-recorded"
    SKIPPED_NOT_A_DOCUMENT_CHANGE = "skipped-not-a-document-change"
    SKIPPED_AUDIT_COLLECTION = "skipped-audit-collection"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def audit_change(
    event: ChangeEvent,
    *,
    settings: RecordSettings,
    store: AuditStore,
    clock: Callable[[], dt.datetime] = _utc_now,
) -> Outcome:
    """Record who changed what, and when, for one change event."""
    detail = event.detail
    fields: dict[str, object] = {
        "event_id": detail.event_id,
        "operation_type": detail.operation_type,
    }

    if detail.operation_type not in AUDITED_OPERATIONS:
        logger.info("change not audited", extra={"reason": "not a document change", **fields})
        return Outcome.SKIPPED_NOT_A_DOCUMENT_CHANGE
    namespace = None if detail.ns is None else (detail.ns.db, detail.ns.coll)
    if store.own_namespace is not None and namespace == store.own_namespace:
        logger.info("change not audited", extra={"reason": "audit collection", **fields})
        return Outcome.SKIPPED_AUDIT_COLLECTION

    record = build_record(detail, settings, recorded_at=clock())
    written = store.record(record)
    fields |= {"actor_source": record.actor_source.value, "replay": event.is_replay}
    if not written:
        logger.info("audit record already written", extra=fields)
        return Outcome.ALREADY_RECORDED
    logger.info("audit record written", extra=fields)
    return Outcome.RECORDED

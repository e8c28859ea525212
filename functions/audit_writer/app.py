"""Lambda entry point of the audit writer: decorators and one hand-off, nothing else.

Settings are read and the runtime is built at cold start; the store (one MongoClient or one
DynamoDB client per container) is built on first use and kept. The logic is in `audit_writer`.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from audit_writer.log import SERVICE
from audit_writer.settings import AuditSettings
from audit_writer.stores import AuditStore, make_store
from audit_writer.writer import Outcome, audit_change
from change_contract import ChangeEvent
from reaction_runtime import ReactionRuntime

runtime = ReactionRuntime(SERVICE)
settings = AuditSettings.from_env()
logger, tracer, metrics = runtime.logger, runtime.tracer, runtime.metrics

METRIC_OF: dict[Outcome, str] = {
    Outcome.RECORDED: "AuditRecordsWritten",
    Outcome.ALREADY_RECORDED: "AuditRecordsAlreadyWritten",
    Outcome.SKIPPED_NOT_A_DOCUMENT_CHANGE: "ChangesNotAudited",
    Outcome.SKIPPED_AUDIT_COLLECTION: "ChangesNotAudited",
}

_store: AuditStore | None = None


def store() -> AuditStore:
    """The container's audit store, made on first use (tests may set `_store` first)."""
    global _store
    if _store is None:
        _store = make_store(settings, dynamodb_client=runtime.clients.get("dynamodb"))
    return _store


def shutdown() -> None:
    """Release the store's connections when the container ends.

    Called by the local pipeline (`localdev/pipeline.py`) and tests, which load this module into
    a process that lives on; on Lambda the process simply ends.
    """
    global _store
    if _store is not None:
        _store.close()
        _store = None


@tracer.capture_method
def react(change: ChangeEvent) -> dict[str, Any]:
    outcome = audit_change(change, settings=settings.record, store=store())
    runtime.count(METRIC_OF[outcome])
    return {"outcome": outcome.value, "eventId": change.detail.event_id}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return runtime.handle(event, context, react)

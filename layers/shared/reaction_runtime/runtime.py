"""The per-function runtime: observability, clients, the contract's decoder, idempotency and the
error policy around one call into a function's logic.

A handler stays thin: `return runtime.handle(event, context, service.react)`. The logic gets a
typed `ChangeEvent`, never the raw event. This module decides nothing about products or alerts.
"""

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from change_contract import ChangeEvent, ContractError, decode_event
from reaction_runtime.clients import Clients
from reaction_runtime.errors import DownstreamError
from reaction_runtime.idempotency import (
    IdempotencySettings,
    idempotency_config,
    persistence_layer,
)
from reaction_runtime.observability import observability

# What a function's logic returns: plain JSON values, stored as the idempotent result.
Outcome = dict[str, Any]
Action = Callable[[ChangeEvent], Outcome]

_EVENT_KEYS = ("event_id", "operation_type", "collection", "replay_name")
# The outcome is stored in the idempotency item (DynamoDB items hold at most 400 KB); a larger
# one would fail *after* the action, making the platform retry and act twice.
MAX_OUTCOME_BYTES = 16_384


class ReactionRuntime:
    """Everything a reaction function sets up once per container, with one entry point."""

    def __init__(self, function: str, *, environ: Mapping[str, str] | None = None) -> None:
        setup = observability(function, environ=environ)
        self.function = function
        self.service = setup.service
        self.logger = setup.logger
        self.tracer = setup.tracer
        self.metrics = setup.metrics
        self.clients = Clients()
        self.idempotency = IdempotencySettings.from_env(environ)
        self._config = idempotency_config(self.idempotency, on_duplicate=self._on_duplicate)
        self._once: Callable[..., Outcome] | None = None
        self._lock = threading.Lock()

    def count(self, metric: str, value: float = 1) -> None:
        """Add to a PascalCase count metric, flushed by the handler's `log_metrics`."""
        self.metrics.add_metric(name=metric, unit=MetricUnit.Count, value=value)

    def decode(self, event: Mapping[str, Any]) -> ChangeEvent:
        """Decode with the error policy: invalid input is logged, counted, raised."""
        try:
            return decode_event(event)
        except ContractError as error:
            self._invalid(error)
            raise

    def handle(self, event: Mapping[str, Any], context: LambdaContext, action: Action) -> Outcome:
        """Decode `event`, then run `action` on it once per `detail.eventId`.

        A duplicate (same id, already done) returns the stored outcome without acting. A
        duplicate still running elsewhere raises `IdempotencyAlreadyInProgressError`, so the
        platform retries it later and finds the finished outcome.
        """
        change = self.decode(event)
        self.logger.append_keys(
            event_id=change.detail.event_id,
            operation_type=change.detail.operation_type,
            collection=change.detail.collection,
            replay_name=change.replay_name,
        )
        try:
            self._config.register_lambda_context(context)
            outcome = self._run_once()(event=dict(event), change=change, action=action)
        except ContractError as error:
            self._invalid(error)
            raise
        except DownstreamError:
            # The adapter that failed logged the cause; count it and let the platform retry.
            self.count("DownstreamErrors")
            raise
        except IdempotencyPersistenceLayerError as error:
            self.logger.error("idempotency store unavailable", error=str(error))
            self.count("DownstreamErrors")
            raise
        except IdempotencyAlreadyInProgressError:
            self.logger.info("event already in progress elsewhere, retry later")
            self.count("EventsInProgress")
            raise
        finally:
            self.logger.remove_keys(list(_EVENT_KEYS))
        # Every event handled without error, duplicates included (they also count separately).
        self.count("EventsProcessed")
        return outcome

    def _run_once(self) -> Callable[..., Outcome]:
        # Built on first use, not at import: the persistence layer makes its DynamoDB client
        # when constructed, and tests start their AWS stand-in after importing this module.
        with self._lock:
            if self._once is None:
                store = persistence_layer(self.idempotency, self.clients.get("dynamodb"))
                self._once = idempotent_function(
                    _act,
                    data_keyword_argument="event",
                    persistence_store=store,
                    config=self._config,
                    key_prefix=self.function,
                )
            return self._once

    def _invalid(self, error: ContractError) -> None:
        self.logger.error("invalid change event", event_id=error.event_id, reason=error.reason)
        self.count("InvalidEvents")

    def _on_duplicate(self, response: Any, idempotent_data: DataRecord) -> Any:
        self.logger.info("duplicate event skipped", idempotency_key=idempotent_data.idempotency_key)
        self.count("DuplicateEvents")
        return response


def _act(*, event: Mapping[str, Any], change: ChangeEvent, action: Action) -> Outcome:
    # `event` is only the idempotency payload (its detail.eventId is hashed); logic sees `change`.
    del event
    outcome = action(change)
    if len(json.dumps(outcome, default=str).encode("utf-8")) > MAX_OUTCOME_BYTES:
        return {"outcome": outcome.get("outcome"), "outcomeTruncated": True}
    return outcome

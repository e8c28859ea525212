"""Decide whether a change to a product deserves a stock alert, and send it.

Takes a typed `ChangeEvent`; knows nothing of Lambda, the raw event or the environment.
"""

import datetime as dt
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger

from change_contract import ChangeEvent
from reaction_runtime import Outcome, SnsPublisher, cluster_time_number, document_id_text
from stock_alert.messages import Alert, alert_message
from stock_alert.quantity import Level, classify, field_value, read_number
from stock_alert.settings import StockAlertSettings
from stock_alert.state import AlertStateStore

_DOCUMENT_CHANGES = frozenset({"insert", "update", "replace"})


class StockAlertService:
    """One decision and at most one SNS publish per change event."""

    def __init__(
        self,
        settings: StockAlertSettings,
        *,
        publisher: SnsPublisher,
        state: AlertStateStore | None,
        logger: Logger,
        count: Callable[[str], None],
    ) -> None:
        if settings.mode == "episode" and state is None:
            raise ValueError("episode mode needs the alert state store")
        self._settings = settings
        self._publisher = publisher
        # The state decides only in episode mode; `every` mode pages without remembering.
        self._state = state if settings.mode == "episode" else None
        self._logger = logger
        self._count = count

    def react(self, change: ChangeEvent) -> Outcome:
        detail = change.detail
        document = detail.full_document
        if detail.collection != self._settings.collection:
            self._logger.info("event for another collection ignored")
            return {"outcome": "skipped", "reason": "other collection"}
        if detail.operation_type not in _DOCUMENT_CHANGES or document is None:
            # As the seed does: a delete, or an update without `updateLookup`, has no document.
            self._logger.info("no product document in the event, nothing to do")
            return {"outcome": "skipped", "reason": "no document"}

        # What the product's stock is now, and its threshold.
        level = self._level_of(document)
        if level is None:
            return {"outcome": "skipped", "reason": "quantity not numeric"}
        quantity, threshold, current = level

        if change.is_replay and not self._settings.alert_on_replay:
            self._logger.info("replayed event not paged", level=current.value)
            self._count("ReplaysNotPaged")
            return {"outcome": "skipped", "reason": "replay", "level": current.value}

        # Whether this change opens (or escalates) an alert.
        product_id = document_id_text(detail.document_id)
        product_key = f"{detail.ns.db if detail.ns else ''}.{detail.collection}/{product_id}"
        if self._state is None:
            alert = current is not Level.OK
        else:
            decision = self._state.decide(
                product_key,
                cluster_time=cluster_time_number(detail.cluster_time),
                event_id=detail.event_id,
                level=current,
                previous_hint=self._previous_level(change),
            )
            if decision.stale:
                self._logger.info(
                    "older than the stored alert state, not paged", level=current.value
                )
                self._count("StaleEvents")
                return {"outcome": "skipped", "reason": "stale", "level": current.value}
            alert = decision.alert
        if not alert:
            self._logger.info("no new alert", level=current.value, mode=self._settings.mode)
            return {"outcome": "no alert", "level": current.value}

        # Page: one publish, then mark the episode's alert as sent.
        name = field_value(document, self._settings.name_field)
        message = alert_message(
            Alert(
                level=current,
                product_name=name if isinstance(name, str) else None,
                product_id=product_id,
                quantity=quantity,
                threshold=threshold,
                database=detail.ns.db if detail.ns else "",
                collection=detail.collection or "",
                when=detail.wall_time or dt.datetime.fromtimestamp(detail.cluster_time.t, dt.UTC),
                event_id=detail.event_id,
                replay_name=change.replay_name,
            ),
            self._settings.language,
        )
        message_id = self._publisher.publish(message)
        if self._state is not None:
            self._state.confirm(product_key, detail.event_id)
        self._logger.info("stock alert sent", level=current.value, message_id=message_id)
        self._count("StockAlertsSent")
        return {"outcome": "alerted", "level": current.value, "messageId": message_id}

    def _level_of(self, document: Mapping[str, Any]) -> tuple[Decimal, Decimal, Level] | None:
        reading = read_number(document, self._settings.quantity_field)
        if reading.value is None:
            self._logger.warning(
                "quantity is not a number, no alert decided",
                field=self._settings.quantity_field,
                problem=reading.problem,
            )
            self._count("InvalidQuantities")
            return None
        threshold = self._threshold_of(document)
        return reading.value, threshold, classify(reading.value, threshold)

    def _threshold_of(self, document: Mapping[str, Any]) -> Decimal:
        field = self._settings.threshold_field
        if field is None:
            return self._settings.threshold
        reading = read_number(document, field)
        if reading.value is not None:
            return reading.value
        if reading.problem != "missing":
            self._logger.warning(
                "threshold is not a number, default used", field=field, problem=reading.problem
            )
            self._count("InvalidThresholds")
        return self._settings.threshold

    def _previous_level(self, change: ChangeEvent) -> Level | None:
        """The level before the change when the event shows it, else None (use the state)."""
        detail = change.detail
        if detail.operation_type == "insert" and not getattr(detail, "is_backfill", False):
            # A new document had no stock before. A backfill read is not new: its previous
            # level is what the state remembers, so an open episode is not paged twice.
            return Level.OK
        before = detail.full_document_before_change
        if before is None:
            return None
        reading = read_number(before, self._settings.quantity_field)
        if reading.value is None:
            return None
        return classify(reading.value, self._threshold_of(before))

"""Decide whether a change to a product deserves a stock alert, and send it.

Takes a typed `ChangeEvent`; knows nothing of Lambda, the raw event or the environment.
"""

import datetime as dt
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger

from change_contract import ChangeDetail, ChangeEvent, ContractError, apply_update_description
from change_contract.models import UpdateDescription
from change_contract.post_image import path_parts
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
        if detail.collection != self._settings.collection:
            self._logger.info("event for another collection ignored")
            return {"outcome": "skipped", "reason": "other collection"}
        product = (
            self._product_as_of(detail) if detail.operation_type in _DOCUMENT_CHANGES else None
        )
        if product is None:
            # As the seed does: a delete, or an update without `updateLookup`, has no document.
            self._logger.info("no product document in the event, nothing to do")
            return {"outcome": "skipped", "reason": "no document"}
        document, quantity_changed = product

        # What the product's stock was as of this change, and its threshold.
        level = self._level_of(document)
        if level is None:
            return {"outcome": "skipped", "reason": "quantity not numeric"}
        quantity, threshold, current = level

        if change.is_replay and not self._settings.alert_on_replay:
            self._logger.info("replayed event not paged", level=current.value)
            self._count("ReplaysNotPaged")
            return {"outcome": "skipped", "reason": "replay", "level": current.value}
        if not quantity_changed and self._state is not None:
            # An update that set neither quantity nor threshold cannot change the level. Without
            # a pre-image its looked-up quantity may be a later one (deciding on it could page out
            # of order); and recording it would only make an older, undelivered change of the
            # product (its insert, say) look stale.
            self._logger.info("quantity unchanged by this update, no alert decided")
            return {"outcome": "no alert", "reason": "quantity unchanged", "level": current.value}

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

    def _product_as_of(self, detail: ChangeDetail) -> tuple[Mapping[str, Any], bool] | None:
        """The product as of this change, and whether the change set its quantity or threshold
        (False only for an update that set neither); None when the event shows no product.

        Insert and replace carry it; an update with a pre-image rebuilds it exactly. An update
        without one has only `fullDocument` (`updateLookup`), read later and maybe showing newer
        changes, so this update's own fields are laid over it: exact for what the update set.
        """
        lookup, description = detail.full_document, detail.update_description
        changed = description is None or self._touches(description, self._settings.quantity_field)
        if description is not None and self._settings.threshold_field is not None:
            changed = changed or self._touches(description, self._settings.threshold_field)
        exact = detail.document_after()
        if exact is not None:
            return exact, changed
        if detail.operation_type != "update" or description is None:
            # A replace cut for size, or an update without its description (this relay keeps
            # it when shrinking): the looked-up document, if any, is all there is.
            return None if lookup is None else (lookup, True)
        if lookup is None and not changed:
            return None
        # Only this update's own fields: its truncations apply to its pre-image, not the lookup.
        own = description.model_copy(update={"truncated_arrays": []})
        try:
            return apply_update_description(lookup or {}, own), changed
        except ContractError as error:
            # The looked-up document was changed since in a way that this update's paths cross
            # (a later write replaced an embedded document by a value): its own fields alone.
            self._logger.warning("looked-up document does not take this update", error=str(error))
            return apply_update_description({}, own), changed

    @staticmethod
    def _touches(description: UpdateDescription, field: str) -> bool:
        """Whether the update set, removed or truncated `field`, a parent of it or a part of it."""
        target = field.split(".")
        paths = [*description.updated_fields, *description.removed_fields]
        paths += [array.field for array in description.truncated_arrays]
        for path in paths:
            parts = [str(part) for part in path_parts(path, description)]
            shared = min(len(parts), len(target))
            if parts[:shared] == target[:shared]:
                return True
        return False

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
        if detail.operation_type == "insert" and not detail.is_backfill:
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

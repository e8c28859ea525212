"""Decide whether a change deserves a notification, and publish it. No Lambda, no environment."""

import datetime as dt
from collections.abc import Callable

from aws_lambda_powertools import Logger

from change_contract import ChangeEvent
from reaction_runtime import Outcome, SnsPublisher, document_id_text
from update_notifier.messages import Notification, change_message, filterable_fields
from update_notifier.settings import UpdateNotifierSettings
from update_notifier.summary import summarize_replace, summarize_update


class UpdateNotifierService:
    def __init__(
        self,
        settings: UpdateNotifierSettings,
        *,
        publisher: SnsPublisher,
        logger: Logger,
        count: Callable[[str], None],
    ) -> None:
        self._settings = settings
        self._publisher = publisher
        self._logger = logger
        self._count = count

    def react(self, change: ChangeEvent) -> Outcome:
        detail = change.detail
        operation = detail.operation_type
        if operation == "update":
            summary = summarize_update(detail)
        elif operation == "replace" and self._settings.notify_on_replace:
            summary = summarize_replace(detail)
        else:
            self._logger.info(
                "operation not notified", notify_on_replace=self._settings.notify_on_replace
            )
            return {"outcome": "skipped", "reason": "operation not notified"}

        if summary.is_empty:
            self._logger.info("change with no effect not notified")
            self._count("NoOpChanges")
            return {"outcome": "skipped", "reason": "no change"}

        notification = Notification(
            event_id=detail.event_id,
            operation_type=operation,
            database=detail.ns.db if detail.ns else "",
            collection=detail.collection or "",
            document_id=document_id_text(detail.document_id),
            when=detail.wall_time or dt.datetime.fromtimestamp(detail.cluster_time.t, dt.UTC),
            summary=summary,
            replay_name=change.replay_name,
        )
        message_id = self._publisher.publish(change_message(notification))
        self._logger.info(
            "change notification sent",
            changed_fields=len(summary.changed_fields),
            message_id=message_id,
        )
        self._count("ChangeNotificationsSent")
        return {
            "outcome": "notified",
            "changedFields": filterable_fields(summary),
            "messageId": message_id,
        }

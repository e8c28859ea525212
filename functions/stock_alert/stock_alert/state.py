"""Per-product alert state in DynamoDB: the last level acted on, ordered by cluster time.

EventBridge delivers out of order and more than once. An event older than the stored state
decides nothing, so a late or repeated event can never re-open a low-stock episode; every write
is conditional on the item being unchanged since it was read (optimistic concurrency), so two
events racing for one product decide one after the other.
Item: `productKey` (S, partition key), `clusterTime` (N), `eventId` (S), `level` (S),
`pendingAlertEvent` (S, present while an event owes a page it decided), `version` (N),
`updatedAt` (S).
"""

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from reaction_runtime import DownstreamError
from stock_alert.quantity import Level

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Re-reads after losing a conditional write to a concurrent event for the same product.
MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do for one event: page or not, and why."""

    alert: bool
    previous: Level
    stale: bool = False
    resumed: bool = False


class AlertStateStore:
    def __init__(self, client: "DynamoDBClient", table: str, logger: Logger) -> None:
        self._client = client
        self._table = table
        self._logger = logger

    def decide(
        self,
        product_key: str,
        *,
        cluster_time: int,
        event_id: str,
        level: Level,
        previous_hint: Level | None,
    ) -> Decision:
        """Record `level` for the product if this event is the newest, and say whether to page.

        `previous_hint` is the level before the change when the event itself shows it (a
        pre-image, or an insert); otherwise the stored level is the previous one. An event that
        decided to page records itself in `pendingAlertEvent` until `confirm`: if its publish
        fails, its retry still pages, even after newer changes, unless the product was restocked
        (the episode is over) or a newer escalation took the page over.
        """
        for _ in range(MAX_ATTEMPTS):
            item = self._read(product_key)
            stored = Level(item["level"]["S"]) if item is not None else Level.OK
            if item is not None:
                if item.get("pendingAlertEvent", {}).get("S") == event_id:
                    # This event decided to page before, and its publish did not complete.
                    return Decision(alert=True, previous=stored, resumed=True)
                stored_time = int(item["clusterTime"]["N"])
                if stored_time == cluster_time and item["eventId"]["S"] == event_id:
                    return Decision(alert=False, previous=stored, resumed=True)
                if stored_time > cluster_time:
                    return Decision(alert=False, previous=stored, stale=True)
            previous = previous_hint if previous_hint is not None else stored
            alert = level.rank > previous.rank
            if alert:
                pending: str | None = event_id
            elif item is not None and level is not Level.OK:
                # Still low: an earlier page not yet confirmed stays owed by its event.
                pending = item.get("pendingAlertEvent", {}).get("S")
            else:
                pending = None
            if self._write(product_key, item, cluster_time, event_id, level, pending):
                return Decision(alert=alert, previous=previous)
        raise DownstreamError(f"alert state of {product_key} kept changing; retry later")

    def confirm(self, product_key: str, event_id: str) -> None:
        """Mark the page of `event_id` as published, unless a newer decision replaced it."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"productKey": {"S": product_key}},
                UpdateExpression="REMOVE pendingAlertEvent SET version = version + :one",
                ConditionExpression="pendingAlertEvent = :event",
                ExpressionAttributeValues={":one": {"N": "1"}, ":event": {"S": event_id}},
            )
        except ClientError as error:
            if _condition_failed(error):
                # A newer decision already took the page over or closed the episode.
                self._logger.info("alert state taken over by a newer event", product=product_key)
                return
            raise self._failure("confirm", error) from error
        except BotoCoreError as error:
            raise self._failure("confirm", error) from error

    def _read(self, product_key: str) -> dict[str, Any] | None:
        try:
            response = self._client.get_item(
                TableName=self._table,
                Key={"productKey": {"S": product_key}},
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as error:
            raise self._failure("read", error) from error
        item: dict[str, Any] | None = response.get("Item")
        return item

    def _write(
        self,
        product_key: str,
        read: dict[str, Any] | None,
        cluster_time: int,
        event_id: str,
        level: Level,
        pending: str | None,
    ) -> bool:
        # Two changes to one product in one transaction share a cluster time; they are told
        # apart by event id only (their order is then the delivery order, as resume tokens
        # are opaque here). Lifting this needs an ordered token, which not every server gives.
        version = int(read["version"]["N"]) if read is not None else 0
        item: dict[str, Any] = {
            "productKey": {"S": product_key},
            "clusterTime": {"N": str(cluster_time)},
            "eventId": {"S": event_id},
            "level": {"S": level.value},
            "version": {"N": str(version + 1)},
            "updatedAt": {"S": dt.datetime.now(dt.UTC).isoformat()},
        }
        if pending is not None:
            item["pendingAlertEvent"] = {"S": pending}
        if read is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(productKey)"}
        else:
            condition = {
                "ConditionExpression": "version = :version",
                "ExpressionAttributeValues": {":version": {"N": str(version)}},
            }
        try:
            self._client.put_item(TableName=self._table, Item=item, **condition)
        except ClientError as error:
            if _condition_failed(error):
                self._logger.info("alert state changed meanwhile, deciding again")
                return False
            raise self._failure("write", error) from error
        except BotoCoreError as error:
            raise self._failure("write", error) from error
        return True

    def _failure(self, action: str, error: Exception) -> DownstreamError:
        self._logger.error(
            "alert state unavailable", action=action, table=self._table, error=str(error)
        )
        return DownstreamError(f"alert state table {self._table}: {action} failed: {error}")


def _condition_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"

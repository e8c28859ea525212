"""Per-product alert state in DynamoDB: the last level acted on, ordered by cluster time.

EventBridge delivers out of order and more than once; every write is conditional on being newer
than what is stored, so a late or repeated event can never re-open a low-stock episode.
Item: `productKey` (S, partition key), `clusterTime` (N), `eventId` (S), `level` (S),
`pendingAlert` (BOOL: an alert decided and not yet confirmed published), `updatedAt` (S).
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
MAX_ATTEMPTS = 4


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
        pre-image, or an insert); otherwise the stored level is the previous one. An alert that
        an earlier event decided but did not confirm (`pendingAlert`) is carried forward while
        the product stays low, so a failure between deciding and publishing loses no page.
        """
        for _ in range(MAX_ATTEMPTS):
            item = self._read(product_key)
            if item is not None:
                stored_time = int(item["clusterTime"]["N"])
                stored_event = item["eventId"]["S"]
                pending = item.get("pendingAlert", {}).get("BOOL", False)
                if stored_time == cluster_time and stored_event == event_id:
                    # This event was decided before and is being retried.
                    return Decision(alert=pending, previous=Level(item["level"]["S"]), resumed=True)
                if stored_time > cluster_time:
                    return Decision(alert=False, previous=Level(item["level"]["S"]), stale=True)
            stored_level = Level(item["level"]["S"]) if item is not None else Level.OK
            previous = previous_hint if previous_hint is not None else stored_level
            carried = item is not None and item.get("pendingAlert", {}).get("BOOL", False)
            alert = level.rank > previous.rank or (carried and level is not Level.OK)
            if self._write(product_key, cluster_time, event_id, level, alert):
                return Decision(alert=alert, previous=previous)
        raise DownstreamError(f"alert state of {product_key} kept changing; retry later")

    def confirm(self, product_key: str, event_id: str) -> None:
        """Mark the alert of `event_id` as published, unless a newer event already took over."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"productKey": {"S": product_key}},
                UpdateExpression="SET pendingAlert = :false",
                ConditionExpression="eventId = :event",
                ExpressionAttributeValues={":false": {"BOOL": False}, ":event": {"S": event_id}},
            )
        except ClientError as error:
            if _condition_failed(error):
                # A newer event replaced the item; it carried the pending alert forward and
                # will page again only if it decided so itself.
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
        self, product_key: str, cluster_time: int, event_id: str, level: Level, alert: bool
    ) -> bool:
        # Two changes to one product in one transaction share a cluster time; they are told
        # apart by event id only (their order is then the delivery order, as resume tokens
        # are opaque here). Lifting this needs an ordered token, which not every server gives.
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    "productKey": {"S": product_key},
                    "clusterTime": {"N": str(cluster_time)},
                    "eventId": {"S": event_id},
                    "level": {"S": level.value},
                    "pendingAlert": {"BOOL": alert},
                    "updatedAt": {"S": dt.datetime.now(dt.UTC).isoformat()},
                },
                ConditionExpression=(
                    "attribute_not_exists(productKey) OR clusterTime < :time"
                    " OR (clusterTime = :time AND eventId <> :event)"
                ),
                ExpressionAttributeValues={
                    ":time": {"N": str(cluster_time)},
                    ":event": {"S": event_id},
                },
            )
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
